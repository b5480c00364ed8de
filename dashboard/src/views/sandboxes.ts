// Persistent sandboxes (issue 19): the user's sandboxes, and one sandbox's page with its commands,
// a box to run a command in it (output shown live below the box), its files (./file-tree.ts) and
// Stop. The list is read from GET /sandboxes every SANDBOX_REFRESH_MS and again whenever one of
// the user's commands changes (`task_changed` on `user:<uid>` names its sandbox); a sandbox's page
// also follows its private topic `sandbox:<id>` (`sandbox_status`), so a stop or an expiry shows
// at once.
import type { RealtimeChannel } from "@supabase/supabase-js";
import { call } from "../../../sdk/api.ts";
import type { SandboxView, TaskHandle, TaskSummary } from "../../../sdk/index.ts";
import { clock, duration, h, replace, statusBadge } from "../dom.ts";
import { log } from "../event-log.ts";
import { newer, type Live } from "../live.ts";
import { fileTree } from "./file-tree.ts";

/** GET /sandboxes again this often: last activity and idle expiry move without a status change. */
const SANDBOX_REFRESH_MS = 5000;
/** A burst of command changes refreshes the list once. */
const CHANGE_DEBOUNCE_MS = 200;
/** The output box under the run form keeps at most this much of a command's output. */
const MAX_OUTPUT_CHARS = 1024 * 1024;

/** The API's timestamps arrive as ISO strings (SandboxView types them as the row's Date). */
const at = (v: Date | string | null | undefined): string | null => (v ? String(v instanceof Date ? v.toISOString() : v) : null);
const live = (s: SandboxView) => s.status === "starting" || s.status === "ready";
/** "in 4 m 10 s" / "3.2 s ago", against the server's clock. */
function relative(iso: string | null, now: number): string {
  if (!iso) return "–";
  const d = Date.parse(iso) - now;
  return d >= 0 ? `in ${duration(d)}` : `${duration(-d)} ago`;
}

function showError(box: HTMLElement, what: string, err: unknown): void {
  const msg = `${what}: ${err instanceof Error ? err.message : String(err)}`;
  log("api", "error", msg);
  replace(box, h("div", { class: "error-banner" }, msg));
}

export function sandboxesView(main: HTMLElement, liveState: Live, navigate: (hash: string) => void): () => void {
  let sandboxes: SandboxView[] = [];
  let loaded = false;
  const body = h("div", { class: "panel" });
  const error = h("div");
  const create = h(
    "button",
    {
      onclick: async () => {
        create.disabled = true;
        try {
          const s = await call<SandboxView>(liveState.supabase, "POST", "/sandboxes", {});
          navigate(`#/sandboxes/${s.sandboxId}`);
        } catch (err) {
          showError(error, "Could not create a sandbox", err);
        } finally {
          create.disabled = false;
        }
      },
    },
    "New sandbox",
  );
  replace(
    main,
    h("h2", null, "Sandboxes"),
    h("div", { class: "toolbar" }, create, h("span", { class: "dim" }, "a live sandbox keeps its files and processes between commands")),
    error,
    body,
  );

  const render = () => {
    const now = liveState.serverNow();
    replace(
      body,
      !loaded
        ? h("div", { class: "empty" }, "Loading…")
        : sandboxes.length === 0
          ? h("div", { class: "empty" }, "No sandboxes yet.")
          : h(
              "table",
              { "data-testid": "sandboxes" },
              h("thead", null, h("tr", null, ...["state", "id", "created", "last activity", "idle stop", "expires", "worker", "reason"].map((c) => h("th", null, c)))),
              h(
                "tbody",
                null,
                sandboxes.map((s) =>
                  h(
                    "tr",
                    { class: "link", "data-sandbox": s.sandboxId, onclick: () => navigate(`#/sandboxes/${s.sandboxId}`) },
                    h("td", null, statusBadge(s.status)),
                    h("td", { class: "mono" }, s.sandboxId.slice(0, 8)),
                    h("td", { class: "dim" }, clock(at(s.createdAt))),
                    h("td", null, relative(at(s.lastActivityAt), now)),
                    h("td", null, live(s) ? relative(at(s.idleExpiresAt), now) : "–"),
                    h("td", null, live(s) ? relative(at(s.expiresAt), now) : clock(at(s.stoppedAt))),
                    h("td", { class: "mono dim" }, s.workerId?.slice(0, 8) ?? "–"),
                    h("td", { class: "dim" }, s.reason ?? ""),
                  ),
                ),
              ),
            ),
    );
  };

  const load = async () => {
    try {
      sandboxes = (await call<{ sandboxes: SandboxView[] }>(liveState.supabase, "GET", "/sandboxes")).sandboxes;
      loaded = true;
      replace(error);
    } catch (err) {
      showError(error, "Could not list sandboxes", err);
    }
    render();
  };
  let debounce: ReturnType<typeof setTimeout> | undefined;
  const off = liveState.onTaskChange(({ task }) => {
    if (task.sandboxId) clearTimeout(debounce), (debounce = setTimeout(() => void load(), CHANGE_DEBOUNCE_MS));
  });
  const offResync = liveState.onTasksResync(() => void load());
  void load();
  const poll = setInterval(() => void load(), SANDBOX_REFRESH_MS);
  const tick = setInterval(render, 1000);
  return () => {
    off();
    offResync();
    clearInterval(poll);
    clearInterval(tick);
    clearTimeout(debounce);
  };
}

