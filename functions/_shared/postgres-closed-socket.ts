// Two faults of postgres.js 3.4.9 that no caller can catch; each entry point ignores exactly these.
//
// 1. It can write to a socket it has just closed when the server drops a connection
// (a Postgres restart, a killed backend): a TypeError thrown from a setImmediate, which no caller
// can catch and which ends the process (porsager/postgres#1154, #1208; the fix is not released).
// The queries of that connection were already rejected with CONNECTION_CLOSED, and ours retry,
// so each entry point ignores exactly this error. Found by tests/faults; drop once fixed upstream.
//
// 2. On every new connection it first fetches the array types (`fetch_types`), and drops that
//    query's promise: if the connection is reset or the query cancelled meanwhile, the error
//    surfaces as an unhandled rejection (porsager/postgres#1192, #1205, #1223; open). The user's
//    query fails or succeeds on its own terms and ours retry. Found by tests/faults (a blackholed
//    connection healed while a worker reconnected) under load.

/**
 * What identifies each fault. Plain patterns, so the heartbeat thread (an eval'd script with no
 * TypeScript loader) gets the same ones through workerData as their `source`.
 */
export const DRIVER_FAULT_PATTERNS = {
  closedWriteMessage: /\(reading 'write'\)|evaluating 'socket\.write'/,
  closedWriteStack: /postgres[@\d.]*[\\/]src[\\/]connection\.js/,
  typeFetchQuery: /from pg_catalog\.pg_type a[\s\S]*b\.typarray|b\.typarray[\s\S]*from pg_catalog\.pg_type a/,
};

/** The error postgres.js throws when it writes to a connection it has closed. */
export function isPostgresClosedSocketWrite(err: unknown): boolean {
  return err instanceof TypeError && DRIVER_FAULT_PATTERNS.closedWriteMessage.test(err.message) && DRIVER_FAULT_PATTERNS.closedWriteStack.test(err.stack ?? "");
}

/** The rejection of postgres.js's own array-type query on a new connection (fault 2 above). */
export function isPostgresTypeFetchFailure(err: unknown): boolean {
  const query = (err as { query?: unknown } | null)?.query;
  return typeof query === "string" && DRIVER_FAULT_PATTERNS.typeFetchQuery.test(query);
}

/** Either postgres.js fault above: ignored by the worker, `npm start`, benches, the function and tests. */
export const isPostgresDriverFault = (err: unknown): boolean => isPostgresClosedSocketWrite(err) || isPostgresTypeFetchFailure(err);
