// The page's live state: the fleet (topic `fleet`) and the user's tasks (topic `user:<uid>`), each
// loaded over the API first and then kept current by Realtime. Views subscribe to changes.
import type { RealtimeChannel, SupabaseClient } from "@supabase/supabase-js";
import {
  createSandboxClient,
  FLEET_TOPIC,
  userTopic,
  type Fleet,
  type QueueDepth,
  type SandboxClient,
  type TaskChangedMessage,
  type TaskSummary,
  type WorkerChangedMessage,
  type WorkerSummary,
} from "../../sdk/index.ts";
import { log } from "./event-log.ts";

/** /fleet is read again this often for the figures no topic carries (db latency, oldest queued age). */
const FLEET_REFRESH_MS = 10_000;

export type ChannelState = "connecting" | "SUBSCRIBED" | "TIMED_OUT" | "CLOSED" | "CHANNEL_ERROR";

export class Live {
  readonly sandbox: SandboxClient;
  workers = new Map<string, WorkerSummary>();
  queue: QueueDepth[] = [];
  fleet: Fleet | undefined;
  fleetError: string | undefined;
  /** Server clock minus ours, so heartbeat ages do not depend on this machine's clock. */
  clockOffsetMs = 0;
  channels: Record<"fleet" | "tasks", ChannelState> = { fleet: "connecting", tasks: "connecting" };
  private readonly fleetListeners = new Set<() => void>();
  private readonly taskListeners = new Set<(m: TaskChangedMessage) => void>();
  private readonly resyncListeners = new Set<() => void>();
  private readonly joinedBefore = { fleet: false, tasks: false };
  private readonly subscriptions: RealtimeChannel[] = [];
  private timer: ReturnType<typeof setInterval> | undefined;

  constructor(
    readonly supabase: SupabaseClient,
    readonly userId: string,
  ) {
    this.sandbox = createSandboxClient(supabase);
  }

  async start(): Promise<void> {
    await this.supabase.realtime.setAuth(); // the first private join must carry the user's token
    this.subscriptions.push(
      this.subscribe("fleet", FLEET_TOPIC, "worker_changed", (p) => this.onWorker(p as WorkerChangedMessage)),
      this.subscribe("tasks", userTopic(this.userId), "task_changed", (p) => this.onTask(p as TaskChangedMessage)),
    );
    await this.refreshFleet();
    this.timer = setInterval(() => void this.refreshFleet(), FLEET_REFRESH_MS);
  }

  async stop(): Promise<void> {
    clearInterval(this.timer);
    for (const c of this.subscriptions.splice(0)) await this.supabase.removeChannel(c);
  }

  serverNow(): number {
    return Date.now() + this.clockOffsetMs;
  }

  onFleet(listener: () => void): () => void {
    this.fleetListeners.add(listener);
    return () => this.fleetListeners.delete(listener);
  }

  onTaskChange(listener: (m: TaskChangedMessage) => void): () => void {
    this.taskListeners.add(listener);
    return () => this.taskListeners.delete(listener);
  }

  /** After the task topic rejoins (a dropped connection), lists reload: changes meanwhile were missed. */
  onTasksResync(listener: () => void): () => void {
    this.resyncListeners.add(listener);
    return () => this.resyncListeners.delete(listener);
  }

  async refreshFleet(): Promise<void> {
    try {
      const f = await this.sandbox.fleet();
      this.fleet = f;
      this.fleetError = undefined;
      this.clockOffsetMs = Date.parse(f.now) - Date.now();
      this.queue = f.queue;
      for (const w of f.workers) this.mergeWorker(w, false);
    } catch (err) {
      this.fleetError = err instanceof Error ? err.message : String(err);
      log("api", "error", `GET /fleet: ${this.fleetError}`);
    }
    this.emitFleet();
  }

  private subscribe(name: "fleet" | "tasks", topic: string, event: string, handler: (payload: unknown) => void): RealtimeChannel {
    return this.supabase
      .channel(topic, { config: { private: true } })
      .on("broadcast", { event }, ({ payload }) => handler(payload))
      .subscribe((status, err) => {
        if (this.channels[name] !== status) log("realtime", status === "SUBSCRIBED" ? "info" : "warn", `${topic}: ${status}${err ? ` (${err.message})` : ""}`);
        this.channels[name] = status;
        // Rejoined after a drop: what changed meanwhile comes from the API.
        if (status === "SUBSCRIBED" && this.joinedBefore[name]) {
          if (name === "fleet") void this.refreshFleet();
          else for (const l of this.resyncListeners) l();
        }
        if (status === "SUBSCRIBED") this.joinedBefore[name] = true;
        this.emitFleet();
      });
  }

  private onWorker(m: WorkerChangedMessage): void {
    this.clockOffsetMs = Date.parse(m.now) - Date.now();
    this.queue = m.queue;
    this.mergeWorker(m.worker, true);
    this.emitFleet();
  }

  private mergeWorker(w: WorkerSummary, fromTopic: boolean): void {
    const old = this.workers.get(w.id);
    if (old && Date.parse(old.lastHeartbeatAt) > Date.parse(w.lastHeartbeatAt) && old.status === w.status) return;
    this.workers.set(w.id, w);
    if (fromTopic && (!old || old.status !== w.status)) {
      log(
        "fleet",
        w.status === "offline" ? "warn" : "info",
        `worker ${workerLabel(w)} (${w.kind}${w.labels.length ? ", " + w.labels.join(",") : ""}) ${old ? `${old.status} → ${w.status}` : w.status}`,
      );
    }
  }

  private onTask(m: TaskChangedMessage): void {
    const t = m.task;
    log(
      "tasks",
      t.status === "failed" || t.status === "timed_out" ? "warn" : "info",
      `task ${t.id.slice(0, 8)} ${m.previous ? `${m.previous} → ` : ""}${t.status}${t.cancelRequested && t.status !== "cancelled" ? " (cancel requested)" : ""}${t.reason ? `: ${t.reason}` : ""}`,
    );
    for (const l of this.taskListeners) l(m);
  }

  private emitFleet(): void {
    for (const l of this.fleetListeners) l();
  }
}

/** How a worker is shown: its name where the caller may see it (service role), else its id's start. */
export function workerLabel(w: WorkerSummary): string {
  return w.name ?? w.id.slice(0, 8);
}

/** Of two copies of a task, the newer (its event seq only grows). */
export function newer(a: TaskSummary | undefined, b: TaskSummary): TaskSummary {
  return !a || b.version >= a.version ? b : a;
}
