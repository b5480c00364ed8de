// The worker loop: register, then claim → run → finish, woken by LISTEN with a poll fallback.
// Heartbeats renew leases; a worker that cannot heartbeat stops its tasks before their leases
// run out, so another worker never runs the same task at the same time.
import { hostname, cpus, totalmem } from "node:os";
import type { Sql } from "postgres";
import { connect } from "../functions/_shared/db.ts";
import type { RecoverRequest } from "../functions/_shared/recovery/options.ts";
import { computeBudget, isLocalDatabase, localNames, readHostResources, type Budget } from "./budget.ts";
import { resolveWorkerOptions, sandboxCgroups, type WorkerOptions } from "./config.ts";
import { isAnalysisTask, runAnalysisTask } from "./analysis/run.ts";
import { LeaseRescuer } from "./maintenance/lease-rescuer.ts";
import { Maintenance } from "./maintenance/retention.ts";
import { HeartbeatThread, nowMs, type Beat } from "./heartbeat.ts";
import { Attempt } from "./attempt.ts";
import { Queue } from "./queue.ts";
import { runTask, type RunningTask } from "./run-task.ts";
import { SandboxHost } from "./sandboxes/host.ts";
import { drainWorkspacePool, SANDBOX_DEFAULTS, sandboxFacts, stopLauncher, type SandboxOptions } from "./sandbox/index.ts";

export const WORKER_VERSION = "0.1.0";

/** Stop running tasks once this share of the lease has passed without a successful heartbeat. */
const LEASE_SAFETY = 0.7;
/**
 * The heartbeat thread renews leases only while the main loop has ticked within 4 leases, and at
 * least this long: a loaded machine stalls a loop for seconds, a wedged one never comes back.
 */
const MIN_MAIN_STALL_MS = 30_000;
/** Commands claimed per round trip (each sandbox takes at most cogo.max_sandbox_commands() active). */
const COMMAND_CLAIM_BATCH = 16;
/** File ops claimed per round trip (each sandbox has at most cogo.max_sandbox_ops() in flight). */
const OP_CLAIM_BATCH = 16;

interface Control {
  action: "cancel" | "stdin" | "drain" | "recover" | "resize";
  taskId?: string;
  workerId?: string;
  request?: RecoverRequest;
  /** resize: the terminal's new size (cogo.resize_task checked it). */
  cols?: number;
  rows?: number;
}

export class Worker {
  readonly options: WorkerOptions;
  private readonly sql: Sql;
  private readonly queue: Queue;
  private readonly running = new Map<string, RunningTask>();
  private readonly sandboxOptions: SandboxOptions;
  /** Persistent sandboxes this worker holds; their init tasks are in `running`, holding slots. */
  private readonly sandboxes: SandboxHost;
  /** Commands of those sandboxes in `running`: they take no slot (the sandbox's init task has it). */
  private readonly commands = new Set<string>();
  private rescuer: LeaseRescuer | undefined;
  private maintenance: Maintenance | undefined;
  private id: string | undefined;
  private claiming = false;
  private claimAgain = false;
  private opsClaiming = false;
  private opsAgain = false;
  /** File ops being served; shutdown waits for them. */
  private readonly ops = new Set<Promise<void>>();
  private stopping = false;
  private draining = false;
  /** Renews leases from its own thread (worker/heartbeat.ts); made once registered. */
  private heartbeats: HeartbeatThread | undefined;
  /** When each running task was launched (nowMs): a heartbeat sent earlier cannot know it. */
  private readonly launchedAt = new Map<string, number>();
  private pollTimer: ReturnType<typeof setInterval> | undefined;
  /** Heartbeat and lease-safety timers: they run until the last task is done, shutdown included. */
  private leaseTimers: ReturnType<typeof setInterval>[] = [];
  private claimLoopDone: Promise<void> = Promise.resolve();
  private unlisten: (() => Promise<void>)[] = [];
  private stoppedResolve!: () => void;
  /** Resolves when the worker has stopped (SIGTERM, drain, or stop()). */
  readonly stopped = new Promise<void>((r) => (this.stoppedResolve = r));

