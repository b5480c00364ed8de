// One running task's block detection and recovery: samples the sandbox, publishes
// `resource_sample` events, and when the classifier calls a block, reports it (running → blocked),
// asks the shared planner what to do and applies each step: acts on the process (kill, stdin) and
// records the recovery events itself, but never ends the attempt. A step that ends it (re-queue,
// give up) becomes the `Ending` that settle() returns to the task's run, whose Attempt applies it
// (worker/attempt.ts), so the automatic path and the API's recover routes end in the same place.
import { statfs } from "node:fs/promises";
import { taskEvent, type ResourceSample } from "../../functions/_shared/events.ts";
import type { FinalStatus } from "../../functions/_shared/states.ts";
import {
  detectionOptions,
  RECOVERY_DEFAULTS,
  type BlockDetectionOptions,
  type BlockReason,
  type RecoverRequest,
  type RecoveryOptions,
} from "../../functions/_shared/recovery/options.ts";
import { planRecovery, type RecoveryPlan, type RecoveryStep } from "../../functions/_shared/recovery/planner.ts";
import type { TaskRow } from "../../functions/_shared/views.ts";
import type { Ending } from "../attempt.ts";
import { LeaseLostError, type Lease } from "../db.ts";
import type { Queue } from "../queue.ts";
import type { SandboxExit, SandboxProcess } from "../sandbox/index.ts";
import { BlockClassifier, type Detection } from "./classifier.ts";
import { commandKey, learnedWindows } from "./history.ts";
import { BlockQueries } from "./queries.ts";
import { TreeSampler, type ThreadWait, type TreeSample } from "./sampler.ts";

/** At most one `resource_sample` event per task this often. */
export const RESOURCE_SAMPLE_MS = 2000;
/** Output kept for a block's evidence. */
const TAIL_BYTES = 4096;
const EVIDENCE_LINES = 10;

/** What a sandbox exit means as a block (found after the fact: the sandbox enforced the limit). */
const EXIT_BLOCKS: Partial<Record<SandboxExit["reason"], { reason: BlockReason; summary: string }>> = {
  timeout: { reason: "timeout", summary: "killed at its wall-time limit" },
  memory_limit: { reason: "memory_exhausted", summary: "killed at its memory limit" },
  output_limit: { reason: "output_flood", summary: "killed at its output limit" },
};

interface Block {
  reason: BlockReason | "manual";
  durationMs: number;
  summary: string;
}

export interface SupervisorDeps {
  task: TaskRow;
  lease: Lease;
  queue: Queue;
  /** The worker's highest limits (raise_limit stays within them). */
  maxLimits: { wallTimeMs: number; memoryBytes: number };
  log: (line: string) => void;
  /** A fenced write failed: the task is no longer ours. */
  onLeaseLost: () => void;
}

export class BlockSupervisor {
  private o: BlockDetectionOptions;
  /** A block was called or a recovery asked for in this attempt: its stretches teach nothing. */
  private disturbed = false;
  private readonly recovery: RecoveryOptions;
  private readonly queries: BlockQueries;
  private sandbox: SandboxProcess | undefined;
  private sampler: TreeSampler | undefined;
  private classifier: BlockClassifier | undefined;
  private timer: ReturnType<typeof setInterval> | undefined;
  /** An extra sample when a short window runs out between two regular ones. */
  private wakeup: ReturnType<typeof setTimeout> | undefined;
  private ticking = false;
  private lastSampleEventAt = 0;
  private lastWaitsAt = 0;
  private startedAt = performance.now();
  private outputBytes = 0;
  private lastOutputAt: number | null = null;
  private tail = "";
  private seen = new Map<string, number>();
  private last: TreeSample | undefined;
  private stdinClosed = false;
  /** Inodes and bytes in use on the workspace tmpfs at the last sample (null: not its own tmpfs). */
  private workspaceUse: { inodes: number; bytes: number } | null = null;
  /** A block waiting for a human (recovery.automatic false). */
  private parked: Block | undefined;
  private handling: Promise<void> | undefined;
  /** How a recovery decided the attempt ends; settle() hands it to the caller. */
  private decision: Ending | undefined;
  /** The task stopped for another cause: nothing more to decide. */
  private abandoned = false;
  private sandboxExited = false;
  private exitInfo!: (v: { exit: SandboxExit; outcome: { status: FinalStatus; reason: string } }) => void;
  private readonly exited = new Promise<{ exit: SandboxExit; outcome: { status: FinalStatus; reason: string } }>((r) => (this.exitInfo = r));

