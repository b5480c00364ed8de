// postgres.js 3.4.9 can write to a socket it has just closed when the server drops a connection
// (a Postgres restart, a killed backend): a TypeError thrown from a setImmediate, which no caller
// can catch and which ends the process (porsager/postgres#1154, #1208; the fix is not released).
// The queries of that connection were already rejected with CONNECTION_CLOSED, and ours retry,
// so each entry point ignores exactly this error. Found by tests/faults; drop once fixed upstream.

/** The error postgres.js throws when it writes to a connection it has closed. */
export function isPostgresClosedSocketWrite(err: unknown): boolean {
  return err instanceof TypeError && /\(reading 'write'\)|evaluating 'socket\.write'/.test(err.message) && /postgres[@\d.]*[\\/]src[\\/]connection\.js/.test(err.stack ?? "");
}
