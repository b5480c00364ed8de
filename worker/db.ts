// The worker's one database module: how a call is fenced by its lease, which failures may be
// retried, and the typed errors the rest of the worker branches on. Every SQL call a worker makes
// about a task goes through `fenced()` here (worker/queue.ts, worker/blocks/queries.ts,
// worker/plan-workspace.ts, worker/analysis/run.ts); SQLSTATEs come from the table the edge
// function maps to HTTP (functions/_shared/sqlstate.ts).
import { CogoError } from "../functions/_shared/errors.ts";
import { hasSqlState, sqlStateOf, TRANSIENT_CODES, type SqlStateCode } from "../functions/_shared/sqlstate.ts";

/** The attempt a worker holds: what every fenced call names. */
export interface Lease {
  taskId: string;
  attempt: number;
  workerId: string;
}

/** A fenced call found the lease gone (SQLSTATE CG409): the task is no longer this attempt's. */
export class LeaseLostError extends CogoError {}

/** A lost or refused database connection (a restart, a killed backend), not a failed statement. */
export function isTransient(err: unknown): boolean {
  return TRANSIENT_CODES.has(sqlStateOf(err) ?? "");
}

export { hasSqlState, type SqlStateCode };

const RETRY_FOR_MS = 10_000;

/** Retries a call that is safe to repeat while the database connection comes back. */
export async function retrying<T>(fn: () => Promise<T>, forMs = RETRY_FOR_MS): Promise<T> {
  const deadline = Date.now() + forMs;
  for (let delay = 50; ; delay = Math.min(delay * 2, 1000)) {
    try {
      return await fn();
    } catch (err) {
      if (!isTransient(err) || Date.now() > deadline) throw err;
      await new Promise((r) => setTimeout(r, delay));
    }
  }
}

export interface FenceOptions {
  /**
   * Repeat the call while the connection comes back. Only for idempotent calls: an append whose
   * reply was lost may have been written. @default true
   */
  retry?: boolean;
}

/** Runs a lease-fenced SQL call; CG409 becomes LeaseLostError. */
export function fenced<T>(call: () => Promise<T>, options: FenceOptions = {}): Promise<T> {
  return (options.retry === false ? call() : retrying(call)).catch((err: unknown) => {
    if (hasSqlState(err, "CG409")) throw new LeaseLostError("lease_lost", (err as Error).message || "lease lost");
    throw err;
  });
}