  constructor(private readonly d: SupervisorDeps) {
    this.o = detectionOptions(d.task.blockDetection);
    this.recovery = { ...RECOVERY_DEFAULTS, ...(d.task.recovery ?? {}) };
    this.queries = new BlockQueries(d.queue.sql);
  }

  /** Starts watching a sandbox that is running. */
  async attach(sandbox: SandboxProcess): Promise<void> {
    this.sandbox = sandbox;
    this.startedAt = performance.now();
    // From the exit on, no sample or recover request acts on the process (its pid may be reused);
    // settle() decides what the exit means once the output is flushed.
    void sandbox.exited.then(() => {
      this.sandboxExited = true;
      this.stop();
    });
    if (!this.o.enabled) return;
    // One query: the loop and stall windows this command's earlier successful runs justify.
    const history = await this.queries.commandHistory(this.d.task.owner, commandKey(this.d.task)).catch((err) => {
      this.d.log(`task ${this.d.task.id}: command history: ${err instanceof Error ? err.message : err}`);
      return null;
    });
    this.o = learnedWindows(this.o, this.d.task.blockDetection, history);
    this.workspaceUse = await workspaceUse(sandbox.workspace);
    const stdinLink = this.d.task.stdinMode === "pipe" ? await TreeSampler.stdinLinkOf(sandbox.pid) : null;
    const outputLinks = (await Promise.all([1, 2].map((fd) => TreeSampler.stdinLinkOf(sandbox.pid, fd)))).filter((l) => l !== null);
    this.sampler = new TreeSampler(sandbox.pid, sandbox.cgroup, stdinLink, outputLinks);
    this.classifier = new BlockClassifier(this.o, sandbox.limits);
    this.timer = setInterval(() => void this.tick(), this.o.sampleIntervalMs);
    // A first sample now: the classifier needs two before it sees an interval.
    void this.tick();
  }

  output(chunk: Buffer): void {
    this.outputBytes += chunk.length;
    this.lastOutputAt = performance.now();
    this.tail = (this.tail + chunk.subarray(-TAIL_BYTES).toString("utf8")).slice(-TAIL_BYTES);
  }

  /** The task's stdin was closed (by the user or a recovery): it can no longer wait on it. */
  stdinEnded(): void {
    this.stdinClosed = true;
  }

  /**
   * The attempt succeeded on its own (no block, no recovery): its longest silent stretches go to
   * the command's history, for the next run's windows.
   */
  async recordSuccess(): Promise<void> {
    if (!this.classifier || this.disturbed) return;
    await this.queries
      .recordSuccess(this.d.task.owner, commandKey(this.d.task), this.classifier.stretches())
      .catch((err) => this.d.log(`task ${this.d.task.id}: command history: ${err instanceof Error ? err.message : err}`));
  }

  /** A recover request from the API (over cogo_control). */
  recover(request: RecoverRequest): void {
    if (this.handling || this.decided || !this.sandbox || this.sandboxExited) return;
    const block = this.parked ?? { reason: "manual" as const, durationMs: 0, summary: "recovery requested" };
    this.parked = undefined;
    this.stop();
    this.run(block, request);
  }

  stop(): void {
    clearInterval(this.timer);
    this.timer = undefined;
    clearTimeout(this.wakeup);
    this.wakeup = undefined;
  }

  /** The task stopped for another cause (shutdown, lost lease): nothing more to recover. */
  abandon(exit: SandboxExit): void {
    this.stop();
    this.abandoned = true;
    this.exitInfo({ exit, outcome: { status: "failed", reason: "abandoned" } });
  }

  private get decided(): boolean {
    return this.decision !== undefined || this.abandoned;
  }

