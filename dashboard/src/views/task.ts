// One task, live: terminal (xterm.js, ANSI colours), progress, diagnostics and test results,
// block/recovery timeline, resource chart, stdin, cancel/recover, and its event log. A terminal
// task (POST /sandboxes/:id/pty) is interactive: keys typed in the terminal are its stdin, and the
// terminal's width is its size (POST /tasks/:id/resize). The SDK's
// TaskHandle replays output and events from Postgres by seq, then follows Realtime, so a late
// join or a reconnect shows everything once, in order.
import { Terminal } from "@xterm/xterm";
import { call } from "../../../sdk/api.ts";
import { isFinal, type TaskStatus } from "../../../functions/_shared/states.ts";
import type { OutputChunk, ProgressUpdate, TaskEventData, TaskEventMessage, TaskHandle, TaskView } from "../../../sdk/index.ts";
import { CHART_LEGEND, drawResourceChart, type Sample } from "../chart.ts";
import { brief, bytes, clock, duration, h, replace, statusBadge } from "../dom.ts";
import { log } from "../event-log.ts";
import type { Live } from "../live.ts";

const MAX_SAMPLES = 600;
/** The plain-text view keeps at most this much of the output (the terminal keeps its scrollback). */
const MAX_RAW_CHARS = 8 * 1024 * 1024;

type Data = Record<string, unknown>;
const str = (v: unknown) => (v === null || v === undefined ? "" : String(v));
const typeOf = (e: TaskEventMessage) => (e.type === "unknown" ? e.rawType : e.type);

