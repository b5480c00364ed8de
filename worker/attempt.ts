// One attempt at one task, held by this worker: the only object in the worker that may start,
// finish, release or re-queue it. Whoever decides how an attempt ends (the task's run, its block
// supervisor, the analysis runner, worker shutdown) hands an `Ending` to `end()`, which applies
// the first one and refuses any later one, so two parts of the worker can never both end a task,
// and an attempt whose lease is gone writes nothing more.
import type { RecoverySucceeded } from "../functions/_shared/events.ts";
import type { FinalStatus } from "../functions/_shared/states.ts";
import type { RecoveryStep } from "../functions/_shared/recovery/planner.ts";
import type { TaskRow } from "../functions/_shared/views.ts";
import { hasSqlState, isTransient, LeaseLostError, type Lease } from "./db.ts";
import type { Queue } from "./queue.ts";

/** A final status with what the task's row records about it. */
export interface Finish {
  kind: "finish";
  status: FinalStatus;
  reason: string;
  exitCode: number | null;
  signal: string | null;
  usage: object;
  result?: object;
}

/** Back to the queue as the same attempt (shutdown, a full machine, a lost database). */
export interface Release {
  kind: "release";
  reason: string;
  /** Keep trying this long while the database is away (the lease rescuer takes over after). @default 0 */
  retryForMs?: number;
}

/** Back to the queue as a recovery step (retry, reassign, raise_limit, alternative_command). */
export interface Requeue {
  kind: "requeue";
  step: RecoveryStep & { exclude?: boolean; reason: string };
  /** The recovery_succeeded event the re-queue writes with it. */
  event: RecoverySucceeded;
  /** What ends the attempt instead when no attempt is left (SQLSTATE CG422). */
  otherwise: () => Promise<Ending>;
}

export type Ending = Finish | Release | Requeue;

/** How an attempt ended, as far as this worker knows. */
export type AttemptEnd = Ending["kind"] | "lease_lost";

export class Attempt {
  readonly lease: Lease;
  private ended: AttemptEnd | undefined;

  constructor(
    readonly task: TaskRow,
    workerId: string,
    private readonly queue: Queue,
    private readonly log: (line: string) => void,
  ) {
    this.lease = { taskId: task.id, attempt: task.attempt, workerId };
  }

  /** How it ended, or undefined while it is this worker's to end. */
  get endedAs(): AttemptEnd | undefined {
    return this.ended;
  }

  /** Marks the task running; returns its last output seq (earlier attempts' output stays). */
  start(): Promise<number> {
    return this.queue.start(this.lease);
  }

  /** A fenced write elsewhere found the lease gone: nothing may end this attempt any more. */
  lost(): void {
    this.ended ??= "lease_lost";
  }

  /**
   * Ends the attempt once. Returns false, writing nothing, when it already ended or its lease is
   * gone; a lost lease is logged, not thrown (the task is someone else's now).
   */
  async end(e: Ending): Promise<boolean> {
    if (this.ended) {
      if (this.ended !== "lease_lost") this.log(`task ${this.task.id} attempt ${this.task.attempt}: already ended (${this.ended}); ignored ${e.kind}`);
      return false;
    }
    this.ended = e.kind;
    try {
      switch (e.kind) {
        case "finish": {
          const { kind: _, ...r } = e;
          await this.queue.finish(this.lease, r);
          return true;
        }
        case "release":
          await this.release(e);
          return true;
        case "requeue":
          try {
            await this.queue.requeueForRecovery(this.lease, e.step, e.event);
            return true;
          } catch (err) {
            if (!hasSqlState(err, "CG422")) throw err;
            this.ended = undefined;
            return await this.end(await e.otherwise());
          }
      }
    } catch (err) {
      if (err instanceof LeaseLostError) {
        this.ended = "lease_lost";
        this.log(`task ${this.task.id} attempt ${this.task.attempt}: lease lost before it could ${e.kind}; nothing written`);
        return false;
      }
      // Not applied (the database failed): the caller may still end it another way.
      this.ended = undefined;
      throw err;
    }
  }

  private async release(e: Release): Promise<void> {
    const deadline = Date.now() + (e.retryForMs ?? 0);
    for (;;) {
      try {
        return void (await this.queue.release(this.lease, e.reason));
      } catch (err) {
        if (err instanceof LeaseLostError) throw err;
        if (isTransient(err) && Date.now() < deadline) {
          await new Promise((r) => setTimeout(r, 1000));
          continue;
        }
        if (!e.retryForMs) throw err;
        // Past its patience: the lease rescuer re-queues the task when the lease ends.
        return this.log(`task ${this.task.id}: could not hand it back (${err}); the lease rescuer will`);
      }
    }
  }
}