  /**
   * After the sandbox exited and its output is flushed: how a recovery decided the attempt ends
   * (a recovery under way, or an exit that is itself a block), or undefined to end it as the exit
   * says. The caller's Attempt applies it; the supervisor writes no ending itself.
   */
  async settle(exit: SandboxExit, outcome: { status: FinalStatus; reason: string }): Promise<Ending | undefined> {
    this.stop();
    this.sandboxExited = true;
    this.exitInfo({ exit, outcome });
    if (this.handling) await this.handling;
    if (this.decided) return this.decision;
    const block = EXIT_BLOCKS[exit.reason];
    if (!block || !this.o.enabled) return undefined;
    await this.handle({ ...block, durationMs: 0 }, false);
    return this.decision;
  }

  private async tick(): Promise<void> {
    if (this.ticking || this.handling || this.parked || this.decided) return;
    this.ticking = true;
    try {
      const sample = await this.sampler!.sample();
      // The sandbox may have exited meanwhile: settle() decides then, not a late sample.
      if (!this.timer || this.handling || this.decided || this.sandboxExited) return;
      // Thread waits cost a few files per thread: read them in quiet spells (from the first quiet
      // sample on, so the 2 s prompt and deadlock windows are reachable), a few times per the
      // shortest window that needs them (with the defaults: every sample).
      const quiet = this.classifier!.quiet || this.classifier!.quietSoFar(sample.at, sample.cpuMs, this.outputBytes);
      const wantWaits = quiet && sample.at - this.lastWaitsAt >= Math.min(this.o.waitingForInputMs, this.o.promptMs, this.o.deadlockMs) / 4;
      if (wantWaits) this.lastWaitsAt = sample.at;
      const waits = wantWaits ? await this.sampler!.waits(sample.processes) : undefined;
      if (!this.timer || this.sandboxExited) return;
      // Files created or removed in the workspace are work even when no byte is written (a task
      // making 600,000 empty files has no write I/O): count the tmpfs's change as I/O.
      let ioDelta = await this.workspaceDelta();
      let newProcess = false;
      const seen = new Map<string, number>();
      for (const p of sample.processes) {
        const key = `${p.pid}:${p.startTime}`;
        seen.set(key, p.ioBytes);
        const before = this.seen.get(key);
        if (before === undefined) newProcess = this.seen.size > 0 || newProcess;
        else ioDelta += Math.max(0, p.ioBytes - before);
      }
      this.seen = seen;
      this.last = sample;
      const detection = this.classifier!.observe({
        at: sample.at,
        cpuMs: sample.cpuMs,
        outputBytes: this.outputBytes,
        ioDelta,
        newProcess,
        runnable: sample.processes.some((p) => p.state === "R"),
        memoryBytes: sample.memoryBytes,
        tasks: sample.tasks,
        oomKills: sample.oomKills,
        forkFailures: sample.forkFailures,
        lastOutputAt: this.lastOutputAt,
        outputTail: this.tail,
        ...(waits ? { waits: countWaits(waits, this.stdinClosed) } : {}),
      });
      if (detection) {
        this.stop();
        this.run(detection);
        return;
      }
      const due = this.classifier!.pendingDeadline;
      const wait = due === null ? Infinity : due - performance.now();
      if (!this.wakeup && wait < this.o.sampleIntervalMs) {
        this.wakeup = setTimeout(() => {
          this.wakeup = undefined;
          void this.tick();
        }, Math.max(0, wait) + 1);
      }
      if (sample.at - this.lastSampleEventAt >= RESOURCE_SAMPLE_MS) {
        this.lastSampleEventAt = sample.at;
        this.d.queue.appendEvent(this.d.lease, taskEvent("resource_sample", this.usage())).catch((err) => this.failed(err));
      }
    } catch (err) {
      this.d.log(`task ${this.d.task.id}: block monitor: ${err instanceof Error ? err.message : err}`);
    } finally {
      this.ticking = false;
    }
  }

  private async workspaceDelta(): Promise<number> {
    if (!this.workspaceUse || !this.sandbox) return 0;
    const now = await workspaceUse(this.sandbox.workspace);
    if (!now) return 0;
    const delta = Math.abs(now.inodes - this.workspaceUse.inodes) * 4096 + Math.abs(now.bytes - this.workspaceUse.bytes);
    this.workspaceUse = now;
    return delta;
  }

