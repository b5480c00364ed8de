// A running task seen from the client: live output over Realtime, with every gap (late join,
// reconnect, a dropped message) filled from the output endpoint, so callbacks get each seq exactly
// once and in order.
import type { RealtimeChannel, SupabaseClient } from "@supabase/supabase-js";
import type { Diagnostic, ProgressUpdate, TestResults } from "../functions/_shared/diagnostics/index.ts";
import { parseTaskEventMessage, type RawTaskEventMessage, type TaskEventMessage } from "../functions/_shared/events.ts";
import type { OutputChunk, OutputMessage } from "../functions/_shared/schemas.ts";
import { isFinal, type TaskStatus } from "../functions/_shared/states.ts";
import type { TaskView } from "../functions/_shared/views.ts";
import { call } from "./api.ts";
import { TaskFailedError } from "./errors.ts";

export interface TaskCallbacks {
  /** Each stdout chunk, in order, once. */
  onStdout?: (data: string, chunk: OutputChunk) => void;
  /** Each stderr chunk, in order, once. */
  onStderr?: (data: string, chunk: OutputChunk) => void;
  /** Every chunk of every stream (stdout, stderr, system), in seq order, once. */
  onOutput?: (chunk: OutputChunk) => void;
  /**
   * Task events (task_status, progress_update, block_detected, …), in order, once, typed: narrow
   * on `event.type` to read `event.data`. An event this SDK cannot read (a newer server's type)
   * arrives as `{ type: "unknown", rawType, data, error }`.
   */
  onEvent?: (event: TaskEventMessage) => void;
  /** Each `diagnostic` event's data (a compiler error, a lint warning, …), in order, once. */
  onDiagnostic?: (diagnostic: Diagnostic) => void;
  /** Each `test_results` event's data. */
  onTestResults?: (results: TestResults) => void;
  /** Each `progress_update` event's data. */
  onProgress?: (progress: ProgressUpdate) => void;
}

export interface HandleOptions {
  /** Keep stdout/stderr text in the result. @default true */
  collectOutput?: boolean;
  /** Check the task over HTTP this often even when Realtime is quiet (covers lost messages). @default 3000 */
  pollIntervalMs?: number;
}

export interface TaskResult {
  taskId: string;
  status: TaskStatus;
  exitCode: number | null;
  signal: string | null;
  reason: string | null;
  usage: Record<string, unknown> | null;
  /** All stdout text (when collectOutput). */
  stdout: string;
  stderr: string;
  task: TaskView;
}

const PAGE = 5000;

interface OutputPage {
  chunks: OutputChunk[];
  next: number;
  complete: boolean;
  status: TaskStatus;
  /** Set when retention deleted the task's output (the task view's `purgedAt` too). */
  purged: { at: string; message: string } | null;
}

export class TaskHandle {
  readonly topic: string;
  private nextSeq = 1;
  private nextEventSeq = 1;
  private readonly early = new Map<number, OutputChunk>();
  private readonly earlyEvents = new Map<number, TaskEventMessage>();
  private channel: RealtimeChannel | undefined;
  private timer: ReturnType<typeof setInterval> | undefined;
  private syncing: Promise<void> | undefined;
  private syncAgain = false;
  private stdout = "";
  private stderr = "";
  private finished = false;
  private settle!: { resolve: (r: TaskResult) => void; reject: (e: unknown) => void };
  private readonly done = new Promise<TaskResult>((resolve, reject) => (this.settle = { resolve, reject }));

  constructor(
    private readonly supabase: SupabaseClient,
    readonly taskId: string,
    private readonly callbacks: TaskCallbacks = {},
    private readonly options: HandleOptions = {},
  ) {
    this.topic = `task:${taskId}`;
    void this.done.catch(() => {});
  }

  /** Subscribes to the task's private topic and catches up from the database. */
  async start(): Promise<this> {
    // A fresh client sends its first join before its accessToken callback resolves, and a
    // private join on the bare apikey is refused; resolve the token first.
    await this.supabase.realtime.setAuth();
    this.channel = this.supabase
      .channel(this.topic, { config: { private: true } })
      .on("broadcast", { event: "realtime_output" }, ({ payload }) => this.onLiveOutput(payload as OutputMessage))
      .on("broadcast", { event: "*" }, ({ event, payload }) => {
        if (event !== "realtime_output") this.onLiveEvent(payload as RawTaskEventMessage);
      })
      // Caught up once joined (any status: SUBSCRIBED, or an error the poll then covers), not
      // before as well: two more requests right after the submit compete with the worker for the
      // same cores on the way to the first byte, and the join is what makes the catch-up complete.
      .subscribe(() => this.sync());
    this.timer = setInterval(() => this.sync(), this.options.pollIntervalMs ?? 3000);
    return this;
  }

  /** Resolves when the task has ended and all its output has been delivered. */
  async result(opts: { throwOnFailure?: boolean } = {}): Promise<TaskResult> {
    const r = await this.done;
    if (opts.throwOnFailure && r.status !== "succeeded") throw new TaskFailedError(r);
    return r;
  }

  /** Sends stdin (the task must have been started with `stdin: "pipe"`). */
  async write(data: string): Promise<void> {
    await call(this.supabase, "POST", `/tasks/${this.taskId}/stdin`, { data });
  }

