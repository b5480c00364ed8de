// Issue 16, found #3: internal tasks are the system's, marked by it (tasks.internal), never by a name
// a user picks. A user plan step `analysis-clone` of kind `analysis` used to be run as the analysis
// clone step; its "not an analysis" CG409 looked like a lost lease, so the task was handed back
// forever (attempt 483 of 3, cancel ignored, both analysis slots held). Now reserved names are a
// 400 (and refused in SQL), the worker dispatches on the marker, and every hand-back respects
// maxAttempts and a pending cancel.
import type { Sql } from "postgres";
import { describe, expect, it } from "vitest";
import type { TaskRow } from "../../functions/_shared/views.ts";
import { Queue } from "../../worker/queue.ts";
import { api, newUser, sql, stack, startWorker, uniqueKind, waitFor } from "../helpers/env.ts";

/** Runs fn in a transaction as `authenticated` with the user's claims, as PostgREST or our function would. */
function asUser<T>(userId: string, fn: (tx: Sql) => Promise<T>): Promise<T> {
  return sql.begin(async (tx) => {
    await tx`select set_config('role', 'authenticated', true), set_config('request.jwt.claims', ${JSON.stringify({ sub: userId, role: "authenticated" })}, true)`;
    return await fn(tx as unknown as Sql);
  }) as Promise<T>;
}

async function writtenBy(userId: string) {
  const [row] = await sql<{ tasks: number; plans: number; workspaces: number }[]>`
    select (select count(*)::int from public.tasks where owner = ${userId}) as tasks,
           (select count(*)::int from public.plans where owner = ${userId}) as plans,
           (select count(*)::int from public.workspaces where owner = ${userId}) as workspaces`;
  return row!;
}

async function finalTask(id: string, timeoutMs = 30_000) {
  return await waitFor(
    async () => {
      const [t] = await sql<TaskRow[]>`select * from public.tasks where id = ${id}`;
      return t && ["succeeded", "failed", "cancelled", "timed_out"].includes(t.status) ? t : undefined;
    },
    `task ${id} to end`,
    timeoutMs,
    100,
  );
}

/**
 * Holds the worker's row so its heartbeats hang (a blackholed heartbeat connection): it stops its
 * tasks at 70 % of a lease and hands them back, while claims and releases go on, so the same task
 * is claimed and handed back again and again. FOR NO KEY UPDATE lets claims' foreign-key checks pass.
 */
async function stallHeartbeats(workerId: string): Promise<() => Promise<void>> {
  const conn = await sql.reserve();
  await conn`begin`;
  await conn`select 1 from public.workers where id = ${workerId} for no key update`;
  return async () => {
    await conn`rollback`;
    conn.release();
  };
}

