// The persistent sandboxes this worker holds (issue 19; docs/state-machine.md "Persistent
// sandboxes"). A sandbox's slot is its init task, claimed by cogo.claim_tasks like any task, so
// it counts against the worker's capacity and its tenant's share; `hold()` starts the live
// sandbox and marks the init task running (the sandbox is then `ready` in SQL). Its commands are
// claimed by cogo.claim_sandbox_commands and run by runTask (worker/run-task.ts), the path every
// task takes (output, stdin, cancel, block detection, the ending), with one difference: the
// process enters the live sandbox instead of a fresh one. No supervisor watches the sandbox
// itself, so an idle sandbox is never a block. File ops (cogo.claim_sandbox_ops) run inside the
// sandbox too, as commands that make no task (worker/sandboxes/files.ts).
//
// The sandbox ends, every process killed and its workspace and cgroups removed, and its init
// task is finished with why:
//   DELETE (the init task's cancel)          cancelled  "deleted"
//   idle timeout (this worker's timer)        succeeded  "idle timeout: …"
//   lifetime (this worker's timer)            succeeded  "lifetime reached: …"
//   drain or shutdown                         succeeded  "worker draining" / "worker shutting down"
//   its init exited (code inside killed it)   succeeded  "the sandbox's init exited"
// cogo.expire_sandboxes (the lease rescuer) cancels a sandbox this worker failed to stop on time;
// a lost lease stops it without a word (the SQL makes it `lost`).
import type { FinalStatus } from "../../functions/_shared/states.ts";
import type { SandboxRow, TaskRow } from "../../functions/_shared/views.ts";
import { Attempt } from "../attempt.ts";
import { LeaseLostError } from "../db.ts";
import type { Queue, SandboxOpRow } from "../queue.ts";
import { runTask, type RunningTask } from "../run-task.ts";
import { startPersistentSandbox, type PersistentSandbox, type SandboxOptions } from "../sandbox/index.ts";
import { runFileOp, type FileOpOutcome } from "./files.ts";

/** How long past the lifetime the sandbox's own kill switch waits for the host's timer. */
const LIFETIME_MARGIN_MS = 5_000;

/**
 * A warm sandbox nobody takes is stopped after this long (its slot and memory back to the host);
 * the next hold starts cold and warms a new one.
 */
const WARM_IDLE_MS = 10 * 60_000;
/** The kill switch of a warm sandbox: its idle time, then the longest lifetime, past the host's timers. */
const WARM_LIFETIME_MS = WARM_IDLE_MS + 3_600_000 + LIFETIME_MARGIN_MS;

interface Held {
  row: SandboxRow;
  attempt: Attempt;
  live?: PersistentSandbox;
  /** Active commands (background ones included): while any runs the sandbox is not idle. */
  readonly commands: Set<string>;
  /** File ops running (worker/sandboxes/files.ts): activity too. */
  ops: number;
  /** When the last command or file op ended (or the sandbox became ready, or a PATCH kept it alive). */
  lastActivity: number;
  idleTimer?: NodeJS.Timeout;
  lifeTimer?: NodeJS.Timeout;
  /** Why it ends, once decided (the first decision wins). */
  end?: { status: FinalStatus; reason: string };
  lost: boolean;
}

export interface SandboxHostDeps {
  workerId: () => string;
  queue: Queue;
  sandboxOptions: SandboxOptions;
  flushIntervalMs: number;
  log: (line: string) => void;
  /** Something changed that may let the worker claim (a sandbox became ready, or ended). */
  nudge: () => void;
}

/** The sandbox's limits without the per-command output policy. */
function sandboxLimits(row: SandboxRow) {
  const { onOutputLimit: _, ...limits } = row.limits;
  return limits;
}

type Limits = ReturnType<typeof sandboxLimits>;

/** Same limits, whatever the key order. */
const limitsKey = (limits: Limits) => JSON.stringify(Object.entries(limits).sort(([a], [b]) => a.localeCompare(b)));

