// `npm run worker -- --concurrency N --kind basic --labels a,b`
import { existsSync } from "node:fs";
import { parseWorkerArgs, WORKER_USAGE } from "./config.ts";
import { ignorePostgresClosedSocketWrites } from "./process-guard.ts";
import { Worker } from "./worker.ts";

ignorePostgresClosedSocketWrites();

if (!process.env.SUPABASE_DB_URL && existsSync(".env.local")) process.loadEnvFile(".env.local");

let parsed: ReturnType<typeof parseWorkerArgs>;
try {
  parsed = parseWorkerArgs(process.argv.slice(2));
} catch (err) {
  console.error(`${err instanceof Error ? err.message : err}\n\n${WORKER_USAGE}`);
  process.exit(2);
}
if (parsed === "help") {
  console.log(WORKER_USAGE);
  process.exit(0);
}

try {
  const worker = new Worker(parsed);
  // Signals are handled from the start on: one that comes while the worker registers and starts
  // listening (it already says "online") stops it once it is up, instead of killing it mid-start.
  const started = worker.start();
  let signals = 0;
  const onSignal = (sig: string) => {
    if (++signals > 1) {
      console.error(`${sig} again: exiting now; running tasks will be re-queued when their leases expire`);
      process.exit(130);
    }
    console.error(`${sig}: finishing running tasks (up to ${worker.options.graceMs} ms), then exiting; ${sig} again to exit now`);
    void started.then(
      () => worker.stop(),
      () => {},
    );
  };
  process.on("SIGINT", () => onSignal("SIGINT"));
  process.on("SIGTERM", () => onSignal("SIGTERM"));
  await started;
  await worker.stopped;
} catch (err) {
  console.error(`worker: ${err instanceof Error ? err.message : err}`);
  process.exit(1);
}