describe("reserved kinds and step names", () => {
  it("the reported spoof (plan step analysis-clone of kind analysis) and its variants are 400s naming what is reserved; nothing is written", async () => {
    const user = await newUser();
    const refused: [string, string, unknown, RegExp][] = [
      [
        "the reported spoof",
        "/plans",
        { steps: [{ name: "analysis-clone", command: "true", requirements: { kind: "analysis" } }] },
        /steps\.0\.name: .*"analysis-".* reserved.*steps\.0\.requirements\.kind: .*"analysis" is reserved/,
      ],
      [
        "a step of kind analysis",
        "/plans",
        { steps: [{ name: "build", command: "true", requirements: { kind: "analysis" } }] },
        /steps\.0\.requirements\.kind: .*"analysis" is reserved/,
      ],
      ["a plan's requirements", "/plans", { requirements: { kind: "analysis" }, steps: [{ name: "build", command: "true" }] }, /requirements\.kind: .*"analysis" is reserved/],
      [
        "a reserved step name of kind basic",
        "/execute",
        {
          steps: [
            { name: "build", command: "true" },
            { name: "Analysis-Batch", command: "true" },
          ],
        },
        /steps\.1\.name: .*"analysis-".* reserved/,
      ],
      ["a single task of kind analysis", "/execute", { command: "true", requirements: { kind: "analysis" } }, /requirements\.kind: .*"analysis" is reserved/],
    ];
    for (const [what, route, body, message] of refused) {
      const res = await api("POST", route, { token: user.token, body });
      expect(res.status, what).toBe(400);
      expect(res.body.error, what).toMatchObject({ code: "invalid_request", message: expect.stringMatching(message) });
    }
    expect(await writtenBy(user.id)).toEqual({ tasks: 0, plans: 0, workspaces: 0 });
  });

  it("SQL refuses them too: the functions the API calls, called directly as the user, and the tables", async () => {
    const user = await newUser();
    const refused: [string, unknown[], RegExp][] = [
      ["select cogo.enqueue_task($1)", [{ command: "true", requirements: { kind: "analysis" } }], /requirements\.kind: "analysis" is reserved/],
      ["select cogo.enqueue_task($1)", [{ command: "true", step: "analysis-clone" }], /step: step names starting with "analysis-" are reserved/],
      [
        "select cogo.create_plan($1)",
        [{ steps: [{ name: "analysis-clone", dependsOn: [], spec: { command: "true" } }] }],
        /steps\.0\.name: step names starting with "analysis-" are reserved/,
      ],
      // The second step waits for the first, so its task would only be made later: refused now.
      [
        "select cogo.create_plan($1)",
        [
          {
            steps: [
              { name: "a", dependsOn: [], spec: { command: "true" } },
              { name: "b", dependsOn: ["a"], spec: { command: "true", requirements: { kind: "analysis", labels: [] } } },
            ],
          },
        ],
        /steps\.1\.requirements\.kind: "analysis" is reserved/,
      ],
      ["insert into public.tasks (owner, command, internal) values (auth.uid(), 'true', 'analysis-clone')", [], /permission denied/],
      ["update public.tasks set internal = 'analysis-clone' where owner = auth.uid()", [], /permission denied/],
    ];
    for (const [statement, params, error] of refused) {
      await expect(
        asUser(user.id, (tx) => tx.unsafe(statement, params as never[])),
        statement,
      ).rejects.toThrow(error);
    }
    expect(await writtenBy(user.id)).toEqual({ tasks: 0, plans: 0, workspaces: 0 });
    // The service key cannot name them either: only the analysis functions make internal tasks.
    await expect(api("POST", "/execute", { token: stack.serviceRoleKey, body: { command: "true", requirements: { kind: "analysis" } } })).resolves.toMatchObject({ status: 400 });
  });

  it("an analysis worker runs a task merely named like the clone step as an ordinary task, once", async () => {
    const user = await newUser();
    // A row as a spoof made before names were reserved: kind analysis, step analysis-clone, no marker.
    const id = await sql.begin(async (tx) => {
      const [t] = await tx<{ id: string }[]>`
        insert into public.tasks (owner, step, command, required_kind, max_attempts)
        values (${user.id}, 'spoof', 'echo ran as a user task', ${uniqueKind("held")}, 3) returning id`;
      await tx`update public.tasks set required_kind = 'analysis', step = 'analysis-clone' where id = ${t!.id}`;
      return t!.id;
    });
    const worker = await startWorker({ kind: "analysis", concurrency: 2 });
    try {
      const t = await finalTask(id);
      // Before, it was taken for the clone step and handed back for ever (attempt 483 of 3).
      expect(t).toMatchObject({ status: "succeeded", internal: null, reason: "exited with code 0" });
      expect(t.attempt).toBeLessThanOrEqual(t.maxAttempts);
      const out = await api("GET", `/tasks/${id}/output?after=0`, { token: user.token });
      expect(
        out.body.chunks
          .filter((c: { stream: string }) => c.stream === "stdout")
          .map((c: { data: string }) => c.data)
          .join(""),
      ).toBe("ran as a user task\n");
    } finally {
      await worker.stop(0); // the next test claims the analysis queue itself
    }
  });

  it("a clone step retried after an earlier attempt had planned its analysis finishes it without cloning again", async () => {
    const user = await newUser();
    const [a] = await asUser(
      user.id,
      (tx) => tx<{ id: string; cloneTaskId: string }[]>`
      select id, clone_task_id from cogo.start_analysis(${tx.json({ source: "https://example.invalid/never-cloned.git" })})`,
    );
    const q = new Queue(sql);
    const w = await q.register({ name: "first-attempt", kind: "analysis", labels: [], capacity: 1, leaseMs: 60_000, version: "test", host: {} });
    const [t] = await q.claim(w.id, 1);
    expect(t).toMatchObject({ id: a!.cloneTaskId, internal: "analysis-clone", attempt: 1 });
    // The first attempt lists an empty tree (nothing to parse: the analysis waits to be finalised)...
    await sql`select cogo.begin_analysis_clone(${t!.id}, 1, ${w.id})`;
    await sql`select cogo.plan_analysis(${t!.id}, 1, ${w.id}, 'abc123', '[]'::jsonb, 0, 1048576, 200)`;
    // ...and its lease runs out before it finishes: the lease rescuer re-queues it (attempt 2 of 3).
    await sql`update public.tasks set lease_expires_at = now() where id = ${t!.id}`;
    await q.requeueExpired();
    await q.setOffline(w.id);
    await startWorker({ kind: "analysis", concurrency: 1 });
    const done = await finalTask(t!.id);
    expect(done).toMatchObject({ status: "succeeded", attempt: 2, reason: "listed and planned by an earlier attempt (analysis finalizing)" });
    const [analysis] = await sql<{ phase: string }[]>`select phase from public.analyses where id = ${a!.id}`;
    expect(analysis!.phase).toBe("completed");
  });
});

