// Every SQLSTATE our SQL functions raise (`raise ... using errcode = 'CGnnn'`) and the Postgres
// codes callers meet, with what each means to the API (HTTP status, error code) and to a worker.
// One table: the edge function maps errors with it (http.ts) and the worker branches on it
// (worker/db.ts), so a new code is added here once and both sides know it.

export interface SqlState {
  /** HTTP status the API answers with when a request meets this error. */
  http: number;
  /** The stable error code in the API's body. */
  code: string;
  /** What it means, for readers of this table. */
  meaning: string;
  /**
   * The error's DETAIL is a JSON object the body carries beside code and message (the limit it
   * names); its `retryAfterSeconds`, if any, becomes the Retry-After header.
   */
  detailJson?: true;
}

export const SQLSTATES = {
  CG401: { http: 403, code: "forbidden", meaning: "the caller's role may not do this (anon, or a user for another owner's object)" },
  CG404: { http: 404, code: "not_found", meaning: "no such object visible to the caller" },
  CG409: { http: 409, code: "conflict", meaning: "the state changed first: for a worker, the lease (task, attempt, worker) is no longer held" },
  CG413: { http: 413, code: "too_large", meaning: "a size limit (files, workspace) would be exceeded; nothing was written" },
  CG429: { http: 429, code: "rate_limited", meaning: "a tenant's requests per second for a route class (token bucket) were used up; nothing was written", detailJson: true },
  CGQ29: { http: 429, code: "queued_quota_exceeded", meaning: "the request would take the tenant past its queued-task quota; nothing was written", detailJson: true },
  CGQ13: { http: 413, code: "storage_quota_exceeded", meaning: "the request would take the tenant past its stored-bytes quota; nothing was written", detailJson: true },
  CGS29: {
    http: 429,
    code: "sandbox_ops_busy",
    meaning: "a live sandbox already has cogo.max_sandbox_ops() file operations in flight; nothing was written",
    detailJson: true,
  },
  CG422: { http: 422, code: "unprocessable", meaning: "valid input the state cannot take (e.g. a recovery re-queue with no attempts left)" },
  "42501": { http: 403, code: "forbidden", meaning: "insufficient_privilege: a role without EXECUTE, or a row policy" },
  "22023": { http: 400, code: "invalid_parameter", meaning: "invalid_parameter_value raised by a function's own checks" },
  "23514": { http: 400, code: "check_violation", meaning: "a CHECK constraint refused the row" },
} as const satisfies Record<string, SqlState>;

export type SqlStateCode = keyof typeof SQLSTATES;

/** The SQLSTATE of a thrown value (postgres.js and supabase-js both use `code`), or undefined. */
export function sqlStateOf(err: unknown): string | undefined {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === "string" ? code : undefined;
}

/** Whether `err` carries the given SQLSTATE. */
export function hasSqlState(err: unknown, code: SqlStateCode): boolean {
  return sqlStateOf(err) === code;
}

/** The table's entry for `err`, if its code is one we know. */
export function sqlStateEntry(err: unknown): SqlState | undefined {
  const code = sqlStateOf(err);
  return code !== undefined && Object.hasOwn(SQLSTATES, code) ? SQLSTATES[code as SqlStateCode] : undefined;
}

/**
 * A lost or refused database connection (a restart, a killed backend), not a failed statement:
 * postgres.js's connection codes, socket errors, and the admin_shutdown / crash_shutdown /
 * cannot_connect_now / connection_failure / connection_does_not_exist SQLSTATEs.
 */
export const TRANSIENT_CODES: ReadonlySet<string> = new Set([
  "CONNECTION_CLOSED",
  "CONNECTION_ENDED",
  "CONNECTION_DESTROYED",
  "ECONNREFUSED",
  "ECONNRESET",
  "57P01",
  "57P02",
  "57P03",
  "08006",
  "08003",
]);