  async closeStdin(): Promise<void> {
    await call(this.supabase, "POST", `/tasks/${this.taskId}/stdin`, { eof: true });
  }

  /** Cancels the task: a queued one at once, a running one is killed within a second. */
  async cancel(): Promise<TaskView> {
    return await call<TaskView>(this.supabase, "DELETE", `/tasks/${this.taskId}`);
  }

  /** The stored output from `fromSeq` on, read from the database (not Realtime). */
  async replay(fromSeq = 1): Promise<OutputChunk[]> {
    const out: OutputChunk[] = [];
    let after = fromSeq - 1;
    for (;;) {
      const page = await this.page(after);
      out.push(...page.chunks);
      if (page.chunks.length < PAGE) return out;
      after = page.next;
    }
  }

  /** Stops listening without waiting for the task. */
  async close(): Promise<void> {
    clearInterval(this.timer);
    if (this.channel) await this.supabase.removeChannel(this.channel);
    this.channel = undefined;
  }

  private page(after: number): Promise<OutputPage> {
    return call<OutputPage>(this.supabase, "GET", `/tasks/${this.taskId}/output?after=${after}&limit=${PAGE}`);
  }

  private deliver(chunk: OutputChunk): void {
    if (chunk.sequence !== this.nextSeq) return;
    this.nextSeq++;
    if (chunk.stream === "stdout") {
      if (this.options.collectOutput !== false) this.stdout += chunk.data;
      this.callbacks.onStdout?.(chunk.data, chunk);
    } else if (chunk.stream === "stderr") {
      if (this.options.collectOutput !== false) this.stderr += chunk.data;
      this.callbacks.onStderr?.(chunk.data, chunk);
    }
    this.callbacks.onOutput?.(chunk);
  }

  private accept(chunk: OutputChunk): void {
    if (chunk.sequence < this.nextSeq) return;
    if (chunk.sequence > this.nextSeq) {
      this.early.set(chunk.sequence, chunk);
      return;
    }
    this.deliver(chunk);
    for (let next = this.early.get(this.nextSeq); next; next = this.early.get(this.nextSeq)) {
      this.early.delete(next.sequence);
      this.deliver(next);
    }
  }

  private onLiveOutput(msg: OutputMessage): void {
    if (this.finished) return;
    for (const c of msg.chunks) this.accept(c);
    if (this.early.size) this.sync(); // a gap: fetch what is missing
  }

  private acceptEvent(e: TaskEventMessage): void {
    if (e.seq < this.nextEventSeq) return;
    if (e.seq > this.nextEventSeq) {
      this.earlyEvents.set(e.seq, e);
      return;
    }
    for (let next: TaskEventMessage | undefined = e; next; next = this.earlyEvents.get(this.nextEventSeq)) {
      this.earlyEvents.delete(next.seq);
      this.nextEventSeq++;
      this.callbacks.onEvent?.(next);
      if (next.type === "diagnostic") this.callbacks.onDiagnostic?.(next.data);
      else if (next.type === "test_results") this.callbacks.onTestResults?.(next.data);
      else if (next.type === "progress_update") this.callbacks.onProgress?.(next.data);
    }
  }

  private onLiveEvent(raw: RawTaskEventMessage): void {
    if (this.finished || typeof raw?.seq !== "number") return;
    const e = parseTaskEventMessage(raw);
    this.acceptEvent(e);
    if (this.earlyEvents.size || (e.type === "task_status" && isFinal(e.data.status))) this.sync();
  }

  /** Catches up output, events and status over HTTP; finishes when the task is final and drained. */
  private sync(): void {
    if (this.finished) return;
    if (this.syncing) {
      this.syncAgain = true;
      return;
    }
    this.syncing = (async () => {
      do {
        this.syncAgain = false;
        let complete = false;
        for (;;) {
          const page = await this.page(this.nextSeq - 1);
          for (const c of page.chunks) this.accept(c);
          complete = page.complete;
          if (page.chunks.length < PAGE) break;
        }
        const ev = await call<{ events: RawTaskEventMessage[] }>(this.supabase, "GET", `/tasks/${this.taskId}/events?after=${this.nextEventSeq - 1}&limit=${PAGE}`);
        for (const e of ev.events) this.acceptEvent(parseTaskEventMessage(e));
        if (complete) {
          const task = await call<TaskView>(this.supabase, "GET", `/tasks/${this.taskId}`);
          await this.finish(task);
          return;
        }
      } while (this.syncAgain);
    })()
      .catch((err) => {
        // Transient (network, restart): the next poll or Realtime message tries again.
        if (err?.status === 404 || err?.status === 403) void this.fail(err);
      })
      .finally(() => {
        this.syncing = undefined;
        if (this.syncAgain) this.sync();
      });
  }

  private async finish(task: TaskView): Promise<void> {
    if (this.finished) return;
    this.finished = true;
    await this.close();
    this.settle.resolve({
      taskId: task.id,
      status: task.status,
      exitCode: task.exitCode,
      signal: task.signal,
      reason: task.reason,
      usage: task.usage,
      stdout: this.stdout,
      stderr: this.stderr,
      task,
    });
  }

  private async fail(err: unknown): Promise<void> {
    if (this.finished) return;
    this.finished = true;
    await this.close();
    this.settle.reject(err);
  }
}
