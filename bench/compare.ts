// Side by side with what users would pick instead: claim throughput (trivial jobs, 1 and 4 worker
// processes) and enqueue→start latency of our queue, graphile-worker and pg-boss, each in worker
// processes of its own, on the same embedded Postgres, in the same run.
import { spawn, type ChildProcess } from "node:child_process";
import { createRequire } from "node:module";
import path from "node:path";
import { createInterface } from "node:readline";
import type { Sql } from "postgres";
import { PROJECT_ROOT, type Stack } from "../embedded/stack.ts";
import { ms, percentile, type Row } from "./stats.ts";

const SYSTEMS = ["cogo", "graphile-worker", "pg-boss"] as const;
type System = (typeof SYSTEMS)[number];
const JOBS = 2000;
const LATENCY_JOBS = 200;
const LATENCY_SPACING_MS = 20;
const CONCURRENCY = 10;

const now = () => performance.timeOrigin + performance.now();
const version = (pkg: string) => (createRequire(import.meta.url)(`${pkg}/package.json`) as { version: string }).version;

interface Proc {
  child: ChildProcess;
  starts: Map<number, number>;
  stop(): Promise<void>;
}

async function spawnPeer(system: System, dbUrl: string, queue: string, reportStarts: boolean): Promise<Proc> {
  const args = ["--import", "tsx", path.join(PROJECT_ROOT, "bench", "peer-worker.ts"), system, dbUrl, queue, String(CONCURRENCY)];
  if (reportStarts) args.push("--report-starts");
  const child = spawn(process.execPath, args, { stdio: ["ignore", "pipe", "pipe"] });
  let stderr = "";
  child.stderr!.on("data", (d: Buffer) => (stderr += d));
  const starts = new Map<number, number>();
  const exited = new Promise<void>((r) => child.once("exit", () => r()));
  await new Promise<void>((resolve, reject) => {
    const lines = createInterface({ input: child.stdout! });
    lines.on("line", (line) => {
      if (line === "ready") resolve();
      const m = /^start (\S+) (\S+)$/.exec(line);
      if (m) starts.set(Number(m[1]), Number(m[2]));
    });
    void exited.then(() => reject(new Error(`${system} worker exited before it was ready: ${stderr.slice(-2000)}`)));
  });
  return {
    child,
    starts,
    stop: async () => {
      child.kill("SIGTERM");
      const t = setTimeout(() => child.kill("SIGKILL"), 5000);
      await exited;
      clearTimeout(t);
    },
  };
}

/** Per system: create its schema/queue, enqueue n jobs (payload {i}) in one transaction, one job, count finished. */
function adapter(system: System, sql: Sql, dbUrl: string) {
  if (system === "cogo") {
    const spec = (kind: string, i: number) => sql.json({ command: "true", step: String(i), requirements: { kind } });
    return {
      setup: async (_q: string) => {},
      enqueueMany: async (q: string, n: number) => {
        await sql`select cogo.enqueue_task(jsonb_build_object('command', 'true', 'step', i::text, 'requirements', jsonb_build_object('kind', ${q}::text))) from generate_series(1, ${n}) i`;
      },
      enqueueOne: async (q: string, i: number) => void (await sql`select cogo.enqueue_task(${spec(q, i)})`),
      done: async (q: string) => Number((await sql<{ n: number }[]>`select count(*)::int as n from public.tasks where required_kind = ${q} and status = 'succeeded'`)[0]!.n),
      close: async () => {},
    };
  }
  if (system === "graphile-worker") {
    let utils: Awaited<ReturnType<typeof import("graphile-worker").makeWorkerUtils>>;
    return {
      setup: async (_q: string) => {
        const gw = await import("graphile-worker");
        utils ??= await gw.makeWorkerUtils({ connectionString: dbUrl, logger: new gw.Logger(() => () => {}) });
        await utils.migrate();
      },
      enqueueMany: async (q: string, n: number) => void (await utils.addJobs(Array.from({ length: n }, (_, i) => ({ identifier: q, payload: { i } })))),
      enqueueOne: async (q: string, i: number) => void (await utils.addJob(q, { i })),
      // Finished jobs are deleted: done = enqueued − still present.
      done: async (q: string) => JOBS - Number((await sql<{ n: number }[]>`select count(*)::int as n from graphile_worker.jobs where task_identifier = ${q}`)[0]!.n),
      close: async () => utils?.release(),
    };
  }
  let boss: InstanceType<typeof import("pg-boss")>;
  return {
    setup: async (q: string) => {
      const { default: PgBoss } = await import("pg-boss");
      if (!boss) {
        boss = new PgBoss({ connectionString: dbUrl, max: 4, supervise: false, schedule: false });
        boss.on("error", () => {});
        await boss.start();
      }
      await boss.createQueue(q);
    },
    enqueueMany: async (q: string, n: number) => boss.insert(Array.from({ length: n }, (_, i) => ({ name: q, data: { i } }))),
    enqueueOne: async (q: string, i: number) => void (await boss.send(q, { i })),
    done: async (q: string) => Number((await sql<{ n: number }[]>`select count(*)::int as n from pgboss.job where name = ${q} and state = 'completed'`)[0]!.n),
    close: async () => boss?.stop({ graceful: false, wait: true }),
  };
}

