// A worker that no task can stall: one task leaves 600,000 files and exits while a bystander
// streams on the same worker and short `echo` tasks keep arriving. Measures what issue 17 named:
// the bystander's attempt (1 is right), the longest gap between heartbeats the database saw, the
// worker's event-loop delay, and how long the `echo` tasks waited to be claimed meanwhile.
import { monitorEventLoopDelay } from "node:perf_hooks";
import type { Sql } from "postgres";
import type { Stack } from "../embedded/stack.ts";
import { Worker } from "../worker/worker.ts";
import { ms, percentile, type Row } from "./stats.ts";

const FILES = 600_000;
const MAKE_FILES = `import os
for d in range(${FILES / 1000}):
    os.mkdir(str(d))
    for i in range(1000):
        open(f"{d}/{i}", "w").close()
print("made ${FILES} files")`;

async function enqueue(sql: Sql, spec: object): Promise<string> {
  const [r] = await sql<{ id: string }[]>`select id from cogo.enqueue_task(${sql.json(spec as never)})`;
  return r!.id;
}

export async function benchStall(stack: Stack, sql: Sql, progress: (s: string) => void): Promise<Row[]> {
  const kind = "bench-stall";
  const leaseMs = 15_000;
  const worker = new Worker({ databaseUrl: stack.dbUrl, kind, concurrency: 4, leaseMs, workspaceRoot: "/var/tmp/cogo-bench-ws", log: () => {} });
  await worker.start();
  const loop = monitorEventLoopDelay({ resolution: 10 });
  const beats: number[] = [];
  let sampling = true;
  const sampler = (async () => {
    let last = "";
    while (sampling) {
      const [w] = await sql<{ at: Date }[]>`select last_heartbeat_at as at from public.workers where id = ${worker.workerId!}`;
      const at = w!.at.toISOString();
      if (at !== last) beats.push(w!.at.getTime());
      last = at;
      await new Promise((r) => setTimeout(r, 50));
    }
  })();
  try {
    progress(`stall: a task leaving ${FILES.toLocaleString("en")} files beside a streaming bystander and echo tasks…`);
    loop.enable();
    const bystander = await enqueue(sql, { command: "for i in $(seq 1 300); do echo line $i; sleep 0.1; done", requirements: { kind }, maxAttempts: 3 });
    const heavy = await enqueue(sql, { argv: ["python3", "-c", MAKE_FILES], requirements: { kind }, maxAttempts: 1, timeoutMs: 600_000, limits: { workspaceBytes: 1024 ** 3 } });
    const echoes: string[] = [];
    const started = Date.now();
    for (;;) {
      const [h] = await sql<{ status: string; since: number | null }[]>`
        select status, extract(epoch from now() - finished_at) * 1000 as since from public.tasks where id = ${heavy}`;
      const [b] = await sql<{ status: string }[]>`select status from public.tasks where id = ${bystander}`;
      const over = ["succeeded", "failed", "timed_out", "cancelled"];
      // Past the heavy task's end by 5 s: its cleanup is what used to stall the worker.
      if (over.includes(h!.status) && over.includes(b!.status) && Number(h!.since) > 5000) break;
      if (Date.now() - started > 300_000) throw new Error("stall bench: tasks did not finish within 5 minutes");
      echoes.push(await enqueue(sql, { command: "echo hi", requirements: { kind } }));
      await new Promise((r) => setTimeout(r, 200));
    }
    loop.disable();
    const [h] = await sql<{ status: string; reason: string; attempt: number }[]>`select status, reason, attempt from public.tasks where id = ${heavy}`;
    const [b] = await sql<{ status: string; attempt: number; max: number }[]>`select status, attempt, max_attempts as max from public.tasks where id = ${bystander}`;
    const waits = (await sql<{ ms: number }[]>`select extract(epoch from claimed_at - created_at) * 1000 as ms from public.tasks where id = any(${echoes})`).map((r) =>
      Number(r.ms),
    );
    const gaps = beats.slice(1).map((t, i) => t - beats[i]!);
    const maxGap = Math.max(...gaps);
    const waitP99 = percentile(waits, 99);
    return [
      { metric: `task leaving ${FILES.toLocaleString("en")} files`, value: `${h!.status} (${h!.reason})` },
      { metric: "bystander: status, attempt", value: `${b!.status}, attempt ${b!.attempt} of ${b!.max}`, target: "attempt 1", ok: b!.status === "succeeded" && b!.attempt === 1 },
      { metric: "longest heartbeat gap (database)", value: ms(maxGap), target: `< lease ${leaseMs} ms / 2`, ok: maxGap < leaseMs / 2 },
      { metric: "worker event-loop delay p99 / max", value: `${ms(loop.percentile(99) / 1e6)} / ${ms(loop.max / 1e6)}` },
      { metric: `echo queue wait p50 (${waits.length} tasks)`, value: ms(percentile(waits, 50)) },
      { metric: "echo queue wait p99", value: ms(waitP99), target: "< 1 s", ok: waitP99 < 1000 },
    ];
  } finally {
    sampling = false;
    await sampler;
    await worker.stop(0);
  }
}
