// Fleet: workers (kind, labels, load, heartbeat age, status), queue depth by priority, health.
// A user sees no worker's name, version or host (the service role's): workers go by their id.
import { duration, h, replace, statusBadge } from "../dom.ts";
import { workerLabel, type Live } from "../live.ts";
import { usagePanel } from "./usage.ts";

/** A worker whose last heartbeat is older than this many leases is shown as late. */
const LATE_LEASES = 2;

export function fleetView(main: HTMLElement, live: Live): () => void {
  const stats = h("div", { class: "panel stats" });
  const workers = h("div", { class: "panel" });
  const queue = h("div", { class: "panel" });
  const usage = usagePanel(live);
  replace(main, h("h2", null, "Fleet"), stats, h("h2", null, "Your usage"), usage.el, h("h2", null, "Workers"), workers, h("h2", null, "Queue depth by priority"), queue);

  const render = () => {
    const f = live.fleet;
    const now = live.serverNow();
    const list = [...live.workers.values()].sort((a, b) => a.kind.localeCompare(b.kind) || a.createdAt.localeCompare(b.createdAt) || a.id.localeCompare(b.id));
    const liveCount = list.filter((w) => w.status === "online" && now - Date.parse(w.lastHeartbeatAt) < LATE_LEASES * w.leaseMs).length;
    const queued = live.queue.reduce((n, q) => n + q.count, 0);
    const running = list.reduce((n, w) => n + (w.status === "offline" ? 0 : w.running), 0);
    replace(
      stats,
      stat("live workers", liveCount),
      stat("running", running),
      stat("queued", queued),
      stat("oldest queued", f ? duration(f.health.oldestQueuedAgeMs) : "–"),
      f && f.health.queuedWithoutWorker.length
        ? h(
            "div",
            { class: "error-banner" },
            // Only the caller's own tasks (every tenant's for the service key): cogo.health().
            "No live worker serves: ",
            f.health.queuedWithoutWorker.map((q) => `${q.kind}${q.labels.length ? ` [${q.labels.join(",")}]` : ""} (${q.count} queued)`).join("; "),
            ` — they fail (no_worker_for_kind) once no worker has served the kind for ${duration(f.health.noWorkerFailAfterMs)}`,
          )
        : null,
    );
    replace(
      workers,
      list.length === 0
        ? h("div", { class: "empty" }, "No workers have registered. Start one: npm run worker")
        : h(
            "table",
            { "data-testid": "workers" },
            h("thead", null, h("tr", null, ...["worker", "kind", "labels", "load", "heartbeat", "status"].map((c) => h("th", null, c)))),
            h(
              "tbody",
              null,
              list.map((w) => {
                const age = now - Date.parse(w.lastHeartbeatAt);
                const late = w.status !== "offline" && age > LATE_LEASES * w.leaseMs;
                const load = Math.min(1, w.running / w.capacity);
                return h(
                  "tr",
                  { "data-worker": w.id },
                  h("td", null, h("code", { title: w.id }, workerLabel(w))),
                  h("td", null, h("code", null, w.kind)),
                  h("td", null, w.labels.length ? w.labels.map((l) => h("span", { class: "badge" }, l)) : h("span", { class: "dim" }, "–")),
                  h("td", null, h("div", { class: "load" }, h("div", { class: "bar" }, h("div", { style: `width:${load * 100}%` })), `${w.running}/${w.capacity}`)),
                  h("td", { class: late ? "s-failed" : "" }, `${duration(age)} ago`),
                  h("td", null, statusBadge(w.status), late ? h("span", { class: "dim" }, " (late)") : null),
                );
              }),
            ),
          ),
    );
    const max = Math.max(1, ...live.queue.map((q) => q.count));
    replace(
      queue,
      live.queue.length === 0
        ? h("div", { class: "empty" }, "The queue is empty.")
        : live.queue.map((q) =>
            h(
              "div",
              { class: "queue-row", "data-queue": `${q.kind}:${q.priority}` },
              h("span", null, h("code", null, q.kind), ` priority ${q.priority}`),
              h("div", { class: "bar" }, h("div", { style: `width:${(q.count / max) * 100}%` })),
              h("span", { class: "num" }, q.count),
            ),
          ),
    );
  };
  render();
  const off = live.onFleet(render);
  const tick = setInterval(render, 1000); // heartbeat ages move every second
  return () => {
    off();
    clearInterval(tick);
    usage.stop();
  };
}

const stat = (label: string, value: string | number) => h("div", { class: "stat" }, h("b", null, value), h("span", { class: "dim" }, label));
