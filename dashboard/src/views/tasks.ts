// Task list: the user's tasks, newest first, live (topic user:<uid>), with state filter, search,
// paging, and a box to start a task.
import { ACTIVE_STATES } from "../../../functions/_shared/states.ts";
import { call } from "../../../sdk/api.ts";
import { TASK_STATES, type TaskSummary } from "../../../sdk/index.ts";
import { clock, duration, h, replace, statusBadge } from "../dom.ts";
import { log } from "../event-log.ts";
import { newer, type Live } from "../live.ts";

const FILTERS: Record<string, readonly string[] | null> = {
  all: null,
  active: ACTIVE_STATES,
  ...Object.fromEntries(TASK_STATES.map((s) => [s, [s]])),
};
const PAGE = 50;
const SEARCH_DEBOUNCE_MS = 250;

/** `planId`: only that plan's steps (from #/tasks?plan=<id>). */
export function tasksView(main: HTMLElement, live: Live, navigate: (hash: string) => void, planId: string | null = null): () => void {
  let tasks: TaskSummary[] = [];
  let next: string | null = null;
  let loadSeq = 0;
  const filter = h(
    "select",
    { "aria-label": "state", onchange: () => void load() },
    Object.keys(FILTERS).map((f) => h("option", { value: f }, f)),
  );
  let debounce: ReturnType<typeof setTimeout> | undefined;
  const search = h("input", {
    class: "grow",
    type: "search",
    placeholder: "search id, command, step, reason",
    "aria-label": "search",
    oninput: () => (clearTimeout(debounce), (debounce = setTimeout(() => void load(), SEARCH_DEBOUNCE_MS))),
  });
  const body = h("div", { class: "panel" });
  const more = h("button", { onclick: () => void load(next) }, "Load older");
  const error = h("div");

  const command = h("input", { class: "grow", placeholder: "command to run in a sandbox, e.g. npm test", "aria-label": "command" });
  const pipe = h("input", { type: "checkbox", "aria-label": "stdin pipe" });
  const runForm = h(
    "form",
    {
      class: "toolbar",
      onsubmit: async (e: Event) => {
        e.preventDefault();
        if (!command.value.trim()) return;
        try {
          const { taskId } = await call<{ taskId: string }>(live.supabase, "POST", "/execute", { command: command.value, stdin: pipe.checked ? "pipe" : "closed" });
          command.value = "";
          navigate(`#/tasks/${taskId}`);
        } catch (err) {
          replace(error, h("div", { class: "error-banner" }, `Could not start: ${(err as Error).message}`));
        }
      },
    },
    command,
    h("label", { class: "dim" }, pipe, " stdin"),
    h("button", { type: "submit" }, "Run"),
  );

  const planChip = planId ? h("span", { class: "badge", "data-plan-filter": planId }, `plan ${planId.slice(0, 8)} `, h("a", { href: "#/tasks", title: "all tasks" }, "×")) : null;
  replace(main, h("h2", null, "Tasks"), runForm, error, h("div", { class: "toolbar" }, filter, search, planChip), body, more);

  const matches = (t: TaskSummary) => {
    const states = FILTERS[filter.value];
    if (states && !states.includes(t.status)) return false;
    if (planId && t.planId !== planId) return false;
    const q = search.value.trim().toLowerCase();
    return !q || [t.id, t.command, t.step ?? "", t.reason ?? ""].some((s) => s.toLowerCase().includes(q));
  };

  const render = () => {
    more.hidden = !next;
    replace(
      body,
      tasks.length === 0
        ? h("div", { class: "empty" }, "No tasks match.")
        : h(
            "table",
            { "data-testid": "tasks" },
            h("thead", null, h("tr", null, ...["state", "command", "kind", "priority", "attempt", "created", "took", "id"].map((c) => h("th", null, c)))),
            h(
              "tbody",
              null,
              tasks.map((t) =>
                h(
                  "tr",
                  { class: "link", "data-task": t.id, onclick: () => navigate(`#/tasks/${t.id}`) },
                  h(
                    "td",
                    null,
                    statusBadge(t.status),
                    t.cancelRequested && !["cancelled", "succeeded", "failed", "timed_out"].includes(t.status) ? h("span", { class: "dim" }, " cancelling") : null,
                  ),
                  h(
                    "td",
                    { class: "cmd mono", title: t.command },
                    t.planId
                      ? h("a", { class: "badge", href: `#/tasks?plan=${t.planId}`, onclick: (e: Event) => e.stopPropagation() }, t.step ?? `plan ${t.planId.slice(0, 8)}`)
                      : null,
                    t.planId ? " " : null,
                    t.command,
                  ),
                  h("td", null, h("code", null, t.kind)),
                  h("td", { class: "num" }, t.priority),
                  h("td", { class: "num" }, `${t.attempt}/${t.maxAttempts}`),
                  h("td", { class: "dim" }, clock(t.createdAt)),
                  h("td", { class: "num" }, t.startedAt ? duration((t.finishedAt ? Date.parse(t.finishedAt) : live.serverNow()) - Date.parse(t.startedAt)) : "–"),
                  h("td", { class: "mono dim" }, t.id.slice(0, 8)),
                ),
              ),
            ),
          ),
    );
  };

  async function load(cursor: string | null = null): Promise<void> {
    const seq = ++loadSeq;
    const states = FILTERS[filter.value];
    try {
      const page = await live.sandbox.listTasks({
        status: states ? [...states] : undefined,
        q: search.value.trim() || undefined,
        planId: planId ?? undefined,
        limit: PAGE,
        cursor: cursor ?? undefined,
      });
      if (seq !== loadSeq) return; // a newer filter won
      tasks = cursor ? [...tasks, ...page.tasks.filter((t) => !tasks.some((x) => x.id === t.id))] : page.tasks;
      next = page.next;
      replace(error);
    } catch (err) {
      log("api", "error", `GET /tasks: ${(err as Error).message}`);
      replace(error, h("div", { class: "error-banner" }, `Could not list tasks: ${(err as Error).message}`));
    }
    render();
  }

  const off = live.onTaskChange(({ task }) => {
    const i = tasks.findIndex((t) => t.id === task.id);
    if (i >= 0) tasks[i] = newer(tasks[i], task);
    else if (matches(task)) tasks.unshift(task);
    render();
  });
  const offResync = live.onTasksResync(() => void load());
  void load();
  const tick = setInterval(render, 1000); // running durations
  return () => {
    off();
    offResync();
    clearInterval(tick);
    clearTimeout(debounce);
  };
}
