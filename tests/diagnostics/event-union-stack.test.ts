// The event contract against what the real stack writes: tasks that produce status changes,
// diagnostics, progress, test results, resource samples, a block with its recovery (by the
// worker and by SQL for a lost worker) and a small plan; then EVERY stored task and plan event
// must parse strictly with functions/_shared/events.ts. An event type or field written without a
// schema there fails this test. The last test holds the whole database to it, so in a full run it
// also checks what every test file before it made the system write.
import { randomUUID } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { checkPlanEvent, checkTaskEvent, PLAN_EVENT_TYPES, TASK_EVENT_TYPES, type TaskEventMessage } from "../../functions/_shared/events.ts";
import { newUser, sql, sqlAsUser, startWorker, uniqueKind, waitFor } from "../helpers/env.ts";

interface Row {
  taskId?: string;
  planId?: string;
  seq: string;
  type: string;
  data: unknown;
}

/** "type: error (task …, seq n)" for each row that does not fit; [] when all do. */
function misfits(rows: Row[], check: typeof checkTaskEvent | typeof checkPlanEvent): string[] {
  return rows.flatMap((r) => {
    const c = check(r);
    return c.ok ? [] : [`${c.error} (${r.taskId ? `task ${r.taskId}` : `plan ${r.planId}`}, seq ${r.seq}): ${JSON.stringify(r.data).slice(0, 300)}`];
  });
}

const FINAL = ["succeeded", "failed", "cancelled", "timed_out"];