export class SandboxHost {
  private readonly held = new Map<string, Held>();
  /**
   * One sandbox started ahead with the limits of the last one held, so the next create of the
   * same shape is ready without starting bwrap (issue 19's create → ready). None until this
   * worker holds its first sandbox: a worker that never gets one pays nothing. It is clean: a
   * fresh bwrap, an empty workspace, no tenant's process or env (`adopt` gives it those).
   */
  private warm: { key: string; sandbox: Promise<PersistentSandbox | null>; timer: NodeJS.Timeout } | null = null;
  private closing = false;

  constructor(private readonly deps: SandboxHostDeps) {}

  /** Sandboxes held (starting or ready on this worker). */
  get count(): number {
    return this.held.size;
  }

  /** An init task claimed by this worker: start its sandbox. The returned task holds the slot until the sandbox ends. */
  hold(task: TaskRow): RunningTask {
    const { queue, log } = this.deps;
    const attempt = new Attempt(task, this.deps.workerId(), queue, log);
    let h: Held | undefined;
    // A stop that arrives before the sandbox row is read.
    let early: "cancelled" | "lease_lost" | "shutdown" | undefined;
    const done = (async () => {
      const row = await queue.sandboxOfInit(task.id);
      if (!row) {
        await attempt.end({ kind: "finish", status: "failed", reason: "no sandbox row for this init task", exitCode: null, signal: null, usage: {} });
        return;
      }
      h = { row, attempt, commands: new Set(), ops: 0, lastActivity: Date.now(), lost: false };
      this.held.set(row.id, h);
      if (early) this.stop(h, early);
      try {
        if (!h.end) {
          const limits = sandboxLimits(row);
          const lifetimeMs = Math.max(1, row.expiresAt.getTime() - Date.now()) + LIFETIME_MARGIN_MS;
          const warm = await this.takeWarm(limits);
          if (warm) warm.adopt({ env: row.env, lifetimeMs });
          h.live =
            warm ??
            (await startPersistentSandbox(
              {
                env: row.env,
                limits,
                network: false, // refused in SQL for sandboxes (design R1)
                lifetimeMs,
              },
              this.deps.sandboxOptions,
            ));
          if (!h.end) this.warmUp(limits);
        }
        if (h.end)
          h.live?.kill("killed"); // stopped while it started
        else {
          await attempt.start(); // → ready in SQL
          h.lastActivity = Date.now();
          this.arm(h);
          log(`sandbox ${row.id}: ready`);
          this.deps.nudge(); // commands queued while it started
        }
        const report = h.live ? (await h.live.ended, await h.live.cleanup()) : undefined;
        if (report && !report.clean) log(`sandbox ${row.id}: left behind after its end: ${JSON.stringify(report)}`);
        if (h.lost) return;
        const end = h.end ?? { status: "succeeded" as const, reason: "the sandbox's init exited (a process inside killed it)" };
        await attempt.end({ kind: "finish", ...end, exitCode: null, signal: null, usage: {}, result: report ? { cleanup: report } : undefined });
      } catch (err) {
        if (err instanceof LeaseLostError) attempt.lost();
        if (h.live) {
          h.live.kill("killed");
          await h.live.cleanup().catch(() => {});
        }
        if (err instanceof LeaseLostError || h.lost) return;
        log(`sandbox ${row.id}: ${err instanceof Error ? err.message : err}`);
        await attempt
          .end({ kind: "finish", status: "failed", reason: `could not start the sandbox: ${err instanceof Error ? err.message : err}`, exitCode: null, signal: null, usage: {} })
          .catch((e) => log(`sandbox ${row.id}: finishing its init task: ${e}`));
      } finally {
        clearTimeout(h.idleTimer);
        clearTimeout(h.lifeTimer);
        this.held.delete(row.id);
        this.deps.nudge();
      }
    })();
    return {
      lease: attempt.lease,
      stop: (reason) => (h ? this.stop(h, reason) : (early ??= reason)),
      stdinReady: () => {},
      recover: () => {},
      done,
    };
  }

