// One claimed task from start to its final status: sandbox, live output, stdin, cancel. How the
// attempt ends is decided here or by the block supervisor, and applied by its Attempt alone.
import type { TaskRow } from "../functions/_shared/views.ts";
import { describeSave, restorePlanWorkspace, savePlanWorkspace, type RestoredWorkspace } from "./plan-workspace.ts";
import type { RecoverRequest } from "../functions/_shared/recovery/options.ts";
import { BlockSupervisor } from "./blocks/supervisor.ts";
import { Attempt, type Ending } from "./attempt.ts";
import { isTransient, LeaseLostError, type Lease } from "./db.ts";
import type { Queue } from "./queue.ts";
import { SANDBOX_DEFAULTS, SandboxBusy, startSandbox, type SandboxOptions, type SandboxProcess, type SandboxSpec } from "./sandbox/index.ts";
import { describeExit } from "./sandbox/exit-reason.ts";
import { LineEvents } from "./stream/line-events.ts";
import { OutputBatcher } from "./stream/output-batcher.ts";
import { storeArtifacts } from "./store-artifacts.ts";

export interface RunningTask {
  readonly lease: Lease;
  /** Stop the task: a user cancel, a lost lease, or worker shutdown. */
  stop(reason: "cancelled" | "lease_lost" | "shutdown"): void;
  /** New stdin rows are waiting in the database. */
  stdinReady(): void;
  /** Recover now (POST /tasks/:id/recover reached this worker). */
  recover(request: RecoverRequest): void;
  /** A terminal's new size (POST /tasks/:id/resize reached this worker); tasks without one ignore it. */
  resize?(cols: number, rows: number): void;
  readonly done: Promise<void>;
}

const LIMIT_NAMES: Record<string, string> = { wallTimeMs: "timeoutMs" };

/**
 * Limits this worker lowered to its maximum (a worker started with lower maxima than the API
 * allows), one line each for the task's output: a limit is never cut silently.
 */
export function loweredLimits(asked: Partial<Record<string, number>>, got: object): string[] {
  const notes: string[] = [];
  for (const [key, want] of Object.entries(asked)) {
    const have = (got as Record<string, unknown>)[key];
    if (typeof want === "number" && typeof have === "number" && have < want) {
      notes.push(`${LIMIT_NAMES[key] ?? `limits.${key}`} ${want} is above this worker's maximum; running with ${have}`);
    }
  }
  return notes;
}

/** How long a hand-back keeps trying while the database is away. */
const HAND_BACK_FOR_MS = 60_000;

/**
 * Starts the task's process. A plain task gets a fresh sandbox (startSandbox); a command of a
 * persistent sandbox enters the live one (worker/sandboxes/host.ts). Everything after the start
 * (output, stdin, cancel, block detection, the ending) is the same for both.
 */
export type Launch = (spec: SandboxSpec) => Promise<SandboxProcess>;

