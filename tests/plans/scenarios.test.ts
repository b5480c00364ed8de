// The four scenarios, end to end with real tools in the sandbox (tsc, npm, node, gcc, make).
// Scenarios 1 and 2 also assert the `diagnostic` events the diagnostics parsers publish per task.
import { describe, expect, it } from "vitest";
import type { PlanView } from "../../sdk/index.ts";
import { api, newUser, sql, stack, startWorker, uniqueKind, waitFor } from "../helpers/env.ts";
import { requireTools } from "./tools.ts";

type Step = PlanView["steps"][number];
const step = (p: PlanView, name: string): Step => p.steps.find((s) => s.name === name)!;

async function eventsOf(taskId: string, type: string): Promise<Record<string, unknown>[]> {
  const rows = await sql<{ data: Record<string, unknown> }[]>`select data from public.task_events where task_id = ${taskId} and type = ${type} order by seq`;
  return rows.map((r) => r.data);
}

const TS_PROJECT = [
  { path: "package.json", content: JSON.stringify({ name: "demo", version: "1.0.0", private: true }, null, 2) },
  {
    path: "tsconfig.json",
    content: JSON.stringify({ compilerOptions: { target: "es2020", module: "commonjs", strict: true, outDir: "dist", noEmitOnError: true, types: [] }, include: ["src"] }),
  },
  { path: "src/math.ts", content: 'export function add(a: number, b: number): number {\n  return a + b;\n}\nexport const answer: number = "42";\n' },
  {
    path: "src/math.test.ts",
    content:
      'declare function require(m: string): any;\nconst test = require("node:test");\nconst assert = require("node:assert");\nimport { add, answer } from "./math";\ntest("adds", () => assert.strictEqual(add(2, 3), 5));\ntest("answers", () => assert.strictEqual(answer, 42));\n',
  },
];