export function sandboxView(main: HTMLElement, liveState: Live, sandboxId: string, navigate: (hash: string) => void): () => void {
  let sandbox: SandboxView | undefined;
  let commands: TaskSummary[] = [];
  let handle: TaskHandle | undefined;
  let closed = false;
  /** Stop was clicked: the files API would answer 409 from now on, so the tree stops asking. */
  let stopping = false;
  const header = h("div", { class: "panel", "data-testid": "sandbox-status" });
  const files = fileTree(liveState.supabase, sandboxId);
  const error = h("div");
  const commandBody = h("div");
  const output = h("pre", { class: "raw mono", "data-testid": "sandbox-output", hidden: true });
  const command = h("input", { class: "grow", placeholder: "command to run in this sandbox, e.g. ls -la", "aria-label": "sandbox command" });
  const runButton = h("button", { type: "submit" }, "Run");
  const stop = h(
    "button",
    {
      class: "danger",
      "data-action": "stop",
      onclick: async () => {
        stop.disabled = true;
        stopping = true;
        files.setLive(false);
        try {
          sandbox = await call<SandboxView>(liveState.supabase, "DELETE", `/sandboxes/${sandboxId}`);
          render();
        } catch (err) {
          showError(error, "Could not stop the sandbox", err);
          stopping = stop.disabled = false;
          render();
        }
      },
    },
    "Stop",
  );
  const runForm = h(
    "form",
    {
      class: "toolbar",
      onsubmit: async (e: Event) => {
        e.preventDefault();
        const cmd = command.value.trim();
        if (!cmd) return;
        runButton.disabled = true;
        try {
          const { taskId } = await call<{ taskId: string }>(liveState.supabase, "POST", `/sandboxes/${sandboxId}/commands`, { command: cmd });
          command.value = "";
          await follow(taskId, cmd);
        } catch (err) {
          showError(error, "Could not run the command", err);
        } finally {
          runButton.disabled = false;
        }
      },
    },
    command,
    runButton,
  );
  replace(
    main,
    h("div", { class: "toolbar" }, h("a", { href: "#/sandboxes" }, "← Sandboxes")),
    header,
    error,
    h("div", { class: "panel" }, h("b", null, "Run a command"), runForm, output),
    files.element,
    h("h2", null, "Commands"),
    h("div", { class: "panel" }, commandBody),
  );

  /** Shows one command's output live under the form (the task page has the full view). */
  async function follow(taskId: string, cmd: string): Promise<void> {
    await handle?.close();
    let text = "";
    output.hidden = false;
    output.dataset.task = taskId;
    output.textContent = `$ ${cmd}\n`;
    const add = (d: string) => {
      if (closed || text.length >= MAX_OUTPUT_CHARS) return;
      text += d;
      output.textContent = `$ ${cmd}\n${text}`;
    };
    const mine = await liveState.sandbox.attach(taskId, { onStdout: add, onStderr: add });
    if (closed) return void mine.close();
    handle = mine;
    const r = await mine.result();
    if (!closed && output.dataset.task === taskId)
      output.textContent = `$ ${cmd}\n${text}${r.status === "succeeded" ? "" : `[${r.status}${r.exitCode !== null ? `, exit ${r.exitCode}` : ""}${r.reason ? `: ${r.reason}` : ""}]\n`}`;
  }

  const render = () => {
    const s = sandbox;
    const now = liveState.serverNow();
    stop.disabled = !s || !live(s);
    command.disabled = runButton.disabled = !s || !live(s);
    files.setLive(!stopping && s?.status === "ready");
    replace(
      header,
      h("div", { class: "toolbar" }, h("b", null, `Sandbox ${sandboxId.slice(0, 8)}`), s ? statusBadge(s.status) : null, h("span", { style: "flex:1" }), stop),
      s
        ? h(
            "div",
            { class: "stats" },
            ...(
              [
                ["id", h("code", null, s.sandboxId)],
                ["created", clock(at(s.createdAt))],
                ["ready", clock(at(s.readyAt))],
                ["last activity", relative(at(s.lastActivityAt), now)],
                ["idle stop", live(s) ? relative(at(s.idleExpiresAt), now) : "–"],
                ["expires", live(s) ? relative(at(s.expiresAt), now) : "–"],
                ["stopped", clock(at(s.stoppedAt))],
                ["worker", h("code", null, s.workerId?.slice(0, 8) ?? "–")],
                ["reason", s.reason ?? "–"],
              ] as const
            ).map(([k, v]) => h("div", { class: "stat" }, h("span", { class: "dim" }, k), h("div", null, v))),
          )
        : h("div", { class: "empty" }, "Loading…"),
    );
    replace(
      commandBody,
      commands.length === 0
        ? h("div", { class: "empty" }, "No commands yet.")
        : h(
            "table",
            { "data-testid": "sandbox-commands" },
            h("thead", null, h("tr", null, ...["state", "command", "exit", "created", "took", "id"].map((c) => h("th", null, c)))),
            h(
              "tbody",
              null,
              commands.map((t) =>
                h(
                  "tr",
                  { class: "link", "data-task": t.id, onclick: () => navigate(`#/tasks/${t.id}`) },
                  h("td", null, statusBadge(t.status)),
                  h("td", { class: "cmd mono", title: t.command }, t.command),
                  h("td", { class: "num" }, t.exitCode ?? "–"),
                  h("td", { class: "dim" }, clock(t.createdAt)),
                  h("td", { class: "num" }, t.startedAt ? duration((t.finishedAt ? Date.parse(t.finishedAt) : now) - Date.parse(t.startedAt)) : "–"),
                  h("td", null, h("a", { class: "mono", href: `#/tasks/${t.id}`, onclick: (e: Event) => e.stopPropagation() }, t.id.slice(0, 8))),
                ),
              ),
            ),
          ),
    );
  };

  const load = async () => {
    try {
      const [s, page] = await Promise.all([call<SandboxView>(liveState.supabase, "GET", `/sandboxes/${sandboxId}`), liveState.sandbox.listTasks({ sandboxId, limit: 50 })]);
      sandbox = s;
      commands = page.tasks;
      replace(error);
    } catch (err) {
      showError(error, `Could not read sandbox ${sandboxId}`, err);
    }
    render();
  };

  // Its status, live: stopped, lost or expiring shows without waiting for the next poll.
  let channel: RealtimeChannel | undefined = liveState.supabase
    .channel(`sandbox:${sandboxId}`, { config: { private: true } })
    .on("broadcast", { event: "sandbox_status" }, ({ payload }) => {
      log(`sandbox:${sandboxId.slice(0, 8)}`, "info", `sandbox_status ${JSON.stringify((payload as { data: unknown }).data)}`);
      void load();
    })
    .subscribe();
  const off = liveState.onTaskChange(({ task }) => {
    if (task.sandboxId !== sandboxId) return;
    const i = commands.findIndex((t) => t.id === task.id);
    if (i >= 0) commands[i] = newer(commands[i], task);
    else commands.unshift(task);
    render();
  });
  const offResync = liveState.onTasksResync(() => void load());
  void load();
  const poll = setInterval(() => void load(), SANDBOX_REFRESH_MS);
  const tick = setInterval(render, 1000);
  return () => {
    closed = true;
    files.close();
    off();
    offResync();
    clearInterval(poll);
    clearInterval(tick);
    void handle?.close();
    if (channel) void liveState.supabase.removeChannel(channel);
    channel = undefined;
  };
}