export function runTask(
  task: TaskRow,
  workerId: string,
  queue: Queue,
  sandboxOptions: SandboxOptions,
  flushIntervalMs: number,
  log: (l: string) => void,
  launch: Launch = (spec) => startSandbox(spec, sandboxOptions),
): RunningTask {
  const attempt = new Attempt(task, workerId, queue, log);
  const lease: Lease = attempt.lease;
  let sandbox: SandboxProcess | undefined;
  let stopReason: "cancelled" | "lease_lost" | "shutdown" | undefined;
  let stdinSeq = 0;
  /** A terminal's size asked for after the claim read the row, applied once the process runs. */
  let size: { cols: number; rows: number } | null = null;
  const resize = (cols: number, rows: number) => {
    size = { cols, rows };
    if (!sandbox) return;
    sandbox.resize(cols, rows).catch((err) => log(`task ${task.id}: resize: ${err instanceof Error ? err.message : err}`));
  };
  let stdinChain: Promise<void> = Promise.resolve();
  const max = { ...SANDBOX_DEFAULTS.maxLimits, ...sandboxOptions.maxLimits };
  const blocks = new BlockSupervisor({
    task,
    lease,
    queue,
    maxLimits: { wallTimeMs: max.wallTimeMs, memoryBytes: max.memoryBytes },
    log,
    onLeaseLost: () => {
      attempt.lost();
      stopReason ??= "lease_lost";
      kill();
    },
  });

  let nextSeq = 0; // set by start_task; output continues after earlier attempts' rows
  // start_task (claimed → running) runs while the sandbox starts, off the path to the first byte:
  // output waits for it (it says where this attempt's output goes on), and a start that fails
  // (a cancel or a lost lease in between) stops the process before anything of it is written.
  // A plan step starts once its workspace is restored, not before: "running" then means the files
  // it started from are taken, so an edit made from then on is never overwritten by its save.
  let started: Promise<void> | undefined;
  let opened!: (start: Promise<void>) => void;
  const gate = new Promise<Promise<void>>((resolve) => (opened = resolve));
  const start = (): Promise<void> => {
    if (!started) {
      started = attempt.start().then((seq) => void (nextSeq = seq + 1));
      started.catch(() => {});
      opened(started);
    }
    return started;
  };
  if (!task.planId) void start();
  const batcher = new OutputBatcher(async (chunks) => {
    try {
      await await gate;
      await queue.appendOutput(lease, nextSeq, chunks);
      nextSeq += chunks.length;
    } catch (err) {
      if (err instanceof LeaseLostError) {
        attempt.lost();
        stopReason ??= "lease_lost";
        kill();
      }
      throw err;
    }
  }, flushIntervalMs);
  const lineEvents = new LineEvents({
    command: task.command ?? task.argv!.join(" "),
    append: (events) => queue.appendEvents(lease, events),
    estimateDurationMs: () => queue.estimateDurationMs(task.id),
    notice: (text) => batcher.system(text),
    log: (l) => log(`task ${task.id}: ${l}`),
    flushIntervalMs,
  });

  const pumpStdin = () => {
    stdinChain = stdinChain
      .then(async () => {
        const stdin = sandbox?.stdin;
        if (!stdin || stdin.writableEnded) return;
        for (const row of await queue.stdinAfter(task.id, stdinSeq)) {
          stdinSeq = Number(row.seq);
          if (row.data) stdin.write(row.data);
          if (row.eof) {
            stdin.end();
            blocks.stdinEnded();
            return;
          }
        }
      })
      .catch((err) => log(`task ${task.id}: stdin: ${err}`));
  };

  const kill = () => {
    if (!sandbox || !stopReason) return;
    sandbox.kill(stopReason === "cancelled" ? "cancelled" : "killed");
  };

  const done = (async () => {
    try {
      if (task.attempt > 1) batcher.system(`attempt ${task.attempt} of ${task.maxAttempts} starting on worker ${workerId}`);
      // A plan's step starts from the plan's shared workspace (docs/plans.md).
      let restored: RestoredWorkspace | undefined;
      if (task.planId) {
        restored = await restorePlanWorkspace(queue.sql, lease);
        batcher.system(`workspace restored: ${restored.files.length} file(s), ${restored.bytes} bytes`);
      }
      const startedNow = start();
      const { onOutputLimit, ...limits } = task.limits;
      sandbox = await launch({
        command: task.command ?? task.argv!,
        files: [...(restored?.files ?? []), ...task.files.map((f) => ({ path: f.path, content: f.content, encoding: f.encoding, mode: f.executable ? 0o755 : 0o644 }))],
        env: task.env,
        limits: { ...limits, wallTimeMs: task.timeoutMs },
        stdin: task.stdinMode,
        network: task.network,
        onOutputLimit,
      });
      await startedNow;
      kill(); // a stop that arrived while the sandbox was starting
      // (set by a resize that arrived while the process started; TS cannot see the closure write)
      const asked = size as { cols: number; rows: number } | null;
      if (asked && task.pty && (asked.cols !== task.pty.cols || asked.rows !== task.pty.rows)) resize(asked.cols, asked.rows);
      for (const note of loweredLimits({ wallTimeMs: task.timeoutMs, ...limits }, sandbox.limits)) batcher.system(note);
      const outputBytes = sandbox.limits.outputBytes;
      void sandbox.outputTruncated.then(() =>
        batcher.system(
          onOutputLimit === "truncate"
            ? `output limit of ${outputBytes} bytes reached: further output is dropped, the task keeps running`
            : `output limit of ${outputBytes} bytes reached: further output is dropped and the task stopped`,
        ),
      );
      sandbox.stdout.on("data", (b: Buffer) => (batcher.push("stdout", b), lineEvents.push("stdout", b), blocks.output(b)));
      sandbox.stderr.on("data", (b: Buffer) => (batcher.push("stderr", b), lineEvents.push("stderr", b), blocks.output(b)));
      await blocks.attach(sandbox);
      sandbox.stdin?.on("error", () => {}); // the task may exit without reading its stdin
      if (task.stdinMode === "pipe") pumpStdin();
      const exit = await sandbox.exited;
      await stdinChain;
      let outcome = describeExit({ exit, limits: sandbox.limits, timeoutMs: task.timeoutMs });
      await lineEvents.close();
      if (stopReason === "shutdown" || stopReason === "lease_lost") blocks.abandon(exit);
      if (stopReason === "shutdown") {
        await batcher.close();
        await attempt.end({ kind: "release", reason: "worker shut down before the task finished; re-queued" });
        return;
      }
      if (stopReason === "lease_lost") {
        // Stopped because heartbeats went silent, the lease may still be ours: later heartbeats
        // would renew it forever for a task nobody runs, so hand it back (fenced: a no-op if lost).
        await attempt.end({ kind: "release", reason: "worker lost contact with the database; re-queued" }).catch(() => {});
        return;
      }
      if (restored && outcome.status === "succeeded") {
        const saved = await savePlanWorkspace(queue.sql, lease, sandbox.workspace, restored);
        batcher.system(describeSave(saved));
        if (saved.error) outcome = { status: "failed", reason: `workspace not saved: ${saved.error}` };
      }
      await batcher.close();
      if (task.artifactPatterns.length > 0) await storeArtifacts(queue, lease, sandbox.workspace, task.artifactPatterns, log);
      // A recovery under way, or an exit that is itself a block (timeout, memory, output), may
      // decide how the attempt ends instead of the exit.
      const decided = await blocks.settle(exit, outcome);
      const ending: Ending = decided ?? { kind: "finish", ...outcome, exitCode: exit.exitCode, signal: exit.signal, usage: exit.usage };
      await attempt.end(ending);
      if (!decided && outcome.status === "succeeded") await blocks.recordSuccess();
    } catch (err) {
      if (!started) {
        // Never started (a plan step whose restore failed): what output waits for never comes.
        const never = Promise.reject(err);
        never.catch(() => {});
        opened(never);
      }
      if (err instanceof LeaseLostError) {
        attempt.lost();
        stopReason = "lease_lost";
      }
      // Whatever failed, the sandbox goes first, and a recovery under way learns it is over.
      if (sandbox) {
        sandbox.kill("killed");
        blocks.abandon(await sandbox.exited);
      }
      if (err instanceof LeaseLostError) {
        log(`task ${task.id} attempt ${task.attempt}: ${err.message}; stopped it`);
        return;
      }
      if (isTransient(err)) {
        // The database, not the task, failed (e.g. a restart outlasting the retries): hand the
        // task back for another attempt rather than fail it.
        log(`task ${task.id}: database unreachable (${err instanceof Error ? err.message : err}); handing it back`);
        await attempt.end({ kind: "release", reason: "worker lost the database mid-task; re-queued", retryForMs: HAND_BACK_FOR_MS });
        return;
      }
      if (err instanceof SandboxBusy && task.attempt < task.maxAttempts) {
        // This machine is full, not the task at fault: another worker (or this one later) takes it.
        log(`task ${task.id}: ${err.message}; handing it back`);
        await attempt.end({ kind: "release", reason: `no free sandbox on worker ${workerId} (${err.message}); re-queued`, retryForMs: HAND_BACK_FOR_MS });
        return;
      }
      // Anything else (a bad spec the API let through, a sandbox that would not start, no free
      // sandbox on the last attempt) fails the task with the reason, rather than leaving it to
      // the lease rescuer.
      log(`task ${task.id}: ${err instanceof Error ? err.message : err}`);
      await batcher.close().catch(() => {});
      await attempt
        .end({ kind: "finish", status: "failed", exitCode: null, signal: null, reason: `could not run: ${err instanceof Error ? err.message : err}`, usage: {} })
        .catch((e) => log(`task ${task.id}: finishing failed: ${e}`));
    } finally {
      blocks.stop();
      await sandbox?.cleanup().catch((e) => log(`task ${task.id}: cleanup: ${e}`));
    }
  })();

  return {
    lease,
    stop(reason) {
      stopReason ??= reason;
      kill();
    },
    stdinReady: pumpStdin,
    recover: (request) => blocks.recover(request),
    ...(task.pty ? { resize } : {}),
    done,
  };
}
