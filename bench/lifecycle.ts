// Task lifecycle figures: assignment latency, live-output latency and throughput, tasks/s.
import { createClient } from "@supabase/supabase-js";
import WebSocket from "ws";
import type { Sql } from "postgres";
import { mintUserToken } from "../embedded/keys.ts";
import type { Stack } from "../embedded/stack.ts";
import type { OutputMessage } from "../functions/_shared/schemas.ts";
import { createSandboxClient } from "../sdk/index.ts";
import { Worker } from "../worker/worker.ts";
import { ms, percentile, type Row } from "./stats.ts";

async function enqueue(sql: Sql, kind: string, command: string): Promise<string> {
  const [r] = await sql<{ id: string }[]>`select id from cogo.enqueue_task(${sql.json({ command, requirements: { kind } })})`;
  return r!.id;
}

async function waitDone(sql: Sql, ids: string[]): Promise<void> {
  for (;;) {
    const [r] = await sql<{ n: number }[]>`select count(*)::int as n from public.tasks where id = any(${ids}) and status in ('succeeded', 'failed', 'cancelled', 'timed_out')`;
    if (r!.n === ids.length) return;
    await new Promise((res) => setTimeout(res, 20));
  }
}

export async function benchLifecycle(stack: Stack, sql: Sql, progress: (s: string) => void): Promise<Row[]> {
  const rows: Row[] = [];
  const workspaceRoot = "/var/tmp/cogo-bench-ws";
  const mkWorker = async (kind: string, concurrency: number) => {
    const w = new Worker({ databaseUrl: stack.dbUrl, kind, concurrency, workspaceRoot, log: () => {} });
    await w.start();
    return w;
  };

  // 1. enqueue → claim, idle worker, one task at a time.
  progress("assignment latency (100 tasks)…");
  {
    const kind = "bench-assign";
    const w = await mkWorker(kind, 10);
    const ids: string[] = [];
    for (let i = 0; i < 100; i++) {
      ids.push(await enqueue(sql, kind, "true"));
      await waitDone(sql, ids.slice(-1));
    }
    const lat = (await sql<{ ms: number }[]>`select extract(epoch from claimed_at - created_at) * 1000 as ms from public.tasks where id = any(${ids})`).map((r) => Number(r.ms));
    rows.push({ metric: "enqueue → claimed p50", value: ms(percentile(lat, 50)) });
    rows.push({ metric: "enqueue → claimed p99", value: ms(percentile(lat, 99)), target: "< 50 ms", ok: percentile(lat, 99) < 50 });
    await w.stop(0);
  }

  const userId = "00000000-0000-4000-8000-00000000b001";
  const token = await mintUserToken(stack.keys.jwtSecret, userId);
  const supabase = createClient(stack.apiUrl, stack.keys.anonKey, {
    accessToken: async () => token,
    realtime: {
      transport: WebSocket as never,
      ...(process.env.COGO_BENCH_DEBUG ? { logger: (k: string, m: string, d: unknown) => progress(`rt ${k} ${m} ${JSON.stringify(d)?.slice(0, 300)}`) } : {}),
    },
  });
  const sandbox = createSandboxClient(supabase);

  // 2. a line printed in the sandbox → the official client's callback.
  progress("stream latency (200 lines, one every 20 ms)…");
  {
    const kind = "bench-stream";
    const w = await mkWorker(kind, 2);
    const lat: number[] = [];
    const handle = await sandbox.execute(
      { command: "for i in $(seq 1 200); do date +%s%N; sleep 0.02; done", requirements: { kind } },
      {
        onStdout: (d) => {
          const now = Date.now() * 1e6 + Number(process.hrtime.bigint() % 1_000_000n);
          for (const line of d.split("\n")) if (line) lat.push((now - Number(line)) / 1e6);
        },
      },
    );
    await handle.result();
    rows.push({ metric: "sandbox stdout → subscriber p50", value: ms(percentile(lat, 50)) });
    rows.push({ metric: "sandbox stdout → subscriber p99", value: ms(percentile(lat, 99)), target: "< 20 ms", ok: percentile(lat, 99) < 20 });
    await w.stop(0);
  }

  // 3. one task flooding stdout: lines/s received over Realtime and messages/s it caused.
  progress("flood (500k lines)…");
  {
    const kind = "bench-flood";
    const lines = 500_000;
    const { data } = await supabase.functions.invoke("sandbox/execute", { body: { command: `seq 1 ${lines}`, requirements: { kind } } });
    const taskId = (data as { taskId: string }).taskId;
    let received = 0;
    let messages = 0;
    let first = 0;
    let last = 0;
    const channel = supabase.channel(`task:${taskId}`, { config: { private: true } });
    channel.on("broadcast", { event: "realtime_output" }, ({ payload }) => {
      const now = performance.now();
      if (!first) first = now;
      last = now;
      messages++;
      for (const c of (payload as OutputMessage).chunks) for (let i = 0; i < c.data.length; i++) if (c.data.charCodeAt(i) === 10) received++;
    });
    await new Promise<void>((resolve, reject) => channel.subscribe((s, err) => (s === "SUBSCRIBED" ? resolve() : reject(new Error(`flood channel: ${s} ${err?.message ?? ""}`)))));
    const w = await mkWorker(kind, 1);
    await waitDone(sql, [taskId]);
    const deadline = Date.now() + 10_000;
    while (received < lines && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    const secs = Math.max(0.001, (last - first) / 1000);
    rows.push({
      metric: "flood: lines/s over Realtime",
      value: `${Math.round(received / secs).toLocaleString("en")} (${received}/${lines})`,
      target: "≥ 50,000",
      ok: received === lines && received / secs >= 50_000,
    });
    rows.push({ metric: "flood: Realtime messages/s", value: (messages / secs).toFixed(1), target: "≤ 20", ok: messages / secs <= 20 });
    await supabase.removeChannel(channel);
    await w.stop(0);
  }

  // 4. trivial tasks through one worker at concurrency 10 and 50.
  for (const concurrency of [10, 50]) {
    progress(`tasks/s at concurrency ${concurrency} (300 × true)…`);
    const kind = `bench-tps-${concurrency}`;
    const ids: string[] = [];
    for (let i = 0; i < 300; i++) ids.push(await enqueue(sql, kind, "true"));
    const t0 = performance.now();
    const w = await mkWorker(kind, concurrency);
    await waitDone(sql, ids);
    const tps = 300 / ((performance.now() - t0) / 1000);
    rows.push({ metric: `tasks/s, trivial, concurrency ${concurrency}`, value: tps.toFixed(1) });
    await w.stop(0);
  }
  await supabase.removeAllChannels();
  supabase.realtime.disconnect();
  return rows;
}
