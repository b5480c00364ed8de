// Real compilers and test runners in the sandbox; their diagnostics, test results and progress
// arrive as events through the official supabase-js client while the task runs.
import { existsSync } from "node:fs";
import { describe, expect, it } from "vitest";
import type { Diagnostic, ProgressUpdate, TestResults } from "../../functions/_shared/diagnostics/index.ts";
import type { TaskEventMessage } from "../../sdk/index.ts";
import { newUser, sql, startWorker, uniqueKind, waitFor } from "../helpers/env.ts";

function need(path: string, install: string): void {
  if (!existsSync(path)) throw new Error(`${path} is missing: the sandbox uses the host's /usr; run \`apt-get install -y ${install}\` (.ci/run does)`);
}

type Received = TaskEventMessage & { receivedAt: number };

/** Queues a task for a worker of a fresh kind, subscribes to its topic, then starts that worker. */
async function run(body: Record<string, unknown>) {
  const kind = uniqueKind("diag");
  const user = await newUser();
  const { data, error } = await user.supabase.functions.invoke("sandbox/execute", { body: { ...body, requirements: { kind } } });
  if (error) throw error;
  const taskId = (data as { taskId: string }).taskId;
  const events: Received[] = [];
  const channel = user.supabase.channel(`task:${taskId}`, { config: { private: true } });
  for (const event of ["diagnostic", "test_results", "progress_update", "task_status"]) {
    channel.on("broadcast", { event }, ({ payload }) => events.push({ ...(payload as TaskEventMessage), receivedAt: Date.now() }));
  }
  await new Promise<void>((resolve, reject) => channel.subscribe((s, err) => (s === "SUBSCRIBED" ? resolve() : s !== "CLOSED" && reject(err ?? new Error(s)))));
  await startWorker({ kind });
  const final = await waitFor(
    () =>
      events.find((e): e is Extract<Received, { type: "task_status" }> => e.type === "task_status" && ["succeeded", "failed", "cancelled", "timed_out"].includes(e.data.status)),
    "the task to finish",
    100_000,
  );
  await user.supabase.removeChannel(channel);
  const of = <T>(type: string) => events.filter((e) => e.type === type).map((e) => e.data as unknown as T);
  return { taskId, user, events, final, diagnostics: of<Diagnostic>("diagnostic"), testResults: of<TestResults>("test_results"), progress: of<ProgressUpdate>("progress_update") };
}

describe("diagnostic events from real tools in the sandbox", () => {
  it("tsc: a type error arrives as a diagnostic while the task still runs", async () => {
    need("/usr/bin/tsc", "node-typescript");
    const r = await run({
      command: "tsc -p . ; echo tsc done; sleep 4",
      files: [
        { path: "tsconfig.json", content: JSON.stringify({ compilerOptions: { strict: true, noEmit: true }, include: ["src"] }) },
        { path: "src/app.ts", content: 'export const greeting: string = "hi";\nexport const count: number = "five";\n' },
      ],
    });
    expect(r.diagnostics).toEqual([
      { tool: "tsc", file: "src/app.ts", line: 2, column: 14, severity: "error", code: "TS2322", message: "Type 'string' is not assignable to type 'number'." },
    ]);
    // Streamed, not collected at the end: it came seconds before the task finished.
    const d = r.events.find((e) => e.type === "diagnostic")!;
    expect(r.final.receivedAt - d.receivedAt).toBeGreaterThan(2000);
    // Also stored for replay, in the task's event sequence.
    const rows = await sql<{ seq: string; data: Diagnostic }[]>`select seq, data from public.task_events where task_id = ${r.taskId} and type = 'diagnostic'`;
    expect(rows.map((x) => x.data)).toEqual(r.diagnostics);
    expect(Number(rows[0]!.seq)).toBe(d.seq);
  }, 120_000); // tsc takes seconds to start on a busy machine

  it("gcc: errors, a warning with its flag and a note, in the compiler's order", async () => {
    const r = await run({
      command: "gcc -Wall -c bad.c -o bad.o",
      files: [{ path: "bad.c", content: "static int add(int a, int b) { return a + b; }\nint main(void) {\n    int unused;\n    return add(1, 2, 3);\n}\n" }],
    });
    expect(r.final.data.status).toBe("failed");
    expect(r.diagnostics.map((d) => `${d.severity} ${d.file}:${d.line}:${d.column} ${d.code ?? ""}`)).toEqual([
      "error bad.c:4:12 ",
      "note bad.c:1:12 ",
      "warning bad.c:3:9 -Wunused-variable",
    ]);
    expect(r.diagnostics[0]).toMatchObject({ tool: "gcc", message: "too many arguments to function ‘add’" });
  });

  it("pytest: the summary becomes test_results with the failing tests' names", async () => {
    need("/usr/lib/python3/dist-packages/pytest", "python3-pytest");
    const r = await run({
      command: "python3 -m pytest -p no:cacheprovider",
      files: [
        {
          path: "test_calc.py",
          content:
            "import pytest\n\ndef test_ok():\n    assert 1 + 1 == 2\n\ndef test_wrong():\n    assert 2 + 2 == 5\n\n@pytest.mark.skip(reason='slow')\ndef test_slow():\n    pass\n",
        },
      ],
    });
    expect(r.testResults).toEqual([{ tool: "pytest", passed: 1, failed: 1, skipped: 1, failures: ["test_calc.py::test_wrong"] }]);
    expect(r.diagnostics).toEqual([expect.objectContaining({ tool: "pytest", file: "test_calc.py", line: 7, code: "AssertionError" })]);
    expect(r.progress.at(-1)).toMatchObject({ percentage: 100, stage: "testing", source: "tool" });
  });
});

