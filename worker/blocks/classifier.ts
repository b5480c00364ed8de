// Decides from successive samples whether a task is blocked, and why. No I/O: the monitor feeds
// it observations, tests feed it synthetic ones. Several signals must agree before a block is
// called: a busy CPU alone is not a loop (output, I/O or new processes mean progress), a quiet
// process is only "waiting for input" when its threads sit in a read of our stdin pipe.
// Windows follow the evidence: a read of stdin after a prompt, or every thread in an untimed lock
// wait, is unambiguous and called in seconds; a silent read, a silent loop or a silent pause is
// called after the long window, or after the one learned from the command's history (history.ts).
import type { BlockDetectionOptions, BlockReason } from "../../functions/_shared/recovery/options.ts";
import { looksLikePrompt } from "./prompt.ts";

export interface Observation {
  at: number;
  /** Cumulative task CPU ms. */
  cpuMs: number;
  /** Cumulative stdout + stderr bytes. */
  outputBytes: number;
  /** Bytes read + written by the task's processes since the previous observation (files, pipes). */
  ioDelta: number;
  /** A process appeared since the previous observation. */
  newProcess: boolean;
  /** Some task thread was runnable (state R) at the sample. */
  runnable: boolean;
  memoryBytes: number;
  tasks: number;
  oomKills: number;
  forkFailures: number;
  /**
   * When the last output arrived (same clock as `at`), and the output's last bytes (the supervisor's
   * tail buffer, not a copy): a prompt there shortens the stdin window.
   */
  lastOutputAt?: number | null;
  outputTail?: string;
  /** What the threads wait in: read in quiet intervals, every sample while the short windows need them (absent: unknown, the windows hold). */
  waits?: { stdin: number; output: number; lock: number; child: number; other: number; running: number };
}

export interface Limits {
  memoryBytes: number;
  processes: number;
  outputBytes: number;
}

export interface Detection {
  reason: Exclude<BlockReason, "timeout" | "worker_lost">;
  /** How long the condition held before it was called. */
  durationMs: number;
  /** What was seen, for the diagnosis (e.g. "CPU 98 % for 30.0 s, no output, no I/O"). */
  summary: string;
}

/** Below this share of a core an interval counts as idle. */
const IDLE_CPU = 0.05;
/**
 * A thread runnable (state R) at every sample of the window, using more than idle CPU, is a loop
 * starved by a busy machine: on 2 cores at load 6 a spinning process gets ~30 % of one.
 */
const STARVED_CPU = IDLE_CPU;

export class BlockClassifier {
  private prev: Observation | null = null;
  private busySince: number | null = null;
  private quietSince: number | null = null;
  /** Start of the interval that ended just before the quiet spell: the spell began somewhere in it. */
  private quietEarliest: number | null = null;
  private prevAt: number | null = null;
  /** Longest completed silent-busy and silent-idle stretches since the start (for the history). */
  private maxBusyMs = 0;
  private maxQuietMs = 0;
  private deadline: number | null = null;
  private stdinSince: number | null = null;
  private lockSince: number | null = null;
  private memorySince: number | null = null;
  private forkSince: number | null = null;
  private floodSince: number | null = null;
  private cpuPercent = 0;

  constructor(
    private readonly o: BlockDetectionOptions,
    private readonly limits: Limits,
  ) {}

  /** CPU of the last interval, % of one core. */
  get lastCpuPercent(): number {
    return this.cpuPercent;
  }

  /** Whether the last interval was quiet (the caller then reads thread waits for the next one). */
  get quiet(): boolean {
    return this.quietSince !== null;
  }

  /**
   * Whether an observation at `at` with these counters would be quiet so far (no output, idle
   * CPU): the caller then reads thread waits at once rather than one sample later.
   */
  quietSoFar(at: number, cpuMs: number, outputBytes: number): boolean {
    const p = this.prev;
    if (!p) return false;
    return outputBytes === p.outputBytes && Math.max(0, cpuMs - p.cpuMs) / Math.max(1, at - p.at) < IDLE_CPU;
  }