async function throughput(system: System, a: ReturnType<typeof adapter>, dbUrl: string, processes: number): Promise<number> {
  const q = `bench-${system.replace(/[^a-z]/g, "")}-tp${processes}-${Date.now() % 100000}`;
  await a.setup(q);
  const procs = await Promise.all(Array.from({ length: processes }, () => spawnPeer(system, dbUrl, q, false)));
  try {
    await a.enqueueMany(q, JOBS);
    const t0 = now();
    const deadline = t0 + 120_000;
    while ((await a.done(q)) < JOBS) {
      if (now() > deadline) throw new Error(`${system}: ${JOBS} jobs not done within 120 s`);
      await new Promise((r) => setTimeout(r, 10));
    }
    return JOBS / ((now() - t0) / 1000);
  } finally {
    await Promise.all(procs.map((p) => p.stop()));
  }
}

async function latency(system: System, a: ReturnType<typeof adapter>, dbUrl: string): Promise<number[]> {
  const q = `bench-${system.replace(/[^a-z]/g, "")}-lat-${Date.now() % 100000}`;
  await a.setup(q);
  const proc = await spawnPeer(system, dbUrl, q, true);
  try {
    await new Promise((r) => setTimeout(r, 500)); // idle, listening
    const sent = new Map<number, number>();
    for (let i = 1; i <= LATENCY_JOBS; i++) {
      sent.set(i, now());
      await a.enqueueOne(q, i);
      await new Promise((r) => setTimeout(r, LATENCY_SPACING_MS));
    }
    const deadline = now() + 30_000;
    while (proc.starts.size < LATENCY_JOBS && now() < deadline) await new Promise((r) => setTimeout(r, 20));
    if (proc.starts.size < LATENCY_JOBS) throw new Error(`${system}: only ${proc.starts.size}/${LATENCY_JOBS} jobs started`);
    return [...sent].map(([i, t]) => proc.starts.get(i)! - t);
  } finally {
    await proc.stop();
  }
}

export async function benchCompare(stack: Stack, sql: Sql, progress: (s: string) => void): Promise<Row[]> {
  const label: Record<System, string> = {
    cogo: "cogo (queue path, no sandbox)",
    "graphile-worker": `graphile-worker ${version("graphile-worker")}`,
    "pg-boss": `pg-boss ${version("pg-boss")} (polls; waits 0.5 s after each fetch)`,
  };
  const figures = new Map<string, Map<System, number>>();
  const put = (metric: string, s: System, v: number) => figures.set(metric, (figures.get(metric) ?? new Map()).set(s, v));
  for (const system of SYSTEMS) {
    const a = adapter(system, sql, stack.dbUrl);
    try {
      for (const processes of [1, 4]) {
        progress(`${system}: ${JOBS} trivial jobs, ${processes} worker process(es) × ${CONCURRENCY}…`);
        put(`claim throughput, ${processes} process${processes > 1 ? "es" : ""} (jobs/s)`, system, await throughput(system, a, stack.dbUrl, processes));
      }
      progress(`${system}: enqueue→start latency (${LATENCY_JOBS} jobs, one every ${LATENCY_SPACING_MS} ms)…`);
      const lat = await latency(system, a, stack.dbUrl);
      put("enqueue→start p50 (ms)", system, percentile(lat, 50));
      put("enqueue→start p99 (ms)", system, percentile(lat, 99));
    } finally {
      await a.close();
    }
  }
  const rows: Row[] = [];
  for (const [metric, bySystem] of figures) {
    const ours = bySystem.get("cogo")!;
    const isLatency = metric.includes("(ms)");
    for (const system of SYSTEMS) {
      const v = bySystem.get(system)!;
      rows.push({
        metric: `${metric.replace(/ \((ms|jobs\/s)\)$/, "")}: ${label[system]}`,
        value: isLatency ? ms(v) : `${v.toFixed(0)} jobs/s`,
        ...(system === "cogo" ? {} : { ratio: `cogo ${isLatency ? (ours / v).toFixed(2) + "× the latency" : (ours / v).toFixed(2) + "× the rate"}` }),
      });
    }
  }
  return rows;
}
