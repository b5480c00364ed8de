// "Your usage": the caller's running and queued tasks, stored bytes and rate-limit tokens against
// its quotas (GET /usage), polled: the figures span many tables and have no Realtime topic.
import { formatBytes, type UsageReport } from "../../../functions/_shared/quotas/usage.ts";
import { h, replace } from "../dom.ts";
import type { Live } from "../live.ts";

const POLL_MS = 5000;

function meter(label: string, used: number, max: number, text: string): HTMLElement {
  const share = max > 0 ? Math.min(1, used / max) : 0;
  return h(
    "div",
    { class: "queue-row", "data-usage": label },
    h("span", null, label),
    h("div", { class: "bar" }, h("div", { style: `width:${share * 100}%` })),
    h("span", { class: share >= 0.9 ? "num s-failed" : "num" }, text),
  );
}

function render(panel: HTMLElement, r: UsageReport): void {
  const bytes = Object.entries(r.storedBytes.byClass)
    .filter(([, n]) => n > 0)
    .map(([k, n]) => `${k} ${formatBytes(n)}`)
    .join(", ");
  replace(
    panel,
    r.running.map((k) => meter(`running ${k.kind}`, k.running, k.cap, `${k.running}/${k.cap}`)),
    meter("queued tasks", r.queued.count, r.queued.max, `${r.queued.count}/${r.queued.max}`),
    meter("stored bytes", r.storedBytes.total, r.storedBytes.max, `${formatBytes(r.storedBytes.total)}/${formatBytes(r.storedBytes.max)}`),
    bytes ? h("div", { class: "dim" }, bytes) : null,
    r.rateLimits.map((l) => meter(`${l.route} tokens`, l.tokens, l.burst, `${Math.floor(l.tokens)}/${l.burst} (${l.perSecond}/s)`)),
  );
}

/** The panel and a function that stops its polling. */
export function usagePanel(live: Live): { el: HTMLElement; stop: () => void } {
  const el = h("div", { class: "panel", "data-testid": "usage" }, h("div", { class: "empty" }, "Loading your usage…"));
  let stopped = false;
  const poll = async () => {
    try {
      const report = await live.sandbox.usage();
      if (!stopped) render(el, report);
    } catch (err) {
      if (!stopped) replace(el, h("div", { class: "empty" }, `Usage unavailable: ${err instanceof Error ? err.message : String(err)}`));
    }
  };
  void poll();
  const timer = setInterval(poll, POLL_MS);
  return {
    el,
    stop: () => {
      stopped = true;
      clearInterval(timer);
    },
  };
}