  /**
   * When a short window now pending (a read after a prompt, a lock cycle) runs out: the caller
   * samples then rather than at its next regular tick, so the call comes at the window, not up
   * to an interval after it.
   */
  get pendingDeadline(): number | null {
    return this.deadline;
  }

  /** The longest silent-busy and silent-idle stretches seen so far, the current ones included. */
  stretches(): { maxBusyMs: number; maxQuietMs: number } {
    const at = this.prev?.at ?? 0;
    return {
      maxBusyMs: Math.round(Math.max(this.maxBusyMs, this.busySince === null ? 0 : at - this.busySince)),
      maxQuietMs: Math.round(Math.max(this.maxQuietMs, this.quietSince === null ? 0 : at - this.quietSince)),
    };
  }

  /** Forget every window (after a recovery step that changes the situation, e.g. stdin fed). */
  reset(): void {
    this.busySince = this.quietSince = this.quietEarliest = this.stdinSince = this.lockSince = null;
    this.memorySince = this.forkSince = this.floodSince = null;
    this.prev = null;
    this.prevAt = null;
    this.deadline = null;
  }

  observe(ob: Observation): Detection | null {
    const prev = this.prev;
    const prevAt = this.prevAt;
    this.deadline = null;
    this.prev = ob;
    this.prevAt = prev?.at ?? null;
    if (!prev) return null;
    const dt = Math.max(1, ob.at - prev.at);
    const cpuShare = Math.max(0, ob.cpuMs - prev.cpuMs) / dt;
    this.cpuPercent = Math.round(cpuShare * 100);
    const output = ob.outputBytes - prev.outputBytes;
    const progress = output > 0 || ob.ioDelta > 0 || ob.newProcess;
    const o = this.o;
    const since = (t: number | null, cond: boolean) => (cond ? (t ?? prev.at) : null);
    const held = (t: number | null) => (t === null ? 0 : ob.at - t);

    // Memory, processes, output: hard resources, checked every interval.
    // An OOM kill alone is not a block: a task that goes on (a test runner reporting a killed
    // test) may finish; one that dies of it is reported from its exit.
    const oom = ob.oomKills > 0 ? `, ${ob.oomKills} process(es) OOM-killed` : "";
    this.memorySince = since(this.memorySince, ob.memoryBytes >= (o.memoryPercent / 100) * this.limits.memoryBytes);
    if (this.memorySince !== null && held(this.memorySince) >= o.memoryMs) {
      return {
        reason: "memory_exhausted",
        durationMs: held(this.memorySince),
        summary: `${mib(ob.memoryBytes)} of ${mib(this.limits.memoryBytes)} in use for ${secs(held(this.memorySince))}${oom}`,
      };
    }
    const forkRefused = ob.forkFailures > prev.forkFailures;
    this.forkSince = since(this.forkSince, forkRefused || ob.tasks >= (o.processPercent / 100) * this.limits.processes);
    if (this.forkSince !== null && held(this.forkSince) >= o.forkBombMs) {
      return {
        reason: "fork_bomb",
        durationMs: held(this.forkSince),
        summary: `${ob.tasks} processes/threads of ${this.limits.processes} allowed${ob.forkFailures ? `, ${ob.forkFailures} forks refused` : ""}`,
      };
    }
    if (o.outputPercent < 100 && ob.outputBytes >= (o.outputPercent / 100) * this.limits.outputBytes) {
      return { reason: "output_flood", durationMs: 0, summary: `${mib(ob.outputBytes)} of output, the limit is ${mib(this.limits.outputBytes)}` };
    }
    this.floodSince = since(this.floodSince, (output * 1000) / dt >= o.outputBytesPerSecond);
    if (this.floodSince !== null && held(this.floodSince) >= o.outputFloodMs) {
      return { reason: "output_flood", durationMs: held(this.floodSince), summary: `over ${mib(o.outputBytesPerSecond)}/s of output for ${secs(held(this.floodSince))}` };
    }

    // Busy without progress: a loop.
    const busy = !progress && (cpuShare >= o.busyCpuPercent / 100 || (ob.runnable && cpuShare >= STARVED_CPU));
    if (!busy && this.busySince !== null) this.maxBusyMs = Math.max(this.maxBusyMs, prev.at - this.busySince);
    this.busySince = since(this.busySince, busy);
    if (this.busySince !== null && held(this.busySince) >= o.infiniteLoopMs) {
      return {
        reason: "infinite_loop",
        durationMs: held(this.busySince),
        summary: `CPU ${this.cpuPercent} % for ${secs(held(this.busySince))} with no output, no I/O and no new process`,
      };
    }

    // Quiet: no CPU to speak of, no progress. Why depends on what the threads wait in. A thread
    // blocked writing its output waits for the worker to read it: that is not the task's stall.
    const quiet = !progress && cpuShare < IDLE_CPU && !(ob.waits && ob.waits.output > 0);
    if (!quiet && this.quietSince !== null) this.maxQuietMs = Math.max(this.maxQuietMs, prev.at - this.quietSince);
    if (quiet && this.quietSince === null) this.quietEarliest = prevAt ?? prev.at;
    this.quietSince = since(this.quietSince, quiet);
    const w = quiet ? ob.waits : undefined;
    if (!quiet) {
      this.stdinSince = this.lockSince = null;
    } else if (w) {
      // A reader of our stdin with nothing running is waiting for input, whatever other threads
      // (an event loop's helpers) do; a deadlock needs every thread in a lock or waiting for a child.
      this.stdinSince = since(this.stdinSince, w.running === 0 && w.stdin > 0);
      this.lockSince = since(this.lockSince, w.running === 0 && w.other === 0 && w.stdin === 0 && w.lock > 0);
    }
    if (this.stdinSince !== null) {
      // A prompt then a read of stdin: the program asked and waits. Counted from the prompt (it
      // came at the end of the last busy interval: the spell began no earlier than that).
      if (ob.outputTail !== undefined && looksLikePrompt(ob.outputTail)) {
        const from = Math.max(ob.lastOutputAt ?? this.stdinSince, this.quietEarliest ?? this.stdinSince);
        this.deadline = from + Math.min(o.promptMs, o.waitingForInputMs);
        if (ob.at >= this.deadline) {
          return {
            reason: "waiting_for_input",
            durationMs: ob.at - from,
            summary: `reading stdin after the prompt ${JSON.stringify(lastLine(ob.outputTail))} with no output for ${secs(ob.at - from)}`,
          };
        }
      }
      if (held(this.stdinSince) >= o.waitingForInputMs) {
        return { reason: "waiting_for_input", durationMs: held(this.stdinSince), summary: `reading stdin with no output for ${secs(held(this.stdinSince))}` };
      }
    }
    // Every thread in an untimed lock wait (the sampler counts timed ones as other waits) cannot
    // wake by itself: counted from the start of the quiet spell (no earlier than the last output).
    const lockFrom = this.lockSince === null ? 0 : Math.min(this.lockSince, Math.max(this.quietEarliest ?? this.lockSince, ob.lastOutputAt ?? -Infinity));
    const lockHeld = this.lockSince === null ? 0 : ob.at - lockFrom;
    if (this.lockSince !== null) this.deadline = Math.min(this.deadline ?? Infinity, ob.at - lockHeld + o.deadlockMs);
    if (this.lockSince !== null && lockHeld >= o.deadlockMs) {
      return { reason: "deadlock", durationMs: lockHeld, summary: `threads waiting on locks, none running, for ${secs(lockHeld)}` };
    }
    // Quiet with a more specific cause pending: let that one's window decide.
    if (this.quietSince !== null && this.stdinSince === null && this.lockSince === null && held(this.quietSince) >= o.idleStallMs) {
      return { reason: "idle_stall", durationMs: held(this.quietSince), summary: `no CPU, output, I/O or new process for ${secs(held(this.quietSince))}` };
    }
    return null;
  }
}

/** The output's last non-empty line, short, for a summary. */
function lastLine(tail: string): string {
  const lines = tail.split("\n").filter((l) => l.trim() !== "");
  const line = lines.at(-1) ?? "";
  return line.length > 80 ? `…${line.slice(-80)}` : line;
}

const mib = (b: number) => `${(b / 1024 / 1024).toFixed(1)} MiB`;
const secs = (ms: number) => `${(ms / 1000).toFixed(1)} s`;