describe("scenarios", () => {
  it("1: TypeScript: install → typecheck → test stops at typecheck with TS2322; a fix through the files API re-runs it at high priority, then the tests run", async () => {
    await requireTools("tsc", "npm", "node");
    const kind = uniqueKind("ts");
    await startWorker({ kind });
    const user = await newUser();
    const plan = await user.sandbox.createPlan({
      name: "typescript",
      files: TS_PROJECT,
      requirements: { kind },
      env: { npm_config_cache: "/tmp/npm-cache", npm_config_update_notifier: "false" },
      steps: [
        { name: "install", command: "npm install --offline --no-audit --no-fund" },
        { name: "typecheck", command: "tsc -p ." },
        { name: "test", command: "node --test dist/" },
      ],
    });
    const failed = await plan.wait();
    expect(failed.status, failed.summary.text).toBe("failed");
    expect(step(failed, "install").status).toBe("succeeded");
    expect(step(failed, "typecheck")).toMatchObject({ status: "failed", reason: expect.stringMatching(/^exited with code [12]$/), stage: "compiling" });
    expect(step(failed, "test")).toMatchObject({ status: "stopped", reason: expect.stringContaining("dependency typecheck failed") });
    const typecheckTask = step(failed, "typecheck").taskId!;
    const out = await user.sandbox.attach(typecheckTask);
    expect((await out.result()).stdout).toContain("src/math.ts(4,14): error TS2322");
    // install's output (package-lock.json) reached the next step through the stored workspace.
    expect((await user.sandbox.listFiles(failed.workspaceId)).files.map((f) => f.path)).toContain("package-lock.json");

    // The diagnostic event, from the diagnostics parsers (functions/_shared/diagnostics).
    const diags = await eventsOf(typecheckTask, "diagnostic");
    expect(diags, "the typecheck task has a TS2322 diagnostic event").toContainEqual(
      expect.objectContaining({ tool: "tsc", file: "src/math.ts", line: 4, column: 14, severity: "error", code: "TS2322" }),
    );
    expect(step(failed, "typecheck").diagnostics.count).toBeGreaterThanOrEqual(1);
    expect(step(failed, "typecheck").diagnostics.first).toContainEqual(expect.objectContaining({ code: "TS2322", line: 4 }));
    // The plan topic carries it too, named by step, so one subscription follows the whole plan.
    await waitFor(
      () => plan.events.some((e) => e.type === "diagnostic" && e.data.step === "typecheck" && e.data.code === "TS2322" && e.data.taskId === typecheckTask),
      "the diagnostic on plan:<id>",
    );

    const change = await user.sandbox.writeFiles({
      workspaceId: failed.workspaceId,
      files: [{ path: "src/math.ts", content: "export function add(a: number, b: number): number {\n  return a + b;\n}\nexport const answer: number = 42;\n" }],
    });
    expect(change.changed).toEqual(["src/math.ts"]);
    // install has no inputs and no build stage: it does not re-run; typecheck does, test waits for it.
    expect(change.reruns.map((r) => [r.step, r.status])).toEqual([
      ["typecheck", "queued"],
      ["test", "waiting"],
    ]);
    const [rerun] = await sql<{ priority: number }[]>`select priority from public.tasks where id = ${change.reruns[0]!.taskId}`;
    expect(rerun!.priority).toBe(900);

    const fixed = await plan.wait();
    expect(fixed.status, fixed.summary.text).toBe("succeeded");
    expect(step(fixed, "install").runs).toBe(1);
    expect(step(fixed, "typecheck")).toMatchObject({ runs: 2, status: "succeeded", task: { priority: 900 } });
    expect(step(fixed, "test")).toMatchObject({ runs: 1, status: "succeeded", task: { priority: 900 } });
    const testOut = await (await user.sandbox.attach(step(fixed, "test").taskId!)).result();
    expect(testOut.stdout).toMatch(/# pass 2/);
    // The re-run's feedback streamed on the plan topic: typecheck's second run had no diagnostic.
    const rerunTask = step(fixed, "typecheck").taskId!;
    expect(plan.events.filter((e) => e.type === "diagnostic" && e.data.taskId === rerunTask)).toEqual([]);
    expect(fixed.summary.passed).toEqual(["install", "typecheck", "test"]);
    await plan.close();
  }, 240_000); // tsc, npm and node in the sandbox, twice, on a busy machine

  it("2: C: a compile error diagnostic stops the plan; fixing the source builds and tests it", async () => {
    await requireTools("gcc", "make");
    const kind = uniqueKind("c");
    await startWorker({ kind });
    const user = await newUser();
    const makefile = "app: main.o\n\tgcc -o app main.o\nmain.o: main.c\n\tgcc -Wall -c -o main.o main.c\ntest: app\n\t./app | grep -qx 'sum=5' && echo 'tests passed'\n";
    const broken = '#include <stdio.h>\nint main(void) {\n  int sum = 2 + 3;\n  printf("sum=%d\\n", summ);\n  return 0;\n}\n';
    const plan = await user.sandbox.createPlan({
      files: [
        { path: "Makefile", content: makefile },
        { path: "main.c", content: broken },
      ],
      requirements: { kind },
      steps: [
        { name: "compile", command: "make main.o" },
        { name: "build", command: "make app" },
        { name: "test", command: "make test" },
      ],
    });
    const failed = await plan.wait();
    expect(failed.status).toBe("failed");
    expect(step(failed, "compile").status).toBe("failed");
    expect(failed.summary.stopped).toEqual(["build", "test"]);
    const compileTask = step(failed, "compile").taskId!;
    expect((await (await user.sandbox.attach(compileTask)).result()).stderr).toMatch(/main\.c:4:\d+: error: .summ. undeclared/);
    expect(await eventsOf(compileTask, "diagnostic"), "the compile task has a gcc diagnostic event").toContainEqual(
      expect.objectContaining({ file: "main.c", line: 4, severity: "error" }),
    );

    const change = await user.sandbox.writeFiles({ workspaceId: failed.workspaceId, files: [{ path: "main.c", content: broken.replace("summ", "sum") }] });
    expect(change.reruns.map((r) => [r.step, r.status])).toEqual([
      ["compile", "queued"],
      ["build", "waiting"],
      ["test", "waiting"],
    ]);
    const fixed = await plan.wait();
    expect(fixed.status, fixed.summary.text).toBe("succeeded");
    // main.o and the executable app crossed steps through the stored workspace.
    const files = (await user.sandbox.listFiles(fixed.workspaceId)).files;
    expect(files.find((f) => f.path === "app")).toMatchObject({ executable: true });
    expect(files.map((f) => f.path)).toContain("main.o");
    expect((await (await user.sandbox.attach(step(fixed, "test").taskId!)).result()).stdout).toContain("tests passed");
    await plan.close();
  }, 120_000);

  it("3: a step needing a flutter worker waits, /health says so, and it runs when one registers", async () => {
    const label = uniqueKind("lab");
    const user = await newUser();
    const plan = await user.sandbox.createPlan({
      steps: [
        { name: "pub-get", command: "echo resolving packages", requirements: { kind: "flutter", labels: [label] } },
        { name: "build-apk", command: "echo built for $TARGET", env: { TARGET: "android" }, requirements: { kind: "flutter", labels: [label] } },
      ],
    });
    await new Promise((r) => setTimeout(r, 1500));
    const waiting = await plan.get();
    expect(waiting.status).toBe("running");
    expect(step(waiting, "pub-get").status).toBe("queued");
    expect(step(waiting, "build-apk").status).toBe("waiting");
    // The plan's owner sees why it waits (issue 18: only the owner's view is degraded by it).
    const health = await api("GET", "/health", { token: user.token });
    expect(health.body.status).toBe("degraded");
    expect(health.body.queuedWithoutWorker).toContainEqual({ kind: "flutter", labels: [label], count: 1 });
    expect(health.body.workerKinds).toMatchObject({ basic: expect.any(Number), flutter: 0, analysis: 0 });
    const anon = await api("GET", "/health", { token: stack.anonKey });
    expect(anon.body.queuedWithoutWorker).not.toContainEqual(expect.objectContaining({ kind: "flutter", labels: [label] }));

    await startWorker({ kind: "flutter", labels: [label] });
    const done = await plan.wait((p) => p.status !== "running", 60_000);
    expect(done.status).toBe("succeeded");
    expect((await (await user.sandbox.attach(step(done, "build-apk").taskId!)).result()).stdout).toBe("built for android\n");
    const after = await api("GET", "/health", { token: user.token });
    expect(after.body.workerKinds.flutter).toBe(1);
    expect(after.body.queuedWithoutWorker).not.toContainEqual(expect.objectContaining({ kind: "flutter", labels: [label] }));
    await plan.close();
  });

  it("4: cancelling a plan cancels its running and pending steps", async () => {
    const kind = uniqueKind("cancel");
    await startWorker({ kind });
    const user = await newUser();
    const plan = await user.sandbox.createPlan({
      requirements: { kind },
      steps: [
        { name: "long", command: "echo started; sleep 60 & wait" },
        { name: "after-long", command: "echo never" },
        { name: "unserved", command: "echo never", dependsOn: [], requirements: { kind: uniqueKind("nobody") } },
      ],
    });
    const running = await plan.wait((p) => step(p, "long").status === "running", 30_000);
    const longTask = await user.sandbox.attach(step(running, "long").taskId!);
    const t0 = Date.now();
    const cancelled = await plan.cancel();
    expect(cancelled.status).toBe("cancelled");
    const states = JSON.stringify(cancelled.steps.map((s) => [s.name, s.status, s.reason]));
    expect(step(cancelled, "after-long"), states).toMatchObject({ status: "cancelled", taskId: null });
    expect(step(cancelled, "unserved").status).toBe("cancelled");
    expect((await longTask.result()).status).toBe("cancelled");
    expect(Date.now() - t0).toBeLessThan(10_000);
    const final = await plan.wait((p) => p.steps.every((s) => s.status === "cancelled"), 15_000);
    expect(final.summary.cancelled).toEqual(["long", "after-long", "unserved"]);
    expect(final.summary.text).toContain("0 of 3 steps passed");
    await waitFor(() => plan.events.some((e) => e.type === "plan_status" && e.data.status === "cancelled"), "plan_status cancelled event");
    await waitFor(
      () => ["long", "after-long", "unserved"].every((name) => plan.events.some((e) => e.type === "step_status" && e.data.step === name && e.data.status === "cancelled")),
      "step_status cancelled for every step",
    );
    // Nothing is left to run, and a second cancel changes nothing.
    const [active] = await sql<
      { n: number }[]
    >`select count(*)::int n from public.tasks where plan_id = ${plan.planId} and status not in ('succeeded', 'failed', 'cancelled', 'timed_out')`;
    expect(active!.n).toBe(0);
    expect((await plan.cancel()).status).toBe("cancelled");
    await plan.close();
  });
});