  constructor(options: Partial<WorkerOptions>) {
    this.options = resolveWorkerOptions(options);
    this.sql = connect(this.options.databaseUrl, {
      max: Math.min(10, 2 + this.options.concurrency),
      idle_timeout: 0,
      connection: { application_name: `cogo-worker ${this.options.name}` },
    });
    this.queue = new Queue(this.sql);
    this.sandboxOptions = {
      root: this.options.workspaceRoot,
      uid: this.options.sandboxUidBase,
      allowNetwork: this.options.allowNetwork,
      cgroups: sandboxCgroups(this.options.cgroups),
      // A tmpfs per running task stays mounted between tasks: no mount/umount process per task.
      workspacePool: this.options.concurrency,
      // Every running task needs its own uid slot, and other workers of the machine share the range.
      slots: Math.max(SANDBOX_DEFAULTS.slots, 2 * this.options.concurrency),
      ...this.options.sandbox,
    };
    this.sandboxes = new SandboxHost({
      workerId: () => this.id!,
      queue: this.queue,
      sandboxOptions: this.sandboxOptions,
      flushIntervalMs: this.options.flushIntervalMs,
      log: this.options.log,
      nudge: () => this.nudge(),
    });
  }

  get workerId(): string | undefined {
    return this.id;
  }

  /** The host budget this worker registered (set by start()). */
  budget: Budget | undefined;

  get activeTasks(): number {
    return this.running.size;
  }

  async start(): Promise<void> {
    const o = this.options;
    const facts = await sandboxFacts(this.sandboxOptions.cgroups);
    // Host admission: the claim takes only tasks whose memory limits fit this budget, and no task
    // gets more than all of it (no 8 GiB cap that four slots could overcommit).
    const budget = computeBudget(await readHostResources(), {
      databaseLocal: isLocalDatabase(o.databaseUrl, localNames()),
      memoryBudgetBytes: o.memoryBudgetBytes,
    });
    this.budget = budget;
    // An embedder's lower sandbox.maxLimits.memoryBytes still holds (the task's output says so).
    const memoryMax = Math.min(budget.memoryBytes, o.sandbox.maxLimits?.memoryBytes ?? budget.memoryBytes);
    this.sandboxOptions.maxLimits = { ...this.sandboxOptions.maxLimits, memoryBytes: memoryMax };
    const registeredAt = nowMs();
    const row = await this.queue.register({
      name: o.name,
      kind: o.kind,
      labels: o.labels,
      capacity: o.concurrency,
      leaseMs: o.leaseMs,
      version: WORKER_VERSION,
      host: { hostname: hostname(), pid: process.pid, cpus: cpus().length, memoryBytes: totalmem(), sandbox: facts },
      memoryBudgetBytes: budget.memoryBytes,
      cpuBudget: budget.cpus,
    });
    this.id = row.id;
    // Registering stamps last_heartbeat_at: the lease-safety clock starts there, not when this
    // object was made (a slow start would stop, and hand back, the first tasks it claims).
    // Heartbeats run on a thread and connection of their own, so neither a pool busy with output
    // writes nor a main loop stalled by a task's files or a loaded machine delays them.
    this.heartbeats = new HeartbeatThread(
      {
        databaseUrl: o.databaseUrl,
        workerId: row.id,
        intervalMs: Math.max(250, Math.floor(o.leaseMs / 3)),
        maxMainStallMs: Math.max(MIN_MAIN_STALL_MS, 4 * o.leaseMs),
        applicationName: `cogo-worker ${o.name} heartbeat`,
        onBeat: (beat) => this.onBeat(beat),
        // Without renewals every task would be stopped at 70 % of its lease and handed back,
        // using up attempts: stop claiming and shut down (a supervisor restarts the process).
        onDied: (reason) => {
          o.log(`heartbeat thread died (${reason}): stopping this worker`);
          void this.stop();
        },
        log: o.log,
      },
      registeredAt,
    );
    o.log(
      `sandbox toolchain: ${
        Object.entries(facts.toolchain)
          .map(([tool, version]) => `${tool} ${version}`)
          .join("; ") || "none found in /usr"
      }`,
    );
    o.log(
      `worker ${o.name} (${row.id}) online: kind=${o.kind} labels=[${o.labels.join(",")}] concurrency=${o.concurrency} lease=${o.leaseMs}ms; sandbox: ${facts.limitsBy}${facts.cgroupNotes.length ? ` (${facts.cgroupNotes.join("; ")})` : ""}`,
    );
    o.log(`sandbox protections: ${facts.protections}`);
    o.log(`host budget: ${budget.explanation}; claims only tasks whose memory limits fit it`);

    const tasksListen = await this.sql.listen(
      "cogo_tasks",
      (kind) => kind === o.kind && this.nudge(),
      () => this.nudge(),
    );
    const controlListen = await this.sql.listen("cogo_control", (payload) => this.onControl(payload));
    // A command for a sandbox this worker holds, or a PATCH of one (payload: the holder's id), or
    // a file op on one (payload: "op:" + the holder's id).
    const sandboxListen = await this.sql.listen("cogo_sandbox", (workerId) => {
      if (workerId === `op:${this.id}`) return this.claimOps();
      if (workerId !== this.id) return;
      void this.sandboxes.refresh().catch((err) => o.log(`sandboxes: refresh: ${err}`));
      this.nudge();
    });
    this.unlisten.push(tasksListen.unlisten, controlListen.unlisten, sandboxListen.unlisten);
    this.pollTimer = setInterval(() => {
      this.nudge();
      this.claimOps();
    }, o.pollIntervalMs);
    this.leaseTimers.push(setInterval(() => this.checkLeaseSafety(), Math.max(50, Math.floor(o.leaseMs / 20))));
    this.rescuer = new LeaseRescuer(this.queue, o.rescueIntervalMs, o.log);
    this.rescuer.start();
    this.maintenance = new Maintenance(this.sql, { intervalMs: o.maintenanceIntervalMs, batch: o.retentionBatch }, o.log);
    this.maintenance.start();
    this.nudge();
  }

