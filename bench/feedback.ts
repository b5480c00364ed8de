// Live development feedback: a file change through the files API → the first `diagnostic` event
// of the re-run step at the client, for a small TypeScript project checked by tsc in the sandbox.
import { createClient } from "@supabase/supabase-js";
import WebSocket from "ws";
import type { Sql } from "postgres";
import { mintUserToken } from "../embedded/keys.ts";
import type { Stack } from "../embedded/stack.ts";
import { createSandboxClient } from "../sdk/index.ts";
import { Worker } from "../worker/worker.ts";
import { ms, percentile, type Row } from "./stats.ts";

const ROUNDS = 10;
const ROUND_TIMEOUT_MS = 60_000;

const source = (broken: boolean, i: number) => `export function add(a: number, b: number): number {\n  return a + b;\n}\nexport const round: number = ${broken ? `"${i}"` : i};\n`;

export async function benchFeedback(stack: Stack, _sql: Sql, progress: (s: string) => void): Promise<Row[]> {
  const kind = "bench-feedback";
  const worker = new Worker({ databaseUrl: stack.dbUrl, kind, concurrency: 2, workspaceRoot: "/var/tmp/cogo-bench-ws", log: () => {} });
  await worker.start();
  const token = await mintUserToken(stack.keys.jwtSecret, "00000000-0000-4000-8000-00000000b002");
  const supabase = createClient(stack.apiUrl, stack.keys.anonKey, { accessToken: async () => token, realtime: { transport: WebSocket as never } });
  const sandbox = createSandboxClient(supabase);
  const toDiagnostic: number[] = [];
  const toFinished: number[] = [];
  const toStarted: number[] = [];
  // The plan topic forwards each step's diagnostics: the path a `cogo watch` user follows.
  const sentAt = new Map<string, number>();
  const onPlan: number[] = [];
  let missing = 0;
  try {
    progress("feedback: initial plan (tsc in the sandbox)…");
    const plan = await sandbox.createPlan(
      {
        requirements: { kind },
        files: [
          { path: "tsconfig.json", content: JSON.stringify({ compilerOptions: { strict: true, noEmit: true, types: [], lib: ["es2020"], skipLibCheck: true }, include: ["src"] }) },
          { path: "src/math.ts", content: source(false, 0) },
        ],
        steps: [{ name: "typecheck", command: "tsc -p ." }],
      },
      (e) => {
        const taskId = e.type === "diagnostic" ? e.data.taskId : undefined;
        const t0 = taskId === undefined ? undefined : sentAt.get(taskId);
        if (t0 === undefined) return;
        onPlan.push(performance.now() - t0);
        sentAt.delete(taskId!);
      },
    );
    const first = await plan.wait(undefined, ROUND_TIMEOUT_MS);
    if (first.status !== "succeeded") throw new Error(`the initial typecheck ${first.status}: ${first.summary.text} (is tsc installed? apt-get install -y node-typescript)`);
    progress(`feedback: ${ROUNDS} broken saves, each followed by a fix…`);
    for (let i = 1; i <= ROUNDS; i++) {
      for (const broken of [true, false]) {
        const t0 = performance.now();
        const change = await sandbox.writeFiles({ workspaceId: first.workspaceId, files: [{ path: "src/math.ts", content: source(broken, i) }] });
        const taskId = change.reruns.find((r) => r.step === "typecheck")?.taskId;
        if (!taskId) throw new Error("the change did not re-run typecheck");
        if (broken) sentAt.set(taskId, t0);
        let seen: number | undefined;
        let started: number | undefined;
        const handle = await sandbox.attach(
          taskId,
          {
            onEvent: (e) => {
              if (e.type === "diagnostic") seen ??= performance.now() - t0;
              if (e.type === "task_status" && e.data.status === "running") started ??= performance.now() - t0;
            },
          },
          { collectOutput: false },
        );
        const result = await Promise.race([
          handle.result(),
          new Promise<never>((_, reject) => setTimeout(() => reject(new Error(`re-run ${taskId} did not finish in ${ROUND_TIMEOUT_MS} ms`)), ROUND_TIMEOUT_MS)),
        ]);
        const finished = performance.now() - t0;
        if (broken) {
          toFinished.push(finished);
          if (started !== undefined) toStarted.push(started);
          if (result.status !== "failed") throw new Error(`the broken save's typecheck ${result.status}`);
          if (seen === undefined) missing++;
          else toDiagnostic.push(seen);
        }
      }
    }
    await plan.cancel();
    await plan.close();
  } finally {
    await supabase.removeAllChannels();
    supabase.realtime.disconnect();
    await worker.stop(0);
  }
  const rows: Row[] = [];
  if (toDiagnostic.length) {
    rows.push({ metric: "file change → first diagnostic p50", value: ms(percentile(toDiagnostic, 50)), target: "< 1500 ms", ok: percentile(toDiagnostic, 50) < 1500 });
    rows.push({ metric: "file change → first diagnostic p99", value: ms(percentile(toDiagnostic, 99)) });
  }
  if (onPlan.length) rows.push({ metric: "file change → diagnostic on plan:<id> p50", value: ms(percentile(onPlan, 50)) });
  if (missing) rows.push({ metric: "re-runs without a diagnostic event", value: `${missing} of ${ROUNDS}`, target: "0 (needs the diagnostics parsers)", ok: false });
  // What is ours (API, queue, claim, workspace restore, sandbox start) and what is the tool's.
  rows.push({ metric: "file change → re-run running p50", value: ms(percentile(toStarted, 50)) });
  rows.push({ metric: "file change → failed re-run finished p50", value: ms(percentile(toFinished, 50)) });
  return rows;
}
