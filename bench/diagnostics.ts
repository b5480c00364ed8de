// Diagnostics figures: a compiler's error line in the sandbox → the `diagnostic` event in the
// official client; and real gcc / tsc runs from their start to their first diagnostic.
import { createClient } from "@supabase/supabase-js";
import WebSocket from "ws";
import { mintUserToken } from "../embedded/keys.ts";
import type { Stack } from "../embedded/stack.ts";
import type { Diagnostic } from "../functions/_shared/diagnostics/index.ts";
import type { TaskEventMessage } from "../functions/_shared/schemas.ts";
import { Worker } from "../worker/worker.ts";
import { ms, percentile, type Row } from "./stats.ts";

const nowNs = () => Date.now() * 1e6 + Number(process.hrtime.bigint() % 1_000_000n);

export async function benchDiagnostics(stack: Stack, progress: (s: string) => void): Promise<Row[]> {
  const rows: Row[] = [];
  const token = await mintUserToken(stack.keys.jwtSecret, "00000000-0000-4000-8000-00000000b002");
  const supabase = createClient(stack.apiUrl, stack.keys.anonKey, { accessToken: async () => token, realtime: { transport: WebSocket as never } });
  await supabase.realtime.setAuth();

  /** Queues the task, subscribes to its diagnostics, then starts a worker for it; returns them with arrival times. */
  const diagnosticsOf = async (kind: string, body: Record<string, unknown>) => {
    const { data, error } = await supabase.functions.invoke("sandbox/execute", { body: { ...body, requirements: { kind } } });
    if (error) throw error;
    const taskId = (data as { taskId: string }).taskId;
    const got: { d: Diagnostic; at: number }[] = [];
    let done = false;
    const channel = supabase.channel(`task:${taskId}`, { config: { private: true } });
    channel.on("broadcast", { event: "diagnostic" }, ({ payload }) => got.push({ d: (payload as TaskEventMessage).data as unknown as Diagnostic, at: nowNs() }));
    channel.on("broadcast", { event: "task_status" }, ({ payload }) => {
      if (["succeeded", "failed", "cancelled", "timed_out"].includes((payload as TaskEventMessage).data.status as string)) done = true;
    });
    await new Promise<void>((resolve, reject) => channel.subscribe((s, err) => (s === "SUBSCRIBED" ? resolve() : reject(new Error(`channel: ${s} ${err?.message ?? ""}`)))));
    const worker = new Worker({ databaseUrl: stack.dbUrl, kind, concurrency: 1, workspaceRoot: "/var/tmp/cogo-bench-ws", log: () => {} });
    await worker.start();
    const deadline = Date.now() + 300_000;
    while (!done && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    await new Promise((r) => setTimeout(r, 200)); // stragglers
    await supabase.removeChannel(channel);
    await worker.stop(0);
    return got;
  };

  // 1. An error line as gcc prints it, timestamped inside the sandbox just before it is printed.
  progress("compile error line → diagnostic event (200 lines, one every 20 ms)…");
  {
    const got = await diagnosticsOf("bench-diag-line", { command: `for i in $(seq 1 200); do echo "bench.c:$i:5: error: expected ';' at $(date +%s%N)" >&2; sleep 0.02; done` });
    const lat = got.map(({ d, at }) => (at - Number(/at (\d+)$/.exec(d.message)![1])) / 1e6);
    rows.push({ metric: `error line → diagnostic event p50 (${lat.length}/200 received)`, value: ms(percentile(lat, 50)) });
    rows.push({ metric: "error line → diagnostic event p99", value: ms(percentile(lat, 99)), target: "< 300 ms", ok: lat.length === 200 && percentile(lat, 99) < 300 });
  }

  // 2. Real compilers: from the compiler's start (a protocol notice) to its first error event.
  const fromStart = async (name: string, runs: number, compile: string, files: { path: string; content: string }[]) => {
    progress(`${name} start → first diagnostic (${runs} runs)…`);
    const got = await diagnosticsOf(`bench-diag-${name}`, { command: `for i in $(seq 1 ${runs}); do echo "::notice::start $(date +%s%N)"; ${compile}; done`, files });
    const lat: number[] = [];
    for (let i = 0; i < got.length; i++) {
      const start = /^start (\d+)$/.exec(got[i]!.d.message);
      const first = start && got.slice(i + 1).find((g) => g.d.tool === name);
      if (start && first) lat.push((first.at - Number(start[1])) / 1e6);
    }
    rows.push({ metric: `${name} start → first diagnostic event p50 (${lat.length}/${runs})`, value: ms(percentile(lat, 50)) });
  };
  await fromStart("gcc", 20, "gcc -c bad.c -o bad.o", [{ path: "bad.c", content: 'int main(void) {\n    int n = "x"\n    return n;\n}\n' }]);
  await fromStart("tsc", 5, "tsc -p .", [
    { path: "tsconfig.json", content: JSON.stringify({ compilerOptions: { strict: true, noEmit: true }, include: ["src"] }) },
    { path: "src/app.ts", content: 'export const count: number = "five";\n' },
  ]);

  await supabase.removeAllChannels();
  supabase.realtime.disconnect();
  return rows;
}