  /** Stop claiming; wait up to graceMs for running tasks, then stop them and hand them back. */
  async stop(graceMs = this.options.graceMs): Promise<void> {
    if (this.stopping) return this.stopped;
    this.stopping = true;
    clearInterval(this.pollTimer);
    this.rescuer?.stop();
    const maintenanceStopped = this.maintenance?.stop();
    // A claim in flight launches its tasks before they are counted here.
    await this.claimLoopDone;
    // Sandboxes cannot move to another worker: they stop now, their owners told why.
    this.sandboxes.stopAll(this.draining ? "worker draining" : "worker shutting down");
    // Heartbeats go on through the grace: a task longer than a lease must not be taken and run
    // elsewhere while it still runs here.
    const all = Promise.all([...this.running.values()].map((t) => t.done));
    const graceOver = new Promise<"timeout">((r) => setTimeout(() => r("timeout"), graceMs).unref());
    if ((await Promise.race([all, graceOver])) === "timeout") {
      this.options.log(`grace of ${graceMs} ms over; stopping ${this.running.size} task(s) and re-queueing them`);
      for (const t of this.running.values()) t.stop("shutdown");
      await all;
    }
    await Promise.all(this.ops);
    await this.sandboxes.closed();
    for (const t of this.leaseTimers) clearInterval(t);
    await this.heartbeats?.stop();
    await drainWorkspacePool(this.options.workspaceRoot).catch((err) => this.options.log(`unmounting idle workspaces: ${err}`));
    await stopLauncher().catch(() => {});
    await maintenanceStopped;
    for (const u of this.unlisten) await u().catch(() => {});
    if (this.id) await this.queue.setOffline(this.id).catch(() => {});
    await this.sql.end({ timeout: 5 });
    this.options.log(`worker ${this.options.name} stopped`);
    this.stoppedResolve();
  }

  private nudge(): void {
    if (this.claiming) {
      this.claimAgain = true;
      return;
    }
    this.claimLoopDone = this.claimLoop();
  }

  private async claimLoop(): Promise<void> {
    this.claiming = true;
    try {
      do {
        this.claimAgain = false;
        if (!this.id || this.stopping) break;
        // Commands first: they take no slot, only the sandbox they run in does.
        if (this.sandboxes.count > 0 && !this.heartbeatsFailing()) {
          const commands = await this.queue.claimSandboxCommands(this.id, COMMAND_CLAIM_BATCH);
          for (const task of commands) this.launch(task);
          if (commands.length === COMMAND_CLAIM_BATCH) this.claimAgain = true;
        }
        const free = this.options.concurrency - (this.running.size - this.commands.size);
        if (this.draining || free <= 0) continue;
        // Heartbeats failing: a task claimed now would be stopped at the next safety check, and
        // meanwhile an API recovery may already count this worker silent and hand it on.
        if (this.heartbeatsFailing()) break;
        const tasks = await this.queue.claim(this.id, free);
        tasks.sort((a, b) => b.priority - a.priority || a.createdAt.getTime() - b.createdAt.getTime());
        for (const task of tasks) this.launch(task);
        if (tasks.length === free) this.claimAgain = true;
      } while (this.claimAgain && !this.stopping);
    } catch (err) {
      this.options.log(`claim failed: ${err instanceof Error ? err.message : err}; retrying on the next poll`);
    } finally {
      this.claiming = false;
    }
  }

