// Turns a task's output lines into `diagnostic`, `test_results` and `progress_update` events while
// the task runs (parsers: functions/_shared/diagnostics).
//
// Latency: a line is parsed as soon as its newline arrives and its events are written at once
// after a quiet spell, else at most once per `flushIntervalMs` (the output batcher's policy), so
// a compiler's error line reaches subscribers within a database round trip. Multi-line messages
// (a Rust header before its location, a JS error before its stack) are held at most `holdMs` of
// quiet. Progress is throttled to one event per `progressIntervalMs` (the latest wins; a stage
// change or 100 % goes at once) and carries an ETA from the history of the same step.
import type { OutputStream } from "../../functions/_shared/states.ts";
import { createLineScanner, estimateEtaMs, type Finding, type LineScanner, type ToolProgress } from "../../functions/_shared/diagnostics/index.ts";
import { taskEvent, type TaskEvent } from "../../functions/_shared/events.ts";
import { LeaseLostError } from "../db.ts";

export type { TaskEvent };

/** What this stage writes: findings as they are, progress before the worker adds its ETA. */
type Pending = Exclude<Finding, { type: "progress_update" }> | { type: "progress_update"; progress: ToolProgress };

export interface LineEventsOptions {
  /** The task's command line: names the C compiler (clang or gcc) in diagnostics. */
  command: string;
  /** Writes a batch of events in order (diagnostic, test_results, progress_update); throws LeaseLostError when the lease is gone. */
  append: (events: TaskEvent[]) => Promise<unknown>;
  /** Median duration of earlier runs of the same step, asked once when progress first appears. */
  estimateDurationMs: () => Promise<number | null>;
  /** A line for the task's `system` output (e.g. that the diagnostics cap was reached). */
  notice: (text: string) => void;
  log: (line: string) => void;
  /** Minimum gap between two event writes while output keeps coming. @default 20 (the output flush interval) */
  flushIntervalMs?: number;
  /** Quiet time after which held multi-line messages are reported without their rest. @default 30 */
  holdMs?: number;
  /** Minimum gap between two progress_update events. @default 250 */
  progressIntervalMs?: number;
  /** Diagnostics published per task; later ones are dropped (a notice says so). @default 500 */
  maxDiagnostics?: number;
}

export const LINE_EVENTS_DEFAULTS = { flushIntervalMs: 20, holdMs: 30, progressIntervalMs: 250, maxDiagnostics: 500 } as const;

export class LineEvents {
  private readonly opts: Required<LineEventsOptions>;
  private readonly scanners = new Map<OutputStream, { scanner: LineScanner; decoder: TextDecoder }>();
  private readonly startedAt = performance.now();
  private pending: Pending[] = [];
  private inFlight: Promise<void> | undefined;
  private flushTimer: ReturnType<typeof setTimeout> | undefined;
  private holdTimer: ReturnType<typeof setTimeout> | undefined;
  private progressTimer: ReturnType<typeof setTimeout> | undefined;
  private lastFlushAt = 0;
  private lastProgress: { at: number; stage: string } | undefined;
  private throttledProgress: ToolProgress | undefined;
  private history: Promise<number | null> | undefined;
  private diagnostics = 0;
  private stopped = false;

  constructor(options: LineEventsOptions) {
    this.opts = { ...LINE_EVENTS_DEFAULTS, ...options };
  }

  push(stream: OutputStream, bytes: Uint8Array): void {
    if (this.stopped) return;
    let s = this.scanners.get(stream);
    if (!s) this.scanners.set(stream, (s = { scanner: createLineScanner({ command: this.opts.command }), decoder: new TextDecoder() }));
    this.take(s.scanner.push(s.decoder.decode(bytes, { stream: true })));
    if (this.holdTimer) this.holdTimer.refresh();
    else this.holdTimer = setTimeout(() => this.take([...this.scanners.values()].flatMap((x) => x.scanner.flush())), this.opts.holdMs);
  }

  /** Reports what is left (unterminated last lines, held messages, throttled progress) and writes it. */
  async close(): Promise<void> {
    clearTimeout(this.holdTimer);
    clearTimeout(this.progressTimer);
    for (const { scanner, decoder } of this.scanners.values()) this.take([...scanner.push(decoder.decode()), ...scanner.end()]);
    if (this.throttledProgress) this.queue({ type: "progress_update", progress: this.throttledProgress });
    this.throttledProgress = undefined;
    clearTimeout(this.flushTimer);
    this.flushTimer = undefined;
    while (this.inFlight || (this.pending.length && !this.stopped)) {
      if (this.inFlight) await this.inFlight;
      else this.flushNow();
    }
  }

  private take(findings: Finding[]): void {
    for (const f of findings) {
      if (f.type === "progress_update") this.progress(f.data);
      else if (f.type === "diagnostic" && ++this.diagnostics > this.opts.maxDiagnostics) {
        if (this.diagnostics === this.opts.maxDiagnostics + 1) this.opts.notice(`diagnostics: more than ${this.opts.maxDiagnostics}; later ones are in the output only`);
      } else this.queue(f);
    }
  }

  private progress(p: ToolProgress): void {
    const now = performance.now();
    const due = !this.lastProgress || now - this.lastProgress.at >= this.opts.progressIntervalMs || p.stage !== this.lastProgress.stage || p.percentage === 100;
    if (!due) {
      this.throttledProgress = p;
      this.progressTimer ??= setTimeout(
        () => {
          this.progressTimer = undefined;
          const latest = this.throttledProgress;
          this.throttledProgress = undefined;
          if (latest) this.progress(latest);
        },
        this.lastProgress!.at + this.opts.progressIntervalMs - now,
      );
      return;
    }
    this.throttledProgress = undefined;
    this.lastProgress = { at: now, stage: p.stage };
    this.history ??= this.opts.estimateDurationMs().catch((err) => {
      this.opts.log(`estimating duration: ${err}`);
      return null;
    });
    this.queue({ type: "progress_update", progress: p });
  }

  private queue(e: Pending): void {
    if (this.stopped) return;
    this.pending.push(e);
    this.schedule();
  }

  private schedule(): void {
    if (this.inFlight || this.flushTimer || !this.pending.length) return;
    const wait = this.lastFlushAt + this.opts.flushIntervalMs - performance.now();
    if (wait <= 0) this.flushNow();
    else this.flushTimer = setTimeout(() => ((this.flushTimer = undefined), this.flushNow()), wait);
  }

  private flushNow(): void {
    if (this.inFlight || !this.pending.length || this.stopped) return;
    const batch = this.pending;
    this.pending = [];
    this.lastFlushAt = performance.now();
    this.inFlight = this.write(batch)
      .catch((err) => {
        if (err instanceof LeaseLostError)
          this.stopped = true; // the output batcher stops the task
        else this.opts.log(`events: ${err instanceof Error ? err.message : err}; ${batch.length} dropped`);
      })
      .finally(() => {
        this.inFlight = undefined;
        this.schedule();
      });
  }

  private async write(batch: Pending[]): Promise<void> {
    // ETA is computed when the event is written, so it reflects the time spent so far.
    const historyMs = batch.some((e) => "progress" in e) ? await this.history! : null;
    const elapsed = performance.now() - this.startedAt;
    await this.opts.append(
      batch.map((e) => (e.type === "progress_update" ? taskEvent("progress_update", { ...e.progress, etaMs: estimateEtaMs(elapsed, e.progress.percentage, historyMs) }) : e)),
    );
  }
}
