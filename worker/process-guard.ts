// Node entry points (worker, npm start, bench, soak) survive postgres.js's closed-socket write
// (see functions/_shared/postgres-closed-socket.ts); any other uncaught error still ends the
// process as Node would.
import { isPostgresClosedSocketWrite } from "../functions/_shared/postgres-closed-socket.ts";

export function ignorePostgresClosedSocketWrites(log: (line: string) => void = (l) => console.error(l)): void {
  process.on("uncaughtException", (err) => {
    if (isPostgresClosedSocketWrite(err)) return log("postgres.js wrote to a closed connection (porsager/postgres#1208); ignored, its queries are retried");
    console.error(err);
    process.exit(1);
  });
}