  /** Handles a live block or request; afterwards keeps watching if the same process goes on. */
  private run(block: Detection | Block, request?: RecoverRequest): void {
    this.handling = this.handle(block, true, request).finally(() => {
      this.handling = undefined;
      if (!this.decided && !this.parked && this.classifier && !this.sandboxExited) {
        this.classifier.reset();
        this.timer = setInterval(() => void this.tick(), this.o.sampleIntervalMs);
      }
    });
  }

  private usage(): ResourceSample {
    const s = this.last;
    return {
      cpuPercent: this.classifier?.lastCpuPercent ?? 0,
      cpuMs: Math.round(s?.cpuMs ?? 0),
      rssBytes: s?.memoryBytes ?? 0,
      processes: s?.processes.length ?? 0,
      threads: s?.tasks ?? 0,
      outputBytes: this.outputBytes,
      wallMs: Math.round(performance.now() - this.startedAt),
      memoryLimitBytes: this.sandbox?.limits.memoryBytes ?? null,
      processLimit: this.sandbox?.limits.processes ?? null,
    };
  }

  private async evidence(alive: boolean) {
    let processes: Pick<ThreadWait, "pid" | "tid" | "comm" | "state" | "wchan" | "syscall" | "kind">[] = [];
    if (alive && this.sampler && this.last) {
      processes = (await this.sampler.waits(this.last.processes, 16).catch(() => [])).map(({ pid, tid, comm, state, wchan, syscall, kind }) => ({
        pid,
        tid,
        comm,
        state,
        wchan,
        syscall,
        kind,
      }));
    }
    return {
      lastOutput: this.tail
        .split("\n")
        .filter((l, i, a) => l !== "" || i < a.length - 1)
        .slice(-EVIDENCE_LINES),
      processes,
    };
  }

  private async handle(block: Block, alive: boolean, request?: RecoverRequest): Promise<void> {
    const { task, lease } = this.d;
    this.disturbed = true;
    try {
      const [history, otherWorkers] = await Promise.all([this.queries.history(task.id), this.queries.otherWorkers(task.id, lease.workerId)]);
      const limits = this.sandbox!.limits;
      const stdinOpen = task.stdinMode === "pipe" && !this.stdinClosed && !!this.sandbox?.stdin && !this.sandbox.stdin.writableEnded;
      const options = alive || this.recovery.automatic !== false || request ? this.recovery : { ...this.recovery, maxRecoveries: 0 };
      const plan = planRecovery({
        reason: block.reason,
        attempt: task.attempt,
        maxAttempts: task.maxAttempts,
        ...history,
        options,
        limits: { wallTimeMs: limits.wallTimeMs, memoryBytes: limits.memoryBytes },
        maxLimits: this.d.maxLimits,
        processAlive: alive,
        stdinOpen,
        otherWorkers,
        summary: block.summary,
        ...(request ? { request } : {}),
      });
      // worker_lost is written by SQL (the lease ran out), never by this monitor.
      if (block.reason !== "manual" && block.reason !== "worker_lost" && !request) {
        await this.queries.reportBlock(lease, {
          reason: block.reason,
          durationMs: Math.round(block.durationMs),
          usage: this.usage(),
          recoverable: plan.recoverable,
          evidence: { summary: block.summary, ...(await this.evidence(alive)) },
          plan: plan.steps.map((s) => s.action),
        });
        this.d.log(`task ${task.id}: blocked (${block.reason}: ${block.summary}); plan: ${plan.steps.map((s) => s.action).join(" → ")}`);
        if (alive && this.recovery.automatic === false) {
          this.parked = block;
          return;
        }
      }
      if (plan.refused) {
        await this.queries.endRecovery(lease, false, { action: request?.action, attempt: task.attempt, reason: block.reason, message: plan.refused }, false);
        return;
      }
      for (const step of plan.steps) await this.apply(step, plan, block);
    } catch (err) {
      this.failed(err);
    }
  }

