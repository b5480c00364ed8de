// Node entry points (worker, npm start, bench, soak) survive postgres.js's two uncatchable faults
// (see functions/_shared/postgres-closed-socket.ts); any other uncaught error still ends the
// process as Node would. An unhandled rejection reaches "uncaughtException" too (Node >= 15).
import { isPostgresClosedSocketWrite, isPostgresTypeFetchFailure } from "../functions/_shared/postgres-closed-socket.ts";

export function ignorePostgresClosedSocketWrites(log: (line: string) => void = (l) => console.error(l)): void {
  process.on("uncaughtException", (err) => {
    if (isPostgresClosedSocketWrite(err)) return log("postgres.js wrote to a closed connection (porsager/postgres#1208); ignored, its queries are retried");
    if (isPostgresTypeFetchFailure(err))
      return log(`postgres.js's array-type query failed on a new connection (porsager/postgres#1192): ${err.message}; ignored, its queries are retried`);
    console.error(err);
    process.exit(1);
  });
}
