// The integrated event log: every component's events seen by this page, with timestamps.
import { clock, h, replace } from "../dom.ts";
import { logEntries, onLog, type LogEntry } from "../event-log.ts";

export function eventsView(main: HTMLElement): () => void {
  const filter = h("input", { class: "grow", type: "search", placeholder: "filter (source, kind or text)", "aria-label": "filter", oninput: () => render() });
  const body = h("tbody");
  replace(
    main,
    h("h2", null, "Event log"),
    h("p", { class: "dim" }, "Workers, task state changes, the open task's events, Realtime channel states and API errors, as this page received them."),
    h("div", { class: "toolbar" }, filter),
    h(
      "div",
      { class: "panel log" },
      h(
        "table",
        { "data-testid": "event-log" },
        h("thead", null, h("tr", null, h("th", null, "time"), h("th", null, "source"), h("th", null, "kind"), h("th", null, "event"))),
        body,
      ),
    ),
  );

  const row = (e: LogEntry) =>
    h(
      "tr",
      null,
      h("td", { class: "dim mono" }, clock(e.at)),
      h("td", null, h("code", null, e.source)),
      h("td", { class: e.kind === "error" ? "s-failed" : e.kind === "warn" ? "s-blocked" : "dim" }, e.kind),
      h("td", { class: "mono" }, e.text),
    );
  const matches = (e: LogEntry) => {
    const q = filter.value.trim().toLowerCase();
    return !q || `${e.source} ${e.kind} ${e.text}`.toLowerCase().includes(q);
  };
  const render = () => replace(body, logEntries().filter(matches).slice(-1000).reverse().map(row));
  render();
  return onLog((e) => {
    if (matches(e)) body.prepend(row(e));
  });
}