  private async apply(step: RecoveryStep, plan: RecoveryPlan, block: Block): Promise<void> {
    const { task, lease } = this.d;
    const base = { action: step.action, attempt: task.attempt, reason: block.reason };
    const stdinKind = step.action === "feed_stdin" ? (step.stdin == null ? "eof" : "answer") : undefined;
    await this.queries.beginRecovery(lease, {
      ...base,
      ...(stdinKind ? { stdin: stdinKind } : {}),
      ...(step.delayMs !== undefined ? { delayMs: step.delayMs } : {}),
      ...(step.limits ? { limits: step.limits } : {}),
    });
    switch (step.action) {
      case "terminate": {
        // A resource block ends as its limit would have ended it (same status and reason).
        this.sandbox!.kill(block.reason === "memory_exhausted" ? "memory_limit" : block.reason === "output_flood" ? "output_limit" : "killed");
        const { exit } = await this.exited;
        await this.queries.endRecovery(lease, true, { ...base, message: `process tree killed (${exit.signal ?? exit.exitCode})` }, false);
        return;
      }
      case "feed_stdin": {
        const stdin = this.sandbox!.stdin!;
        if (step.stdin == null) {
          stdin.end();
          this.stdinClosed = true;
        } else stdin.write(step.stdin);
        await this.queries.endRecovery(
          lease,
          true,
          { ...base, stdin: stdinKind, message: step.stdin == null ? "stdin closed" : `wrote ${step.stdin.length} character(s) to stdin` },
          true,
        );
        return;
      }
      case "retry":
      case "reassign":
      case "raise_limit":
      case "alternative_command": {
        const why = `recovering from ${block.reason}: ${step.action}`;
        this.decision = {
          kind: "requeue",
          step: { ...step, exclude: step.action === "reassign", reason: why },
          event: {
            ...base,
            message: step.action === "reassign" ? "re-queued for another worker" : `re-queued; the next attempt may start in ${step.delayMs ?? 0} ms`,
            ...(step.limits ? { limits: step.limits } : {}),
          },
          // No attempt left (CG422, e.g. another path used it up meanwhile): give up instead.
          otherwise: async () => {
            this.decision = undefined;
            await this.queries.endRecovery(lease, false, { ...base, message: `task has no attempts left (max ${task.maxAttempts})` }, false);
            await this.apply({ action: "give_up" }, plan, block);
            return this.decision ?? { kind: "finish", status: plan.finalStatus, reason: plan.diagnosis, exitCode: null, signal: null, usage: {} };
          },
        };
        return;
      }
      case "give_up": {
        await this.queries.giveUp(lease, { action: "give_up", attempt: task.attempt, reason: block.reason, diagnosis: plan.diagnosis });
        // Plans end a live process with terminate first, so the exit is known here.
        const { exit, outcome } = await this.exited;
        // A limit the sandbox enforced keeps its plain status and reason; a detected block gets the diagnosis.
        const enforced = EXIT_BLOCKS[exit.reason] !== undefined;
        this.decision = {
          kind: "finish",
          status: enforced ? outcome.status : plan.finalStatus,
          exitCode: exit.exitCode,
          signal: exit.signal,
          reason: enforced ? outcome.reason : plan.diagnosis,
          usage: exit.usage,
        };
        return;
      }
    }
  }

  private failed(err: unknown): void {
    if (err instanceof LeaseLostError) {
      this.stop();
      this.d.onLeaseLost();
      return;
    }
    this.d.log(`task ${this.d.task.id}: recovery: ${err instanceof Error ? err.message : err}`);
  }
}

const TMPFS_MAGIC = 0x01021994;

/** Use of the tmpfs a workspace is on (one statfs), or null when it is not on a tmpfs. */
async function workspaceUse(dir: string): Promise<{ inodes: number; bytes: number } | null> {
  const s = await statfs(dir).catch(() => null);
  if (!s || s.type !== TMPFS_MAGIC) return null;
  return { inodes: s.files - s.ffree, bytes: (s.blocks - s.bfree) * s.bsize };
}

function countWaits(waits: ThreadWait[], stdinClosed: boolean) {
  const c = { stdin: 0, output: 0, lock: 0, child: 0, other: 0, running: 0 };
  for (const w of waits) c[w.kind === "stdin" && stdinClosed ? "other" : w.kind]++;
  return c;
}