  /** A command claimed for one of this worker's sandboxes: run it inside. */
  runCommand(task: TaskRow): RunningTask {
    const { queue, log } = this.deps;
    const h = task.sandboxId ? this.held.get(task.sandboxId) : undefined;
    const live = h?.live;
    if (!h || !live || h.end) {
      // Claimed as the sandbox ended (the claim saw it ready): it never ran.
      const attempt = new Attempt(task, this.deps.workerId(), queue, log);
      const reason = `sandbox ${task.sandboxId} ${h?.end ? `is stopping: ${h.end.reason}` : "is not running on this worker"}`;
      const done = attempt
        .end({ kind: "finish", status: "failed", reason, exitCode: null, signal: null, usage: {} })
        .then(() => {})
        .catch((e) => log(`task ${task.id}: ${e}`));
      return { lease: attempt.lease, stop: () => {}, stdinReady: () => {}, recover: () => {}, done };
    }
    h.commands.add(task.id);
    clearTimeout(h.idleTimer);
    const run = runTask(task, this.deps.workerId(), queue, this.deps.sandboxOptions, this.deps.flushIntervalMs, log, (spec) =>
      live.exec({
        command: spec.command,
        env: spec.env,
        cwd: task.cwd ?? undefined,
        stdin: spec.stdin,
        limits: spec.limits,
        onOutputLimit: spec.onOutputLimit,
        // A foreground command ends with its leader: what it left running is killed (else a
        // leftover holding stdout keeps it open). A background one keeps its processes.
        leftovers: task.background ? "keep" : "kill",
        // A terminal: launcher.py opens a pty of the sandbox's own devpts for it (stdin implied).
        ...(task.pty ? { pty: task.pty } : {}),
      }),
    );
    void run.done.finally(() => {
      h.commands.delete(task.id);
      h.lastActivity = Date.now();
      this.arm(h);
    });
    return run;
  }

  /**
   * A file op claimed for one of this worker's sandboxes: runs it inside and finishes its row
   * (fenced by this worker's id). It counts as activity: no idle timeout while it runs.
   */
  async serveOp(op: SandboxOpRow): Promise<void> {
    const { queue } = this.deps;
    const workerId = this.deps.workerId();
    const h = this.held.get(op.sandboxId);
    const live = h?.live;
    if (!h || !live || h.end) {
      const message = `sandbox ${op.sandboxId} ${h?.end ? `is stopping: ${h.end.reason}` : "is not running on this worker"}`;
      await queue.finishSandboxOp(workerId, op.id, { ok: false, result: null, error: { code: "sandbox_ended", message }, output: null });
      return;
    }
    h.ops++;
    clearTimeout(h.idleTimer);
    let outcome: FileOpOutcome;
    try {
      const input = op.op === "write" || op.op === "tar_put" ? await queue.sandboxOpInput(workerId, op.id) : null;
      outcome = await runFileOp(live, op, input);
    } catch (err) {
      // The sandbox ended under it (exec refuses an ended sandbox), or the database failed.
      const code = h.end ? "sandbox_ended" : "op_failed";
      outcome = { ok: false, result: null, error: { code, message: err instanceof Error ? err.message : String(err) }, output: null };
    } finally {
      h.ops--;
      h.lastActivity = Date.now();
      this.arm(h);
    }
    await queue.finishSandboxOp(workerId, op.id, outcome);
  }

  /** Re-reads the held sandboxes' rows (a PATCH changed the idle timeout and kept it alive). */
  async refresh(): Promise<void> {
    if (this.held.size === 0) return;
    for (const row of await this.deps.queue.sandboxes([...this.held.keys()])) {
      const h = this.held.get(row.id);
      if (!h) continue;
      h.row = row;
      h.lastActivity = Math.max(h.lastActivity, row.lastActivityAt.getTime());
      if (h.live && !h.end) this.arm(h);
    }
  }

  /** Drain or shutdown: every sandbox stops now (status stopped, with the reason), the warm one too. */
  stopAll(reason: string): void {
    this.closing = true;
    for (const h of this.held.values()) this.end(h, "succeeded", reason);
    this.dropWarm();
  }

  /** Resolves once the warm sandbox (if any) is gone and cleaned up: call after stopAll. */
  async closed(): Promise<void> {
    await this.warmGone;
  }

  private warmGone: Promise<void> = Promise.resolve();