  /** Claims and serves file ops of the sandboxes this worker holds; one claim loop at a time. */
  private claimOps(): void {
    if (this.opsClaiming) {
      this.opsAgain = true;
      return;
    }
    if (!this.id || this.stopping || this.sandboxes.count === 0) return;
    this.opsClaiming = true;
    void (async () => {
      try {
        do {
          this.opsAgain = false;
          const ops = await this.queue.claimSandboxOps(this.id!, OP_CLAIM_BATCH);
          for (const op of ops) {
            const served = this.sandboxes.serveOp(op).catch((err) => this.options.log(`sandbox ${op.sandboxId}: file op ${op.id}: ${err}`));
            this.ops.add(served);
            void served.finally(() => this.ops.delete(served));
          }
          if (ops.length === OP_CLAIM_BATCH) this.opsAgain = true;
        } while (this.opsAgain && !this.stopping);
      } catch (err) {
        this.options.log(`claiming file ops failed: ${err instanceof Error ? err.message : err}; retrying on the next poll`);
      } finally {
        this.opsClaiming = false;
      }
    })();
  }

  private launch(task: Parameters<typeof runTask>[0]): void {
    // Re-queued by this worker (a recovery) and claimed again while the last attempt still
    // cleans up: start once it is gone, so one entry tracks the task.
    const previous = this.running.get(task.id);
    if (previous) {
      void previous.done.finally(() => {
        if (!this.stopping) return this.launch(task);
        new Attempt(task, this.id!, this.queue, this.options.log)
          .end({ kind: "release", reason: "worker shut down before the task started; re-queued" })
          .catch((err) => this.options.log(`task ${task.id}: release: ${err}`));
      });
      return;
    }
    const run =
      task.internal === "sandbox-init"
        ? this.sandboxes.hold(task)
        : task.sandboxId
          ? this.sandboxes.runCommand(task)
          : isAnalysisTask(task)
            ? runAnalysisTask(task, this.id!, this.queue, this.sandboxOptions, this.options.log)
            : runTask(task, this.id!, this.queue, this.sandboxOptions, this.options.flushIntervalMs, this.options.log);
    this.running.set(task.id, run);
    if (task.sandboxId) this.commands.add(task.id);
    this.launchedAt.set(task.id, nowMs());
    void run.done.finally(() => {
      if (this.running.get(task.id) === run) {
        this.running.delete(task.id);
        this.launchedAt.delete(task.id);
        this.commands.delete(task.id);
      }
      if (this.draining && this.running.size === 0) {
        this.options.log("drained: no tasks left");
        void this.stop();
      } else this.nudge();
    });
  }

  private onControl(payload: string): void {
    let msg: Control;
    try {
      msg = JSON.parse(payload) as Control;
    } catch {
      return;
    }
    if (msg.action === "drain") {
      if (msg.workerId !== this.id || this.draining) return;
      this.draining = true;
      this.options.log(`draining: no new claims; ${this.running.size} task(s) still running`);
      this.sandboxes.stopAll("worker draining");
      if (this.running.size === 0) void this.stop();
      return;
    }
    const task = msg.taskId ? this.running.get(msg.taskId) : undefined;
    if (!task) return;
    if (msg.action === "cancel") task.stop("cancelled");
    else if (msg.action === "stdin") task.stdinReady();
    else if (msg.action === "recover") task.recover(msg.request ?? {});
    else if (msg.action === "resize" && msg.workerId === this.id && msg.cols && msg.rows) task.resize?.(msg.cols, msg.rows);
  }

  /**
   * A blackholed connection hangs rather than fails, so the clock decides, not the error. Checked
   * on its own short timer: at heartbeat ticks (every lease/3) the first check past 70 % would
   * come only at 100 %, when the lease has already run out.
   */
  private heartbeatsFailing(): boolean {
    return !!this.heartbeats && nowMs() - this.heartbeats.lastOkAt > this.options.leaseMs * LEASE_SAFETY;
  }

  private checkLeaseSafety(): void {
    this.heartbeats?.mainAlive();
    if (!this.heartbeats || !this.running.size) return;
    const silentMs = nowMs() - this.heartbeats.lastOkAt;
    if (silentMs > this.options.leaseMs * LEASE_SAFETY) {
      this.options.log(`no heartbeat for ${silentMs.toFixed(0)} ms: stopping ${this.running.size} task(s) before their leases expire`);
      for (const task of this.running.values()) task.stop("lease_lost");
    }
  }

  /** What a renewal said: tasks cancelled, tasks whose lease is gone, a drain. */
  private onBeat(beat: Beat): void {
    for (const [id, task] of this.running) {
      if (beat.cancel.includes(id)) task.stop("cancelled");
      // A task launched after the heartbeat was sent may have been claimed after its snapshot.
      else if ((this.launchedAt.get(id) ?? Infinity) < beat.sentAt && !beat.kept.has(id)) task.stop("lease_lost");
    }
    if (beat.workerStatus === "draining" && !this.draining) this.onControl(JSON.stringify({ action: "drain", workerId: this.id }));
  }
}
