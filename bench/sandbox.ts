// Sandbox figures: start overhead of `true` in bwrap vs a plain spawn, and many concurrent
// sandboxed `sleep 5` tasks through one worker, with the worker's RSS and CPU.
import { spawn } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import type { Sql } from "postgres";
import type { Stack } from "../embedded/stack.ts";
import { drainWorkspacePool, startSandbox } from "../worker/sandbox/index.ts";
import { Worker } from "../worker/worker.ts";
import { ms, percentile, type Row } from "./stats.ts";

const RUNS = 50;

function plainTrue(): Promise<number> {
  const t0 = performance.now();
  return new Promise((resolve, reject) => {
    spawn("/usr/bin/true", { stdio: "ignore" }).on("error", reject).on("exit", () => resolve(performance.now() - t0));
  });
}

async function sandboxTrue(root: string): Promise<{ running: number; exited: number; total: number }> {
  const t0 = performance.now();
  const p = await startSandbox({ command: ["true"] }, { root, workspacePool: 1 }); // pooled, as workers run
  const t1 = performance.now();
  p.stdout.resume();
  p.stderr.resume();
  const exit = await p.exited;
  const t2 = performance.now();
  await p.cleanup();
  if (exit.exitCode !== 0) throw new Error(`sandboxed true failed: ${JSON.stringify(exit)}`);
  return { running: t1 - t0, exited: t2 - t0, total: performance.now() - t0 };
}

export async function benchSandbox(stack: Stack, sql: Sql, progress: (s: string) => void, concurrent = 200): Promise<Row[]> {
  const rows: Row[] = [];
  progress(`sandbox start overhead (${RUNS} runs)…`);
  const root = await mkdtemp("/var/tmp/cogo-bench-sandbox-");
  try {
    await plainTrue();
    await sandboxTrue(root);
    const plain: number[] = [];
    const sb = { running: [] as number[], exited: [] as number[], total: [] as number[] };
    // Interleaved, so load from other processes hits both series alike.
    for (let i = 0; i < RUNS; i++) {
      plain.push(await plainTrue());
      const r = await sandboxTrue(root);
      sb.running.push(r.running);
      sb.exited.push(r.exited);
      sb.total.push(r.total);
    }
    const overhead = percentile(sb.exited, 50) - percentile(plain, 50);
    rows.push({ metric: "plain spawn true p50 / p99", value: `${ms(percentile(plain, 50))} / ${ms(percentile(plain, 99))}` });
    rows.push({ metric: "sandbox true start→exit p50 / p99", value: `${ms(percentile(sb.exited, 50))} / ${ms(percentile(sb.exited, 99))}` });
    rows.push({ metric: "sandbox overhead p50 (vs plain)", value: ms(overhead), target: "< 10 ms", ok: overhead < 10 });
    rows.push({ metric: "sandbox incl. workspace cleanup p50", value: ms(percentile(sb.total, 50)) });
  } finally {
    await drainWorkspacePool(root);
    await rm(root, { recursive: true, force: true });
  }

  progress(`${concurrent} concurrent sandboxed 'sleep 5' tasks through one worker…`);
  const kind = "bench-concurrent";
  // All queued first: the figure is what one worker holds, not how fast one client enqueues.
  const ids: string[] = [];
  for (let i = 0; i < concurrent; i++) {
    const [r] = await sql<{ id: string }[]>`select id from cogo.enqueue_task(${sql.json({ command: "sleep 5", requirements: { kind } })})`;
    ids.push(r!.id);
  }
  const w = new Worker({ databaseUrl: stack.dbUrl, kind, concurrency: concurrent, workspaceRoot: "/var/tmp/cogo-bench-ws", log: () => {} });
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  await w.start();
  let peakRunning = 0;
  let peakRss = 0;
  for (;;) {
    const [r] = await sql<{ running: number; done: number }[]>`
      select count(*) filter (where status = 'running')::int as running, count(*) filter (where finished_at is not null)::int as done
        from public.tasks where id = any(${ids})`;
    peakRunning = Math.max(peakRunning, r!.running);
    peakRss = Math.max(peakRss, process.memoryUsage().rss);
    if (r!.done === concurrent) break;
    await new Promise((res) => setTimeout(res, 100));
  }
  const secs = (performance.now() - t0) / 1000;
  const cpu = process.cpuUsage(cpu0);
  const [ok] = await sql<{ n: number }[]>`select count(*)::int as n from public.tasks where id = any(${ids}) and status = 'succeeded'`;
  const failures = await sql<{ reason: string; n: number }[]>`
    select reason, count(*)::int as n from public.tasks where id = any(${ids}) and status <> 'succeeded' group by reason`;
  await w.stop(0);
  rows.push({ metric: `concurrent sleep 5: peak running`, value: `${peakRunning} of ${concurrent}`, target: `${concurrent} held`, ok: peakRunning === concurrent && ok!.n === concurrent });
  rows.push({ metric: `concurrent sleep 5: all done in`, value: `${secs.toFixed(1)} s (${ok!.n} succeeded)` });
  for (const f of failures) rows.push({ metric: `concurrent sleep 5: not succeeded`, value: `${f.n}: ${f.reason}` });
  rows.push({ metric: "bench process RSS peak (worker + client)", value: `${(peakRss / 1024 / 1024).toFixed(0)} MiB` });
  rows.push({ metric: "bench process CPU (worker + client)", value: `${(((cpu.user + cpu.system) / 1e6 / secs) * 100).toFixed(0)} % of a core over ${secs.toFixed(1)} s` });
  return rows;
}
