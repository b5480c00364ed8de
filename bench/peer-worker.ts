// One worker process of a queue under comparison, run by bench/compare.ts:
//   tsx bench/peer-worker.ts <cogo|graphile-worker|pg-boss> <databaseUrl> <queue> <concurrency> [--report-starts]
// Jobs are trivial (the handler returns at once). With --report-starts it prints
// `start <i> <epoch ms>` as each job's handler begins, for enqueue→start latency.
// The cogo worker here runs the queue path a real worker runs (claim_tasks, start_task,
// finish_task, woken by LISTEN cogo_tasks with a 1 s poll) without the sandbox, so the three
// queues are compared on the same work: take a job, mark it started, mark it done.
import { hostname } from "node:os";
import { connect } from "../functions/_shared/db.ts";
import { Queue } from "../worker/queue.ts";

const [system, databaseUrl, queue, concurrencyArg] = process.argv.slice(2);
const reportStarts = process.argv.includes("--report-starts");
const concurrency = Number(concurrencyArg);
if (!system || !databaseUrl || !queue || !(concurrency > 0)) {
  console.error("usage: tsx bench/peer-worker.ts <cogo|graphile-worker|pg-boss> <databaseUrl> <queue> <concurrency> [--report-starts]");
  process.exit(2);
}
const now = () => performance.timeOrigin + performance.now();
const started = (i: unknown) => reportStarts && process.stdout.write(`start ${i} ${now()}\n`);

async function cogo(): Promise<() => Promise<void>> {
  const sql = connect(databaseUrl!, { max: Math.min(10, 2 + concurrency), idle_timeout: 0 });
  const q = new Queue(sql);
  const w = await q.register({ name: `bench-${process.pid}`, kind: queue!, labels: [], capacity: concurrency, leaseMs: 30_000, version: "bench", host: { hostname: hostname() } });
  let running = 0;
  let claiming = false;
  let again = false;
  const loop = async (): Promise<void> => {
    if (claiming) return void (again = true);
    claiming = true;
    try {
      do {
        again = false;
        const free = concurrency - running;
        if (free <= 0) break;
        const tasks = await q.claim(w.id, free);
        for (const t of tasks) {
          running++;
          const lease = { taskId: t.id, attempt: t.attempt, workerId: w.id };
          void (async () => {
            await q.start(lease);
            started(t.step);
            await q.finish(lease, { status: "succeeded", exitCode: 0, signal: null, reason: "bench", usage: {} });
          })().finally(() => {
            running--;
            void loop();
          });
        }
        if (tasks.length === free) again = true;
      } while (again);
    } finally {
      claiming = false;
    }
  };
  await sql.listen("cogo_tasks", (k) => k === queue && void loop());
  const poll = setInterval(() => void loop(), 1000);
  void loop();
  return async () => {
    clearInterval(poll);
    await sql.end({ timeout: 2 });
  };
}

async function graphile(): Promise<() => Promise<void>> {
  const { run } = await import("graphile-worker");
  const runner = await run({
    connectionString: databaseUrl,
    concurrency,
    noHandleSignals: true,
    pollInterval: 1000,
    logger: new (await import("graphile-worker")).Logger(() => () => {}),
    taskList: {
      [queue!]: async (payload) => {
        started((payload as { i: number }).i);
      },
    },
  });
  return () => runner.stop();
}

async function pgBoss(): Promise<() => Promise<void>> {
  const { default: PgBoss } = await import("pg-boss");
  const boss = new PgBoss({ connectionString: databaseUrl, max: Math.min(10, 2 + concurrency), supervise: false, schedule: false });
  boss.on("error", () => {});
  await boss.start();
  // pg-boss has no LISTEN/NOTIFY: its workers poll, 0.5 s being the shortest interval it allows.
  // One work() loop per slot, each fetching one job, is how it runs `concurrency` jobs at once.
  for (let i = 0; i < concurrency; i++) {
    await boss.work<{ i: number }>(queue!, { pollingIntervalSeconds: 0.5, batchSize: 1 }, async (jobs) => {
      for (const j of jobs) started(j.data.i);
    });
  }
  return () => boss.stop({ graceful: false, wait: true });
}

const stop = await (system === "cogo"
  ? cogo()
  : system === "graphile-worker"
    ? graphile()
    : system === "pg-boss"
      ? pgBoss()
      : Promise.reject(new Error(`unknown system ${system}`)));
process.stdout.write("ready\n");
process.on("SIGTERM", () => void stop().finally(() => process.exit(0)));