export function taskView(main: HTMLElement, live: Live, taskId: string): () => void {
  let task: TaskView | undefined;
  let handle: TaskHandle | undefined;
  let closed = false;
  let raw = "";
  const samples: Sample[] = [];
  const events: TaskEventMessage[] = [];
  const diagnostics: TaskEventData<"diagnostic">[] = [];
  const testResults: TaskEventData<"test_results">[] = [];
  const timeline: { at: string; cls: string; title: string; detail: string }[] = [];
  let progress: ProgressUpdate | undefined;

  const header = h("div", { class: "panel" });
  const error = h("div");
  const progressBox = h("div", { class: "panel", "data-testid": "progress" });
  const termBox = h("div", { class: "term", "data-testid": "terminal" });
  const rawBox = h("pre", { class: "raw mono", hidden: true, "data-testid": "raw-output" });
  const rawToggle = h(
    "button",
    {
      onclick: () => {
        rawBox.hidden = !rawBox.hidden;
        termBox.hidden = !rawBox.hidden;
        rawToggle.textContent = rawBox.hidden ? "Plain text" : "Terminal";
        if (!rawBox.hidden) rawBox.textContent = raw;
      },
    },
    "Plain text",
  );
  const stdinBox = h("div");
  const timelineBox = h("ul", { class: "timeline", "data-testid": "timeline" });
  const diagBox = h("div", { "data-testid": "diagnostics" });
  const canvas = h("canvas", { class: "chart", "data-testid": "resources" });
  const logBody = h("tbody");

  replace(
    main,
    header,
    error,
    progressBox,
    h(
      "div",
      { class: "grid" },
      h(
        "div",
        null,
        h("div", { class: "panel" }, h("div", { class: "toolbar" }, h("b", null, "Output"), h("span", { style: "flex:1" }), rawToggle), termBox, rawBox, stdinBox),
        h(
          "div",
          { class: "panel" },
          h("b", null, "Resources"),
          h(
            "div",
            { class: "legend" },
            CHART_LEGEND.map(([n, c]) => h("span", { style: `color:${c}` }, "● " + n)),
          ),
          canvas,
        ),
      ),
      h("div", null, h("div", { class: "panel" }, h("b", null, "Timeline"), timelineBox), h("div", { class: "panel" }, h("b", null, "Diagnostics"), diagBox)),
    ),
    h("h2", null, "Events"),
    h(
      "div",
      { class: "panel log" },
      h(
        "table",
        { "data-testid": "task-events" },
        h("thead", null, h("tr", null, h("th", { class: "num" }, "seq"), h("th", null, "time"), h("th", null, "attempt"), h("th", null, "type"), h("th", null, "data"))),
        logBody,
      ),
    ),
  );

  const term = new Terminal({
    convertEol: true,
    disableStdin: true,
    scrollback: 50_000,
    fontSize: 13,
    fontFamily: 'ui-monospace, "DejaVu Sans Mono", monospace',
    theme: { background: "#000000" },
  });
  term.open(termBox);
  // Columns follow the panel's width (about 7.9 px per cell at 13 px); rows stay fixed.
  const fit = () => {
    if (termBox.clientWidth <= 0) return;
    term.resize(Math.max(40, Math.min(1000, Math.floor((termBox.clientWidth - 12) / 7.9))), 26);
    // One resize request when the window has settled, not one per frame of a drag.
    if (interactive) {
      clearTimeout(sizeTimer);
      sizeTimer = setTimeout(sendSize, 150);
    }
  };
  let sizeTimer: ReturnType<typeof setTimeout> | undefined;

  // A terminal task: keys go to its stdin in the order typed (one request at a time, what is typed
  // meanwhile goes in the next), and the size of this xterm is the terminal's size.
  let interactive = false;
  let typed = "";
  let sending: Promise<void> = Promise.resolve();
  let sentSize = "";
  const sendKeys = (data: string) => {
    typed += data;
    sending = sending.then(async () => {
      const batch = typed;
      typed = "";
      if (batch) await call(live.supabase, "POST", `/tasks/${taskId}/stdin`, { data: batch }).catch((err) => showError("keys", err));
    });
  };
  const sendSize = () => {
    const size = `${term.cols}x${term.rows}`;
    if (size === sentSize || !task || isFinal(task.status as TaskStatus)) return;
    sentSize = size;
    void call(live.supabase, "POST", `/tasks/${taskId}/resize`, { cols: term.cols, rows: term.rows }).catch((err) => showError("resize", err));
  };
  const makeInteractive = (t: TaskView) => {
    if (interactive || !t.pty || isFinal(t.status as TaskStatus)) return;
    interactive = true;
    sentSize = `${t.pty.cols}x${t.pty.rows}`;
    term.options.disableStdin = false;
    term.options.convertEol = false; // the pty sends \r\n itself
    term.onData(sendKeys);
    termBox.setAttribute("data-interactive", "true");
    termBox.title = "Interactive terminal: click and type";
    // Opened as it is (another client, e.g. `cogo shell`, may be using it); resizing the window
    // then gives the terminal this panel's size.
    term.resize(t.pty.cols, t.pty.rows);
    term.focus();
  };
  fit();
  window.addEventListener("resize", fit);

  const showError = (what: string, err: unknown) => {
    const msg = `${what}: ${err instanceof Error ? err.message : String(err)}`;
    log("api", "error", msg);
    replace(error, h("div", { class: "error-banner" }, msg));
  };

  const onOutput = (c: OutputChunk) => {
    if (c.stream === "system") term.write(`\x1b[33m${c.data}\x1b[39m`);
    else if (c.stream === "stderr" && !c.data.includes("\x1b")) term.write(`\x1b[31m${c.data}\x1b[39m`);
    else term.write(c.data);
    if (raw.length < MAX_RAW_CHARS) raw += c.data;
    if (!rawBox.hidden) rawBox.textContent = raw;
  };

  const onEvent = (e: TaskEventMessage) => {
    events.push(e);
    const type = typeOf(e);
    const warn = e.type === "block_detected" || e.type === "recovery_failed" || e.type === "recovery_gave_up" || e.type === "unknown";
    log(
      `task:${taskId.slice(0, 8)}`,
      warn ? "warn" : "info",
      e.type === "unknown" ? `${type} (unreadable: ${e.error}) ${brief(e.data, 160)}` : `${type} ${brief(e.data, 160)}`,
      e.timestamp,
    );
    switch (e.type) {
      case "task_status":
        timeline.push({ at: e.timestamp, cls: "status", title: `${e.data.previous} → ${e.data.status}`, detail: str(e.data.reason) });
        void refresh();
        break;
      case "progress_update":
        progress = e.data;
        break;
      case "diagnostic":
        diagnostics.push(e.data);
        break;
      case "test_results":
        testResults.push(e.data);
        break;
      case "resource_sample":
        samples.push({ t: Date.parse(e.timestamp), cpuPercent: e.data.cpuPercent, rssBytes: e.data.rssBytes });
        if (samples.length > MAX_SAMPLES) samples.shift();
        break;
      case "block_detected": {
        const d = e.data;
        const usage = d.usage;
        const figures = [
          `after ${duration(d.durationMs)}`,
          usage.cpuPercent !== undefined ? `cpu ${usage.cpuPercent} %` : "",
          usage.rssBytes !== undefined ? `rss ${bytes(usage.rssBytes)}` : "",
          d.reason === "worker_lost" ? `worker ${d.evidence.workerName ?? d.evidence.workerId.slice(0, 8)} silent` : "",
          d.recoverable ? "recoverable" : "not recoverable",
        ].filter(Boolean);
        timeline.push({ at: e.timestamp, cls: "block", title: `block detected: ${d.reason}`, detail: figures.join(" · ") });
        break;
      }
      case "recovery_started":
      case "recovery_succeeded":
      case "recovery_failed": {
        const outcome = e.type.slice("recovery_".length);
        timeline.push({
          at: e.timestamp,
          cls: outcome === "succeeded" ? "recovered" : "recovery",
          title: `recovery ${outcome}: ${str(e.data.action)} (attempt ${e.data.attempt})`,
          detail: e.type === "recovery_started" ? e.data.reason : e.type === "recovery_failed" ? (e.data.diagnosis ?? e.data.message ?? e.data.reason) : e.data.message,
        });
        break;
      }
      case "recovery_gave_up":
        timeline.push({
          at: e.timestamp,
          cls: "recovery",
          title: `recovery gave up (attempt ${e.data.attempt})`,
          detail: [e.data.diagnosis ?? e.data.reason, e.data.tried.length ? `tried: ${e.data.tried.join(", ")}` : ""].filter(Boolean).join(" · "),
        });
        break;
      case "unknown":
        break;
    }
    logBody.append(
      h(
        "tr",
        { "data-type": type },
        h("td", { class: "num" }, e.seq),
        h("td", { class: "dim" }, clock(e.timestamp)),
        h("td", { class: "num" }, e.attempt),
        h("td", null, h("code", null, type)),
        h("td", { class: "mono" }, brief(e.data)),
      ),
    );
    renderSoon();
  };

  let frame = 0;
  const renderSoon = () => {
    if (!frame) frame = requestAnimationFrame(() => ((frame = 0), render()));
  };

  const render = () => {
    renderHeader();
    renderProgress();
    replace(
      timelineBox,
      timeline.length === 0
        ? h("li", { class: "empty" }, "nothing yet")
        : timeline.map((t) =>
            h("li", { class: t.cls, "data-kind": t.cls }, h("span", { class: "dim" }, clock(t.at), " "), t.title, t.detail ? h("div", { class: "dim" }, t.detail) : null),
          ),
    );
    replace(
      diagBox,
      testResults.map((r) =>
        h(
          "div",
          { class: "test-results", "data-testid": "test-results" },
          `${r.tool}: `,
          h("span", { class: "s-succeeded" }, `${r.passed} passed`),
          ", ",
          h("span", { class: r.failed > 0 ? "s-failed" : "dim" }, `${r.failed} failed`),
          `, ${r.skipped} skipped`,
          r.failures.length
            ? h(
                "ul",
                null,
                r.failures.map((f) => h("li", { class: "mono" }, f)),
              )
            : null,
        ),
      ),
      diagnostics.length === 0 && testResults.length === 0 ? h("div", { class: "empty" }, "none") : null,
      diagnostics.length
        ? h(
            "table",
            null,
            h(
              "tbody",
              null,
              diagnostics.map((d) =>
                h(
                  "tr",
                  { "data-severity": d.severity },
                  h("td", { class: `sev-${d.severity}` }, d.severity),
                  h("td", { class: "mono" }, `${str(d.file)}${d.line ? `:${d.line}` : ""}${d.column ? `:${d.column}` : ""}`),
                  h("td", null, d.code ? h("code", null, d.code) : null, " ", d.message, h("span", { class: "dim" }, ` (${d.tool})`)),
                ),
              ),
            ),
          )
        : null,
    );
    drawResourceChart(canvas, samples);
  };

  const renderProgress = () => {
    if (!progress) {
      progressBox.hidden = true;
      return;
    }
    progressBox.hidden = false;
    // Once the task has ended its last report is history: no ETA, and a success is complete.
    const final = task !== undefined && isFinal(task.status as TaskStatus);
    const pct = final && task?.status === "succeeded" ? 100 : progress.percentage;
    const eta = final ? null : progress.etaMs;
    replace(
      progressBox,
      h(
        "div",
        { class: "toolbar" },
        h("b", null, progress.stage),
        h("span", null, progress.message),
        h("span", { style: "flex:1" }),
        pct !== null ? `${Math.round(pct)} %` : "",
        eta !== null ? h("span", { class: "dim" }, ` · ETA ${duration(eta)}`) : null,
      ),
      h("div", { class: pct === null && !final ? "bar indeterminate" : "bar" }, h("div", { style: `width:${pct ?? 0}%` })),
    );
  };

  const renderHeader = () => {
    if (!task) return;
    const final = isFinal(task.status as TaskStatus);
    replace(
      header,
      h(
        "div",
        { class: "toolbar" },
        h("span", { "data-testid": "task-status" }, statusBadge(task.status)),
        task.cancelRequested && !final ? h("span", { class: "dim" }, "cancelling…") : null,
        h("code", { class: "cmd" }, task.command ?? task.argv?.join(" ") ?? ""),
        h("span", { style: "flex:1" }),
        h("button", { class: "danger", disabled: final || task.cancelRequested, "data-action": "cancel", onclick: () => void cancel() }, "Cancel"),
        h("button", { disabled: !["claimed", "running", "blocked", "recovering"].includes(task.status), "data-action": "recover", onclick: () => void recover() }, "Recover"),
      ),
      h(
        "div",
        { class: "dim" },
        `task ${task.id} · attempt ${task.attempt}/${task.maxAttempts} · ${task.requirements.kind}`,
        task.planId ? [" · ", h("a", { href: `#/tasks?plan=${task.planId}` }, `plan ${task.planId.slice(0, 8)}${task.step ? ` step ${task.step}` : ""}`)] : null,
        task.workerId ? ` · worker ${task.workerId.slice(0, 8)}` : "",
        task.exitCode !== null ? ` · exit ${task.exitCode}` : "",
        task.signal ? ` · ${task.signal}` : "",
        task.startedAt ? ` · ran ${duration((task.finishedAt ? Date.parse(task.finishedAt) : live.serverNow()) - Date.parse(task.startedAt))}` : "",
      ),
      task.reason ? h("div", null, task.reason) : null,
    );
    if (task.pty && !final) makeInteractive(task);
    if (interactive && final) term.options.disableStdin = true;
    replace(stdinBox, task.stdin === "pipe" && !final && !task.pty ? stdinForm() : null);
  };

  const stdinForm = () => {
    const input = h("input", { class: "grow mono", placeholder: "stdin (Enter sends a line)", "aria-label": "stdin" });
    return h(
      "form",
      {
        class: "toolbar",
        style: "margin-top:8px",
        onsubmit: async (e: Event) => {
          e.preventDefault();
          try {
            await call(live.supabase, "POST", `/tasks/${taskId}/stdin`, { data: input.value + "\n" });
            input.value = "";
          } catch (err) {
            showError("stdin", err);
          }
        },
      },
      input,
      h("button", { type: "submit" }, "Send"),
      h(
        "button",
        { type: "button", onclick: () => void call(live.supabase, "POST", `/tasks/${taskId}/stdin`, { eof: true }).catch((err) => showError("close stdin", err)) },
        "Close stdin",
      ),
    );
  };

  async function refresh(): Promise<void> {
    try {
      task = await live.sandbox.getTask(taskId);
      renderSoon();
    } catch (err) {
      showError("GET /tasks/" + taskId, err);
    }
  }

  async function cancel(): Promise<void> {
    try {
      task = await live.sandbox.cancel(taskId);
      log(`task:${taskId.slice(0, 8)}`, "info", "cancel requested from the dashboard");
      renderSoon();
    } catch (err) {
      showError("cancel", err);
    }
  }

  async function recover(): Promise<void> {
    try {
      const r = await call<Data>(live.supabase, "POST", `/tasks/${taskId}/recover`, {});
      log(`task:${taskId.slice(0, 8)}`, "info", `recovery requested: ${brief(r, 200)}`);
      await refresh();
    } catch (err) {
      showError("recover", err);
    }
  }

  const offTasks = live.onTaskChange(({ task: t }) => {
    if (t.id === taskId) void refresh();
  });
  const tick = setInterval(renderHeader, 1000);
  void (async () => {
    await refresh();
    if (!task || closed) return;
    handle = await live.sandbox.attach(taskId, { onOutput, onEvent }, { collectOutput: false });
    if (closed) return void handle.close();
    await handle.result().catch((err) => showError("following the task", err));
    await refresh();
  })();

  return () => {
    closed = true;
    window.removeEventListener("resize", fit);
    clearTimeout(sizeTimer);
    offTasks();
    clearInterval(tick);
    cancelAnimationFrame(frame);
    void handle?.close();
    term.dispose();
  };
}