describe("every event the stack writes fits the contract", () => {
  const kind = uniqueKind("evu");
  const taskIds: string[] = [];
  let user: Awaited<ReturnType<typeof newUser>>;

  beforeAll(async () => {
    user = await newUser({ maxRunning: 100 }); // the fake worker claims two at once
  });
  afterAll(async () => {
    // The lost-worker test's fake worker: nothing else may claim for it.
    await sql`update public.workers set status = 'offline' where kind = ${kind + "-lost"}`;
  });

  it("status, diagnostics, progress, test results and resource samples from a real worker (typed for the SDK too)", async () => {
    await startWorker({ kind, concurrency: 4 });
    const received: TaskEventMessage[] = [];
    const compile = await user.sandbox.execute(
      {
        command:
          "echo '::progress 40 compiling building bad.c'; gcc -Wall -c bad.c; echo '::test-results passed=3 failed=1 skipped=0 failures=math > adds'; echo '[100%] Built target app'",
        files: [{ path: "bad.c", content: "int main(void) { int unused; return x; }\n" }],
        requirements: { kind },
      },
      { onEvent: (e) => received.push(e) },
    );
    // Samples come every 2 s while the block monitor watches (quick sampling, nothing blocks).
    const sampled = await user.sandbox.execute({
      command: "for i in 1 2 3 4 5; do echo tick $i; sleep 1; done",
      requirements: { kind },
      blockDetection: { sampleIntervalMs: 200 },
    });
    taskIds.push(compile.taskId, sampled.taskId);
    expect((await compile.result()).status).toBe("succeeded");
    expect((await sampled.result()).status).toBe("succeeded");

    // The SDK handed every event over typed, none unreadable.
    expect(received.filter((e) => e.type === "unknown")).toEqual([]);
    expect([...new Set(received.map((e) => e.type))]).toEqual(expect.arrayContaining(["task_status", "progress_update", "diagnostic", "test_results"]));
    const diagnostics = received.flatMap((e) => (e.type === "diagnostic" ? [e.data] : []));
    expect(diagnostics.map((d) => `${d.severity} ${d.file}:${d.line}`)).toContain("error bad.c:1");
    const types = await sql<{ type: string }[]>`select distinct type from public.task_events where task_id = ${sampled.taskId}`;
    expect(types.map((t) => t.type)).toContain("resource_sample");
  });

  it("a block the worker detects, its recovery, a refused recovery and a give-up", async () => {
    const looped = await user.sandbox.execute({
      command: "echo looping; while :; do :; done",
      requirements: { kind },
      blockDetection: { sampleIntervalMs: 200, infiniteLoopMs: 2000 },
      recovery: { alternativeCommand: "echo recovered" },
    });
    const stalled = await user.sandbox.execute({
      command: "sleep infinity",
      maxAttempts: 1,
      requirements: { kind },
      blockDetection: { sampleIntervalMs: 200, idleStallMs: 1500 },
    });
    // Parked (automatic: false), then a forced action that cannot apply: refused, `recovery_failed`.
    const parked = await user.sandbox.execute({
      command: "sleep infinity",
      requirements: { kind },
      blockDetection: { sampleIntervalMs: 200, idleStallMs: 1500 },
      recovery: { automatic: false },
    });
    taskIds.push(looped.taskId, stalled.taskId, parked.taskId);
    expect((await looped.result()).status).toBe("succeeded");
    expect((await stalled.result()).status).toBe("failed");
    await waitFor(async () => (await sql`select 1 from public.tasks where id = ${parked.taskId} and status = 'blocked'`).length > 0 || null, "the parked block", 30_000);
    await user.sandbox.recover(parked.taskId, { action: "alternative_command" });
    await waitFor(
      async () => (await sql`select 1 from public.task_events where task_id = ${parked.taskId} and type = 'recovery_failed'`).length > 0 || null,
      "the refusal",
      10_000,
    );
    await parked.cancel();
    expect((await parked.result()).status).toBe("cancelled");
    const types = await sql<{ type: string }[]>`select distinct type from public.task_events where task_id in ${sql([looped.taskId, stalled.taskId, parked.taskId])}`;
    expect(types.map((t) => t.type)).toEqual(expect.arrayContaining(["block_detected", "recovery_started", "recovery_succeeded", "recovery_failed", "recovery_gave_up"]));
  }, 120_000);

  it("a lost worker's tasks: block_detected worker_lost and the SQL recovery, re-queued or failed", async () => {
    const lostKind = kind + "-lost";
    const [w] = await sql<{ id: string }[]>`select id from cogo.register_worker(${"lost-" + randomUUID().slice(0, 8)}, ${lostKind}, ${[]}, 2, 1000, 'test', '{}')`;
    const again = await user.sandbox.execute({ command: "echo second attempt", maxAttempts: 2, requirements: { kind: lostKind } });
    const last = await user.sandbox.execute({ command: "echo never", maxAttempts: 1, requirements: { kind: lostKind } });
    taskIds.push(again.taskId, last.taskId);
    await waitFor(async () => (await sql`select 1 from cogo.claim_tasks(${w!.id}, 2)`).length > 0 || null, "the fake worker to claim", 10_000);
    await waitFor(
      async () => {
        await sql`select cogo.requeue_expired()`;
        const [r] = await sql<{ n: number }[]>`select count(*)::int as n from public.tasks where id in ${sql([again.taskId, last.taskId])} and status in ('queued', 'failed')`;
        return r!.n === 2 || null;
      },
      "both leases to run out",
      15_000,
    );
    await sql`update public.workers set status = 'offline' where id = ${w!.id}`;
    await startWorker({ kind: lostKind });
    expect((await again.result()).status).toBe("succeeded");
    expect((await last.result()).status).toBe("failed");
    const blocks = await sql<{ data: { reason: string } }[]>`select data from public.task_events where task_id in ${sql([again.taskId, last.taskId])} and type = 'block_detected'`;
    expect(blocks.map((b) => b.data.reason)).toEqual(["worker_lost", "worker_lost"]);
    // The task with no attempt left gives up; the re-queued one recovered.
    const ends = await sql<{ taskId: string; type: string; data: Record<string, unknown> }[]>`
      select task_id, type, data from public.task_events where task_id in ${sql([again.taskId, last.taskId])}
         and type in ('recovery_succeeded', 'recovery_failed', 'recovery_gave_up') order by task_id, seq`;
    expect(ends.filter((e) => e.taskId === last.taskId).map((e) => [e.type, e.data.action, e.data.tried])).toEqual([["recovery_gave_up", "give_up", []]]);
    expect(ends.filter((e) => e.taskId === again.taskId).map((e) => e.type)).toEqual(["recovery_succeeded"]);
  });

  it("a plan: plan and step status, progress, forwarded diagnostics and test results, a stopped step, a re-run", async () => {
    const plan = await user.sandbox.createPlan({
      files: [{ path: "src/a.txt", content: "one\n" }],
      steps: [
        { name: "build", command: "echo '::progress 50 building half'; echo '::warning file=src/a.txt,line=1::odd'; cat src/a.txt", requirements: { kind } },
        { name: "test", command: "echo '::test-results passed=2 failed=0 skipped=1'", dependsOn: ["build"], requirements: { kind } },
        { name: "lint", command: "exit 3", requirements: { kind } },
        { name: "after-lint", command: "true", dependsOn: ["lint"], requirements: { kind } },
      ],
    });
    try {
      const first = await plan.wait();
      expect(first.status).toBe("failed");
      await user.sandbox.writeFiles({ workspaceId: first.workspaceId, files: [{ path: "src/a.txt", content: "two\n" }] });
      await plan.wait((p) => p.status !== "running" && p.steps.find((s) => s.name === "build")!.runs === 2, 60_000);
      await waitFor(() => plan.events.some((e) => e.type === "step_status" && e.data.status === "waiting") || null, "the re-run's events", 10_000);
      expect(plan.events.filter((e) => e.type === "unknown")).toEqual([]);
      expect(new Set(plan.events.map((e) => e.type))).toEqual(new Set(PLAN_EVENT_TYPES));
      const rows = await sql<Row[]>`select plan_id, seq, type, data from public.plan_events where plan_id = ${plan.planId} order by seq`;
      expect(misfits(rows, checkPlanEvent)).toEqual([]);
      const steps = await sql<{ id: string }[]>`select id from public.tasks where plan_id = ${plan.planId}`;
      taskIds.push(...steps.map((s) => s.id));
    } finally {
      await plan.close();
    }
  }, 120_000);

  it("a persistent sandbox's status events (on its init task): created, then stopped", async () => {
    // A kind no worker serves: the init task stays queued, and the stop ends it at once.
    const [s] = await sqlAsUser(user.id, `select * from cogo.create_sandbox('{"requirements": {"kind": "${kind}-sbx"}}'::jsonb)`);
    await sqlAsUser(user.id, `select cogo.stop_sandbox('${s!.id}')`);
    taskIds.push(s!.initTaskId);
  });

  it("every stored event of these tasks parses strictly, and together they cover every task event type", async () => {
    await waitFor(
      async () => {
        const [r] = await sql<{ n: number }[]>`select count(*)::int as n from public.tasks where id in ${sql(taskIds)} and not (status::text = any(${FINAL}))`;
        return r!.n === 0 || null;
      },
      "every task to end",
      30_000,
    );
    const rows = await sql<Row[]>`select task_id, seq, type, data from public.task_events where task_id in ${sql(taskIds)} order by task_id, seq`;
    expect(rows.length).toBeGreaterThan(50);
    expect(misfits(rows, checkTaskEvent)).toEqual([]);
    expect(new Set(rows.map((r) => r.type))).toEqual(new Set(TASK_EVENT_TYPES));
  });

  it("so does every task and plan event in the database (what earlier test files made the system write)", async () => {
    const tasks = await sql<Row[]>`select task_id, seq, type, data from public.task_events order by task_id, seq`;
    const plans = await sql<Row[]>`select plan_id, seq, type, data from public.plan_events order by plan_id, seq`;
    expect(misfits(tasks, checkTaskEvent)).toEqual([]);
    expect(misfits(plans, checkPlanEvent)).toEqual([]);
  });
});