describe("hand-backs respect maxAttempts and a pending cancel", () => {
  it("SQL: the last attempt handed back fails the task saying the attempts ran out; a cancel asked meanwhile ends it cancelled", async () => {
    const kind = uniqueKind("handback");
    const user = await newUser();
    const q = new Queue(sql);
    const w = await q.register({ name: "handback", kind, labels: [], capacity: 1, leaseMs: 60_000, version: "test", host: {} });

    const last = await api("POST", "/execute", { token: user.token, body: { command: "true", maxAttempts: 2, requirements: { kind } } });
    for (let attempt = 1; attempt <= 2; attempt++) {
      const [t] = await q.claim(w.id, 1);
      expect(t).toMatchObject({ id: last.body.taskId, attempt });
      await q.release({ taskId: t!.id, attempt, workerId: w.id }, "worker lost contact with the database; re-queued");
    }
    expect(await q.claim(w.id, 1)).toEqual([]);
    const failed = await api("GET", `/tasks/${last.body.taskId}`, { token: user.token });
    expect(failed.body).toMatchObject({
      status: "failed",
      attempt: 2,
      maxAttempts: 2,
      reason: "attempt 2 of 2 handed back (worker lost contact with the database); no attempts left",
    });

    const cancelled = await api("POST", "/execute", { token: user.token, body: { command: "true", maxAttempts: 5, requirements: { kind } } });
    const [t] = await q.claim(w.id, 1);
    expect((await api("DELETE", `/tasks/${t!.id}`, { token: user.token })).body).toMatchObject({ status: "claimed", cancelRequested: true });
    await q.release({ taskId: t!.id, attempt: 1, workerId: w.id }, "worker shut down before the task started; re-queued");
    expect(await q.claim(w.id, 1)).toEqual([]);
    const after = await api("GET", `/tasks/${cancelled.body.taskId}`, { token: user.token });
    expect(after.body).toMatchObject({
      status: "cancelled",
      attempt: 1,
      reason: "cancelled while its worker handed it back (worker shut down before the task started)",
    });
    await q.setOffline(w.id);
  });

  it("a worker whose heartbeats hang claims nothing: its task waits queued for a healthy worker, never looping through attempts", async () => {
    const kind = uniqueKind("stall");
    const user = await newUser();
    const stalled = await startWorker({ kind, concurrency: 1, leaseMs: 2000 });
    const resume = await stallHeartbeats(stalled.workerId!);
    try {
      await new Promise((res) => setTimeout(res, 2000)); // past 70 % of a lease without a renewal
      const r = await api("POST", "/execute", { token: user.token, body: { command: "echo done", maxAttempts: 3, requirements: { kind } } });
      // Five leases' worth of time: a worker that claimed while its renewals hung would have
      // taken the task and handed it back again and again (it used to end at attempt 3 of 3).
      await new Promise((res) => setTimeout(res, 10_000));
      const [waiting] = await sql<{ status: string; attempt: number }[]>`select status, attempt from public.tasks where id = ${r.body.taskId}`;
      expect(waiting).toMatchObject({ status: "queued", attempt: 0 });
      await startWorker({ kind, concurrency: 1 });
      const t = await finalTask(r.body.taskId);
      expect(t).toMatchObject({ status: "succeeded", attempt: 1, maxAttempts: 3 });
    } finally {
      await resume();
    }
  });

  it("a cancel of a task waiting behind a stalled worker ends it cancelled at once", async () => {
    const kind = uniqueKind("stall-cancel");
    const user = await newUser();
    const stalled = await startWorker({ kind, concurrency: 1, leaseMs: 2000 });
    const resume = await stallHeartbeats(stalled.workerId!);
    try {
      await new Promise((res) => setTimeout(res, 2000)); // past 70 % of a lease: the worker has stopped claiming
      const r = await api("POST", "/execute", { token: user.token, body: { command: "sleep 30", maxAttempts: 20, requirements: { kind } } });
      await new Promise((res) => setTimeout(res, 2000));
      expect((await api("DELETE", `/tasks/${r.body.taskId}`, { token: user.token })).status).toBe(202);
      const t = await finalTask(r.body.taskId, 15_000);
      expect(t).toMatchObject({ status: "cancelled", attempt: 0, reason: "cancelled before it started" });
    } finally {
      await resume();
    }
  });
});