  /** The warm sandbox if it has these limits and is alive (it is then the caller's); else null, and it is dropped. */
  private async takeWarm(limits: Limits): Promise<PersistentSandbox | null> {
    const w = this.warm;
    if (!w) return null;
    if (w.key !== limitsKey(limits)) {
      this.dropWarm();
      return null;
    }
    this.warm = null;
    clearTimeout(w.timer);
    const sandbox = await w.sandbox;
    if (sandbox?.live) return sandbox;
    if (sandbox) this.discard(sandbox);
    return null;
  }

  /** Starts a warm sandbox with these limits, unless there is one or the worker is stopping. */
  private warmUp(limits: Limits): void {
    if (this.warm || this.closing) return;
    const sandbox = startPersistentSandbox({ limits, network: false, lifetimeMs: WARM_LIFETIME_MS }, this.deps.sandboxOptions).catch((err) => {
      this.deps.log(`warm sandbox: could not start one: ${err instanceof Error ? err.message : err}`);
      return null;
    });
    const timer = setTimeout(() => this.dropWarm(), WARM_IDLE_MS);
    timer.unref();
    this.warm = { key: limitsKey(limits), sandbox, timer };
    // Started as the worker began to stop: do not leave it behind.
    if (this.closing) this.dropWarm();
  }

  private dropWarm(): void {
    const w = this.warm;
    if (!w) return;
    this.warm = null;
    clearTimeout(w.timer);
    const gone = w.sandbox.then((sandbox) => (sandbox ? this.discard(sandbox) : undefined));
    const before = this.warmGone;
    this.warmGone = Promise.all([before, gone]).then(() => {});
  }

  private async discard(sandbox: PersistentSandbox): Promise<void> {
    sandbox.kill("killed");
    const report = await sandbox.cleanup().catch((err) => ({ clean: false, error: String(err) }));
    if (!report.clean) this.deps.log(`warm sandbox: left behind after its end: ${JSON.stringify(report)}`);
  }

  private stop(h: Held, why: "cancelled" | "lease_lost" | "shutdown"): void {
    if (why === "lease_lost") {
      h.lost = true;
      h.attempt.lost();
      this.end(h, "failed", "lease lost");
    } else if (why === "shutdown") this.end(h, "succeeded", "worker shutting down");
    else {
      // A cancel is DELETE, or cogo.expire_sandboxes when this worker's timer did not fire first.
      const now = Date.now();
      const reason =
        now >= h.row.expiresAt.getTime()
          ? `lifetime reached (maxLifetimeMs ${h.row.maxLifetimeMs})`
          : h.commands.size === 0 && h.ops === 0 && now >= h.lastActivity + h.row.idleTimeoutMs
            ? `idle timeout: no command for ${h.row.idleTimeoutMs} ms`
            : "deleted";
      this.end(h, reason === "deleted" ? "cancelled" : "succeeded", reason);
    }
  }

  private end(h: Held, status: FinalStatus, reason: string): void {
    if (h.end) return;
    h.end = { status, reason };
    clearTimeout(h.idleTimer);
    clearTimeout(h.lifeTimer);
    this.deps.log(`sandbox ${h.row.id}: stopping (${reason})`);
    // PID 1 exits, the kernel kills every process inside; each command's run then ends.
    h.live?.kill("killed");
  }

  /** (Re)sets the lifetime timer, and the idle timer while no command runs. */
  private arm(h: Held): void {
    if (h.end) return;
    clearTimeout(h.lifeTimer);
    h.lifeTimer = setTimeout(() => this.end(h, "succeeded", `lifetime reached (maxLifetimeMs ${h.row.maxLifetimeMs})`), Math.max(0, h.row.expiresAt.getTime() - Date.now()));
    h.lifeTimer.unref();
    clearTimeout(h.idleTimer);
    if (h.commands.size > 0 || h.ops > 0) return;
    const idleMs = h.row.idleTimeoutMs;
    h.idleTimer = setTimeout(() => this.end(h, "succeeded", `idle timeout: no command for ${idleMs} ms`), Math.max(0, h.lastActivity + idleMs - Date.now()));
    h.idleTimer.unref();
  }
}
