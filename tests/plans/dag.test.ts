// Plans as DAGs: release by the database when dependencies succeed, failure stops dependents,
// the shared workspace crosses workers, the plan topic, validation and tenancy.
import { describe, expect, it } from "vitest";
import type { PlanEventMessage } from "../../sdk/index.ts";
import { api, newUser, sql, startWorker, uniqueKind, waitFor } from "../helpers/env.ts";

describe("plans", () => {
  it("runs steps in dependency order, across workers, sharing the workspace; the plan topic streams status and step k of n", async () => {
    const [kindA, kindB] = [uniqueKind("plana"), uniqueKind("planb")];
    const [wa, wb] = [await startWorker({ kind: kindA }), await startWorker({ kind: kindB })];
    const user = await newUser();
    const events: PlanEventMessage[] = [];
    const plan = await user.sandbox.createPlan(
      {
        name: "three steps",
        files: [{ path: "src/in.txt", content: "seed\n" }],
        steps: [
          { name: "generate", command: "mkdir -p gen && cat src/in.txt > gen/a.txt && echo made >> gen/a.txt", requirements: { kind: kindA } },
          { name: "build", command: "cat gen/a.txt > out.txt && echo built >> out.txt && rm src/in.txt", requirements: { kind: kindB } },
          { name: "test", command: "cat out.txt && test ! -e src/in.txt", requirements: { kind: kindA } },
        ],
      },
      (e) => events.push(e),
    );
    const done = await plan.wait();
    expect(done.status, done.summary.text).toBe("succeeded");
    expect(done.summary).toMatchObject({ total: 3, passed: ["generate", "build", "test"], failed: [], stopped: [] });
    expect(done.steps.map((s) => s.dependsOn)).toEqual([[], ["generate"], ["build"]]);
    const rows = await sql<{ step: string; workerId: string; claimedAt: Date; finishedAt: Date }[]>`
      select step, worker_id, claimed_at, finished_at from public.tasks where plan_id = ${plan.planId} order by claimed_at`;
    expect(rows.map((r) => r.step)).toEqual(["generate", "build", "test"]);
    expect(rows[1]!.workerId).toBe(wb.workerId);
    expect(rows[0]!.workerId).toBe(wa.workerId);
    // Each step was claimed only after its dependency finished.
    expect(rows[1]!.claimedAt.getTime()).toBeGreaterThanOrEqual(rows[0]!.finishedAt.getTime());
    expect(rows[2]!.claimedAt.getTime()).toBeGreaterThanOrEqual(rows[1]!.finishedAt.getTime());
    const testTask = await user.sandbox.attach(done.steps[2]!.taskId!);
    expect((await testTask.result()).stdout).toBe("seed\nmade\nbuilt\n");
    // The workspace now holds what the steps produced, and not what build deleted.
    const files = await user.sandbox.listFiles(done.workspaceId);
    expect(files.files.map((f) => f.path)).toEqual(["gen/a.txt", "out.txt"]);
    expect((await user.sandbox.readFile(done.workspaceId, "out.txt")).content).toBe("seed\nmade\nbuilt\n");

    await waitFor(() => events.some((e) => e.type === "plan_status" && e.data.status === "succeeded"), "plan_status succeeded over Realtime");
    expect(events.map((e) => e.seq)).toEqual(events.map((_, i) => i + 1));
    const progress = events.filter((e) => e.type === "progress_update").map((e) => e.data);
    expect(progress).toContainEqual(expect.objectContaining({ message: "step 2 of 3: build", percentage: 33.3, source: "plan" }));
    expect(progress.at(-1)).toMatchObject({ percentage: 100, message: "all 3 steps succeeded" });
    const statuses = events.flatMap((e) => (e.type === "step_status" && e.data.step === "build" ? [e.data.status] : []));
    expect(statuses).toEqual(["queued", "running", "succeeded"]);
    // The step's own task topic got the plan-derived progress too.
    const [taskProgress] = await sql<{ data: Record<string, unknown> }[]>`
      select data from public.task_events where task_id = ${done.steps[1]!.taskId} and type = 'progress_update'`;
    expect(taskProgress!.data).toMatchObject({ message: "step 2 of 3: build", stage: "building", source: "plan" });
    await plan.close();
  });

  it("a failed step stops its dependents with the reason; an independent branch still runs", async () => {
    const kind = uniqueKind("planfail");
    await startWorker({ kind });
    const user = await newUser();
    const plan = await user.sandbox.createPlan({
      requirements: { kind },
      steps: [
        { name: "compile", command: "echo broken >&2; exit 3" },
        { name: "link", command: "true" },
        { name: "test", command: "true" },
        { name: "lint", command: "echo fine", dependsOn: [] },
      ],
    });
    const done = await plan.wait();
    expect(done.status).toBe("failed");
    const by = Object.fromEntries(done.steps.map((s) => [s.name, s]));
    expect(by.compile).toMatchObject({ status: "failed", reason: "exited with code 3" });
    expect(by.link).toMatchObject({ status: "stopped", reason: "not run: dependency compile failed (exited with code 3)", taskId: null });
    expect(by.test!.status).toBe("stopped");
    expect(by.lint!.status).toBe("succeeded");
    expect(done.summary.passed).toEqual(["lint"]);
    expect(done.summary.text).toBe("1 of 4 steps passed; compile failed (exited with code 3); not run: link, test");
    expect(done.reason).toBe("compile failed: exited with code 3");
    const [n] = await sql<{ n: number }[]>`select count(*)::int n from public.tasks where plan_id = ${plan.planId}`;
    expect(n!.n).toBe(2);
    const stopped = await sql<{ data: { step: string } }[]>`
      select data from public.plan_events where plan_id = ${plan.planId} and type = 'step_status' and data ->> 'status' = 'stopped' order by seq`;
    expect(stopped.map((e) => e.data.step).sort()).toEqual(["link", "test"]);
    await plan.close();
  });

  it("progress carries an ETA from the owner's earlier runs of the same step", async () => {
    const kind = uniqueKind("eta");
    await startWorker({ kind });
    const user = await newUser();
    const spec = {
      requirements: { kind },
      steps: [
        { name: "build", command: "sleep 0.5" },
        { name: "test", command: "true" },
      ],
    };
    const first = await user.sandbox.createPlan(spec);
    expect((await first.wait()).status).toBe("succeeded");
    const second = await user.sandbox.createPlan(spec);
    expect((await second.wait()).status).toBe("succeeded");
    const progress = async (planId: string) =>
      (
        await sql<{ data: { etaMs: number | null; message: string } }[]>`
        select data from public.plan_events where plan_id = ${planId} and type = 'progress_update' order by seq`
      ).map((r) => r.data);
    expect((await progress(first.planId))[0]).toMatchObject({ message: "step 1 of 2: build", etaMs: null });
    const eta = (await progress(second.planId))[0]!;
    expect(eta.message).toBe("step 1 of 2: build");
    expect(eta.etaMs).toBeGreaterThanOrEqual(450);
    await first.close();
    await second.close();
  });

  it("POST /execute with steps makes a plan; without, a task", async () => {
    const user = await newUser();
    const kind = uniqueKind("nobody");
    const p = await api("POST", "/execute", { token: user.token, body: { steps: [{ name: "only", command: "true" }], requirements: { kind } } });
    expect(p.status).toBe(202);
    expect(p.body).toMatchObject({ planId: expect.any(String), status: "running", topic: `plan:${p.body.planId}` });
    expect(p.body.steps[0]).toMatchObject({ name: "only", status: "queued", requirements: { kind, labels: [] } });
    const t = await api("POST", "/execute", { token: user.token, body: { command: "true", requirements: { kind } } });
    expect(t.status).toBe(202);
    expect(t.body.taskId).toEqual(expect.any(String));
    await api("DELETE", `/plans/${p.body.planId}`, { token: user.token });
    await api("DELETE", `/tasks/${t.body.taskId}`, { token: user.token });
  });

  it("a repeated idempotency key returns the same plan, also when the requests race", async () => {
    const user = await newUser();
    const body = { steps: [{ name: "a", command: "true" }], requirements: { kind: uniqueKind("nobody") } };
    const racing = await Promise.all([1, 2, 3].map(() => api("POST", "/plans", { token: user.token, body, headers: { "idempotency-key": "plan-key-1" } })));
    expect(racing.map((r) => r.status)).toEqual([202, 202, 202]);
    expect(new Set(racing.map((r) => r.body.planId)).size).toBe(1);
    const again = await api("POST", "/execute", { token: user.token, body: { ...body, idempotencyKey: "plan-key-1" } });
    expect(again.body.planId).toBe(racing[0]!.body.planId);
    const [n] = await sql<{ n: number }[]>`select count(*)::int n from public.plans where owner = ${user.id}`;
    expect(n!.n).toBe(1);
    await api("DELETE", `/plans/${again.body.planId}`, { token: user.token });
  });

  it("refuses bad plans with the field named, and writes nothing", async () => {
    const user = await newUser();
    const [before] = await sql<{ n: number }[]>`select count(*)::int n from public.plans`;
    const bad: [unknown, number, RegExp][] = [
      [{ steps: [] }, 400, /steps: Too small/i],
      [
        {
          steps: [
            { name: "a", command: "x", dependsOn: ["b"] },
            { name: "b", command: "y" },
          ],
        },
        400,
        /steps: dependencies form a cycle among a, b/,
      ],
      [
        {
          steps: [
            { name: "a", command: "x" },
            { name: "a", command: "y" },
          ],
        },
        400,
        /steps\.1\.name: step name a is used twice/,
      ],
      [{ steps: [{ name: "a", command: "x", dependsOn: ["zz"] }] }, 400, /steps\.0\.dependsOn: step a depends on zz/],
      [{ steps: [{ name: "a", command: "x", dependsOn: ["a"] }] }, 400, /depends on itself/],
      [{ steps: [{ name: "a" }] }, 400, /steps\.0\.command: give exactly one of command/],
      [{ steps: [{ name: "a b", command: "x" }] }, 400, /steps\.0\.name/],
      [{ steps: [{ name: "a", command: "x", inputs: ["../etc/*"] }] }, 400, /steps\.0\.inputs\.0/],
      [{ steps: [{ name: "a", command: "x" }], files: [{ path: "/etc/passwd", content: "" }] }, 400, /files\.0\.path.*absolute/],
      [{ steps: [{ name: "a", command: "x" }], workspaceId: "00000000-0000-4000-8000-000000000000" }, 404, /workspaceId: no workspace/],
    ];
    for (const [body, status, message] of bad) {
      const r = await api("POST", "/plans", { token: user.token, body });
      expect(r.status, JSON.stringify(body)).toBe(status);
      expect(r.body.error.message).toMatch(message);
    }
    const [after] = await sql<{ n: number }[]>`select count(*)::int n from public.plans`;
    expect(after!.n).toBe(before!.n);
  });

  it("another tenant can neither read, cancel nor follow a plan, nor touch its files", async () => {
    const owner = await newUser();
    const other = await newUser();
    const created = await api("POST", "/plans", {
      token: owner.token,
      body: { steps: [{ name: "a", command: "true" }], files: [{ path: "x.txt", content: "x" }], requirements: { kind: uniqueKind("nobody") } },
    });
    const { planId, workspaceId } = created.body;
    expect((await api("GET", `/plans/${planId}`, { token: other.token })).status).toBe(404);
    expect((await api("DELETE", `/plans/${planId}`, { token: other.token })).status).toBe(404);
    expect((await api("GET", `/plans/${planId}/events`, { token: other.token })).status).toBe(404);
    expect((await api("GET", `/files/x.txt?workspace=${workspaceId}`, { token: other.token })).status).toBe(404);
    expect((await api("POST", "/files", { token: other.token, body: { workspaceId, files: [{ path: "x.txt", content: "y" }] } })).status).toBe(404);
    expect((await api("POST", "/plans", { token: other.token, body: { workspaceId, steps: [{ name: "a", command: "true" }] } })).status).toBe(404);
    const channel = other.supabase.channel(`plan:${planId}`, { config: { private: true } });
    const outcome = await new Promise<string>((resolve) => channel.subscribe((s, err) => s !== "CLOSED" && resolve(err?.message ?? s)));
    expect(outcome).toMatch(/Unauthorized/);
    await other.supabase.removeChannel(channel);
    expect((await api("GET", "/plans/not-a-uuid", { token: owner.token })).status).toBe(400);
    expect((await owner.sandbox.listPlans()).map((p) => p.id)).toEqual([planId]);
    expect(await other.sandbox.listPlans()).toEqual([]);
    expect((await api("GET", "/plans?limit=0", { token: owner.token })).body.error.message).toMatch(/^limit: /);
    // The owner joins the private topic and gets the broadcast itself (no HTTP replay involved).
    const mine = owner.supabase.channel(`plan:${planId}`, { config: { private: true } });
    const got: { event: string; payload: any }[] = [];
    mine.on("broadcast", { event: "*" }, (m) => got.push(m as never));
    await new Promise<void>((resolve, reject) => mine.subscribe((s, err) => (s === "SUBSCRIBED" ? resolve() : s !== "CLOSED" && reject(err ?? new Error(s)))));
    await api("DELETE", `/plans/${planId}`, { token: owner.token });
    await waitFor(() => got.some((m) => m.event === "plan_status" && m.payload.data.status === "cancelled"), "plan_status over Realtime", 10_000);
    // Broadcasts of one transaction need not arrive in the order written: wait for the step's too.
    await waitFor(() => got.some((m) => m.event === "step_status"), "step_status over Realtime", 10_000);
    expect(got.find((m) => m.event === "step_status")?.payload).toMatchObject({ planId, type: "step_status", data: { step: "a", status: "cancelled" } });
    await owner.supabase.removeChannel(mine);
  });
});