describe("progress events", () => {
  it("the ::progress protocol, throttled: the last update always arrives", async () => {
    const r = await run({ command: 'for i in $(seq 1 100); do echo "::progress $i/100 building step $i"; done; sleep 0.5' });
    expect(r.progress.length).toBeGreaterThanOrEqual(2);
    expect(r.progress.length).toBeLessThan(50); // 100 lines; one event per 250 ms at most
    expect(r.progress[0]).toMatchObject({ percentage: 1, stage: "building", message: "step 1", source: "protocol" });
    expect(r.progress.at(-1)).toEqual({ percentage: 100, stage: "building", message: "step 100", source: "protocol", etaMs: 0 });
  });

  it("ETA from the history of the same command: none at first, then the median duration left", async () => {
    const kind = uniqueKind("eta");
    await startWorker({ kind });
    const user = await newUser();
    const command = "sleep 0.6; echo '::progress - testing waiting'; sleep 0.1";
    const progressOf = async () => {
      const updates: ProgressUpdate[] = [];
      const handle = await user.sandbox.execute({ command, requirements: { kind } }, { onProgress: (p) => updates.push(p) });
      expect((await handle.result()).status).toBe("succeeded");
      await waitFor(() => updates.length > 0, "a progress update");
      return { taskId: handle.taskId, update: updates[0]! };
    };
    const first = await progressOf();
    expect(first.update).toMatchObject({ percentage: null, stage: "testing", etaMs: null });
    await progressOf();
    const third = await progressOf();
    const [row] = await sql<{ ms: string }[]>`select cogo.estimate_duration_ms(${third.taskId}) as ms`;
    const ms = row!.ms;
    expect(Number(ms)).toBeGreaterThanOrEqual(600);
    // Printed ~0.6 s in, out of runs of ≥ 0.7 s: some time is left, less than a whole run.
    expect(third.update.etaMs).toBeGreaterThan(0);
    expect(third.update.etaMs).toBeLessThan(Number(ms));
    // A task of another owner (here: none, as the service role) has no history of this user's runs.
    const [queued] = await sql<{ id: string }[]>`select id from cogo.enqueue_task(${sql.json({ command, requirements: { kind: uniqueKind("nobody") } })})`;
    const id = queued!.id;
    const [estimate] = await sql<{ ms: string | null }[]>`select cogo.estimate_duration_ms(${id}) as ms`;
    const none = estimate!.ms;
    await sql`delete from public.tasks where id = ${id}`;
    expect(none).toBeNull();
  });
});

describe("the worker's line handling", () => {
  it("a held multi-line message is reported after a short quiet spell, not at the end of the task", async () => {
    const r = await run({ command: "echo 'error[E0425]: cannot find value `x` in this scope'; sleep 3" });
    expect(r.diagnostics).toEqual([{ tool: "rustc", file: null, line: null, column: null, severity: "error", code: "E0425", message: "cannot find value `x` in this scope" }]);
    const d = r.events.find((e) => e.type === "diagnostic")!;
    expect(r.final.receivedAt - d.receivedAt).toBeGreaterThan(1500);
  });

  it("publishes at most 500 diagnostics per task and says so in the output", async () => {
    const r = await run({ command: 'for i in $(seq 1 600); do echo "a.c:$i:1: error: e$i"; done' });
    await waitFor(() => r.diagnostics.length >= 500, "500 diagnostics", 20_000);
    const rows = await sql<{ n: number }[]>`select count(*)::int as n from public.task_events where task_id = ${r.taskId} and type = 'diagnostic'`;
    expect(rows[0]!.n).toBe(500);
    expect(r.diagnostics.at(-1)!.message).toBe("e500");
    const system = await sql<{ data: string }[]>`select data from public.task_output where task_id = ${r.taskId} and stream = 'system'`;
    expect(system.map((x) => x.data).join("")).toContain("diagnostics: more than 500");
  });
});

describe("the SDK", () => {
  it("hands diagnostics and test results to typed callbacks, live and when replayed after the task ended", async () => {
    const kind = uniqueKind("sdk");
    await startWorker({ kind });
    const user = await newUser();
    const command = "echo '::error file=src/a.ts,line=3,col=5,code=E1::broken'; echo '::test-results passed=2 failed=1 skipped=0 failures=a > b'";
    const seen = () => ({ diagnostics: [] as Diagnostic[], results: [] as TestResults[] });
    const live = seen();
    const handle = await user.sandbox.execute({ command, requirements: { kind } }, { onDiagnostic: (d) => live.diagnostics.push(d), onTestResults: (t) => live.results.push(t) });
    await handle.result();
    const late = seen();
    await (await user.sandbox.attach(handle.taskId, { onDiagnostic: (d) => late.diagnostics.push(d), onTestResults: (t) => late.results.push(t) })).result();
    for (const got of [live, late]) {
      expect(got.diagnostics).toEqual([{ tool: "protocol", file: "src/a.ts", line: 3, column: 5, severity: "error", code: "E1", message: "broken" }]);
      expect(got.results).toEqual([{ tool: "protocol", passed: 2, failed: 1, skipped: 0, failures: ["a > b"] }]);
    }
  });
});
