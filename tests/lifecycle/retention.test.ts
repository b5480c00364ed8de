// Retention and tasks of unserved kinds (issue 18, migrations/20261206000300_retention.sql,
// worker/maintenance/retention.ts): ended tasks' data goes after the policy's age and the API says
// so, recent and active tasks keep theirs, analysis blobs go only when nothing references them,
// old realtime.messages rows go, claims do not wait for a purge, one runner at a time; a queued task
// whose kind nobody served fails with no_worker_for_kind, and /health turns "degraded" only for
// the tenant waiting.
import { randomBytes, randomUUID } from "node:crypto";
import { afterAll, describe, expect, it } from "vitest";
import { TaskEventSchema } from "../../functions/_shared/events.ts";
import { MAINTENANCE_LOCK_KEY, Maintenance, type MaintenancePass } from "../../worker/maintenance/retention.ts";
import { api, newUser, sql, stack, startWorker, uniqueKind } from "../helpers/env.ts";
import { waitFor } from "../helpers/wait.ts";

const logs: string[] = [];
const runner = (batch = 1000) => new Maintenance(sql, { intervalMs: 0, batch }, (l) => logs.push(l));
/** A pass of a fresh runner; fails the test when another runner held the lock. */
async function pass(batch?: number): Promise<MaintenancePass> {
  const r = await runner(batch).runOnce();
  expect(r, logs.join("\n")).not.toBeNull();
  return r!;
}

const counts = async (id: string) =>
  (
    await sql<{ output: number; events: number; stdin: number; artifacts: number }[]>`
    select (select count(*)::int from public.task_output where task_id = ${id}) as output,
           (select count(*)::int from public.task_events where task_id = ${id}) as events,
           (select count(*)::int from public.task_stdin where task_id = ${id}) as stdin,
           (select count(*)::int from public.task_artifacts where task_id = ${id}) as artifacts`
  )[0]!;

const backdateFinished = (id: string, days: number) =>
  sql`update public.tasks set finished_at = now() - make_interval(days => ${days}), created_at = now() - make_interval(days => ${days + 1})
       where id = ${id}`;

const setPolicy = (p: Record<string, unknown>) => sql`select cogo.set_retention_policy(${sql.json(p as never)})`;
afterAll(() => setPolicy({ taskDataAfter: null, analysisAfter: null, realtimeMessagesAfter: null, noWorkerFailAfter: null }));

describe("retention", () => {
  it("deletes an ended task's output, events, stdin and artifacts after 7 days; recent, running and queued tasks keep theirs; the API says purged", async () => {
    const kind = uniqueKind("ret");
    await startWorker({ kind, concurrency: 4, maintenanceIntervalMs: 0 });
    const user = await newUser({ maxRunning: 100 });
    const spec = { command: "cat; echo made > out.txt; echo to-stderr >&2", stdin: "pipe" as const, artifacts: ["out.txt"], requirements: { kind } };
    const old = await user.sandbox.execute(spec);
    const recent = await user.sandbox.execute(spec);
    for (const h of [old, recent]) {
      await h.write("hello\n");
      await h.closeStdin();
      expect(await h.result()).toMatchObject({ status: "succeeded", stdout: "hello\n" });
    }
    const running = await user.sandbox.execute({ command: "echo started; sleep 60", requirements: { kind } });
    await waitFor(async () => (await counts(running.taskId)).output > 0 || undefined, "running task's output");
    const queued = await user.sandbox.execute({ command: "echo never", requirements: { kind: uniqueKind("ret-unserved") } });
    // Old as can be, but not ended: never purged. (Only created_at: the unserved-kind wait counts
    // from when it became claimable, so this pass does not fail it either.)
    await sql`update public.tasks set created_at = now() - interval '30 days', started_at = now() - interval '30 days' where id in ${sql([running.taskId, queued.taskId])}`;
    await backdateFinished(old.taskId, 8);
    await backdateFinished(recent.taskId, 6);
    const before = { old: await counts(old.taskId), recent: await counts(recent.taskId), running: await counts(running.taskId) };
    expect(before.old).toMatchObject({ output: expect.any(Number), stdin: 2, artifacts: 1 });
    expect(before.old.output).toBeGreaterThanOrEqual(2);
    expect(before.old.events).toBeGreaterThanOrEqual(3);

    const r = await pass();
    expect(r.deleted.tasks).toBeGreaterThanOrEqual(1);
    expect(await counts(old.taskId)).toEqual({ output: 0, events: 0, stdin: 0, artifacts: 0 });
    expect(await counts(recent.taskId)).toEqual(before.recent);
    expect((await counts(running.taskId)).output).toBe(before.running.output);
    const rows = await sql<{ id: string; status: string; purged: boolean; files: unknown }[]>`
      select id, status, purged_at is not null as purged, files from public.tasks where id in ${sql([old.taskId, recent.taskId, running.taskId, queued.taskId])}`;
    const byId = new Map(rows.map((row) => [row.id, row]));
    expect(byId.get(old.taskId)).toMatchObject({ status: "succeeded", purged: true, files: [] });
    expect(byId.get(recent.taskId)).toMatchObject({ status: "succeeded", purged: false });
    expect(byId.get(running.taskId)).toMatchObject({ status: "running", purged: false });
    expect(byId.get(queued.taskId)).toMatchObject({ status: "queued", purged: false });

    // The API: the row stays, and every data route says what happened instead of showing nothing.
    const view = await api("GET", `/tasks/${old.taskId}`, { token: user.token });
    expect(view.body).toMatchObject({ status: "succeeded", exitCode: 0, purgedAt: expect.any(String) });
    const out = await api("GET", `/tasks/${old.taskId}/output`, { token: user.token });
    expect(out.status).toBe(200);
    expect(out.body).toMatchObject({
      chunks: [],
      complete: true,
      purged: { at: view.body.purgedAt, message: expect.stringMatching(/deleted 8 days after it finished \(retention\)/) },
    });
    const events = await api("GET", `/tasks/${old.taskId}/events`, { token: user.token });
    expect(events.body).toMatchObject({ events: [], purged: { at: view.body.purgedAt } });
    const artifacts = await api("GET", `/tasks/${old.taskId}/artifacts`, { token: user.token });
    expect(artifacts.body).toMatchObject({ artifacts: [], purged: { at: view.body.purgedAt } });
    const artifact = await api("GET", `/tasks/${old.taskId}/artifacts/out.txt`, { token: user.token });
    expect(artifact.status).toBe(410);
    expect(artifact.body.error).toMatchObject({ code: "artifact_purged" });
    // The recent task's routes are as before.
    const recentOut = await api("GET", `/tasks/${recent.taskId}/output`, { token: user.token });
    expect(recentOut.body).toMatchObject({ complete: true, purged: null });
    expect(recentOut.body.chunks.map((c: { data: string }) => c.data).join("")).toContain("hello\n");
    // The SDK follows a purged task to its end (no output to wait for) and sees why.
    const attached = await user.sandbox.attach(old.taskId);
    const result = await attached.result();
    expect(result).toMatchObject({ status: "succeeded", stdout: "" });
    expect(result.task.purgedAt).toBe(view.body.purgedAt);
    await running.cancel();
    await sql`select cogo.cancel_task(${queued.taskId})`;
  });

  it("analysis blobs go only when no analysis of the repository references them, never while one is in progress", async () => {
    const hash = () => randomBytes(20).toString("hex");
    const [b1, b2, b3, b4, c1] = [hash(), hash(), hash(), hash(), hash()];
    const [repo, busyRepo] = [randomUUID(), randomUUID()];
    const owner = randomUUID();
    await sql`insert into public.analysis_repos (id, owner, source) values (${repo}, ${owner}, ${`workspace:${repo}`}), (${busyRepo}, ${owner}, ${`workspace:${busyRepo}`})`;
    const [older, newest, failed, busyOld, busyNow] = [randomUUID(), randomUUID(), randomUUID(), randomUUID(), randomUUID()];
    await sql`insert into public.analyses (id, owner, repo_id, source, phase, finished_at) values
      (${older}, ${owner}, ${repo}, 'x', 'completed', now() - interval '10 days'),
      (${newest}, ${owner}, ${repo}, 'x', 'completed', now() - interval '9 days'),
      (${failed}, ${owner}, ${repo}, 'x', 'failed', now() - interval '8 days'),
      (${busyOld}, ${owner}, ${busyRepo}, 'x', 'failed', now() - interval '8 days'),
      (${busyNow}, ${owner}, ${busyRepo}, 'x', 'cloning', null)`;
    // b1: the older analysis only; b2: both; b3: the newest only; b4: nobody (a failed clone's);
    // c1: nobody, in a repository whose analysis is cloning now.
    await sql`insert into public.analysis_blobs (repo_id, hash, size, content)
      select ${repo}::uuid, h, 1, 'x' from unnest(${[b1, b2, b3, b4]}::text[]) h
      union all select ${busyRepo}::uuid, ${c1}, 1, 'x'`;
    await sql`insert into public.analysis_files (analysis_id, path, hash, size) values
      (${older}, 'a', ${b1}, 1), (${older}, 'b', ${b2}, 1), (${newest}, 'b', ${b2}, 1), (${newest}, 'c', ${b3}, 1)`;
    await sql`insert into public.analysis_imports (analysis_id, path, specifier, kind, line) values (${older}, 'a', './b', 'import', 1)`;

    await pass();
    const purged = await sql<{ id: string }[]>`select id from public.analyses where purged_at is not null and id in ${sql([older, newest, failed, busyOld, busyNow])}`;
    // The newest completed analysis is the base of the next one: kept however old.
    expect(purged.map((r) => r.id).sort()).toEqual([older, failed, busyOld].sort());
    expect((await sql`select 1 from public.analysis_files where analysis_id = ${older}`).length).toBe(0);
    expect((await sql`select 1 from public.analysis_imports where analysis_id = ${older}`).length).toBe(0);
    expect((await sql`select 1 from public.analysis_files where analysis_id = ${newest}`).length).toBe(2);
    const blobs = await sql<{ hash: string }[]>`select hash from public.analysis_blobs where repo_id in ${sql([repo, busyRepo])}`;
    expect(blobs.map((b) => b.hash).sort()).toEqual([b2, b3, c1].sort());

    // Once the busy repository's analysis ended (and a pass ran), its orphan goes too.
    await sql`update public.analyses set phase = 'completed', finished_at = now() where id = ${busyNow}`;
    await pass();
    expect((await sql`select 1 from public.analysis_blobs where repo_id = ${busyRepo}`).length).toBe(0);
  });

  it("leaves realtime.messages to Realtime as on hosted, and deletes rows older than the policy's age where it may", async () => {
    await setPolicy({ realtimeMessagesAfter: "20 hours" });
    const [oldId, newId] = [randomUUID(), randomUUID()];
    // Yesterday's and today's partitions always exist (embedded/bootstrap.sql); 22 hours ago is in one of them.
    await sql`insert into realtime.messages (id, topic, extension, payload, event, inserted_at)
      values (${oldId}, 'retention-test', 'broadcast', '{}', 'e', (now() - interval '22 hours')::timestamp),
             (${newId}, 'retention-test', 'broadcast', '{}', 'e', now()::timestamp)`;
    const left = async () => (await sql<{ id: string }[]>`select id from realtime.messages where id in ${sql([oldId, newId])} order by inserted_at`).map((m) => m.id);
    // The purge runs as postgres (its owner), which, as on hosted, may not delete from the table:
    // Realtime's partition drops are what clear it (embedded/bootstrap.sql maintain_partitions).
    expect((await pass()).deleted.realtimeMessages ?? 0).toBe(0); // the step is skipped: null
    expect(await left()).toEqual([oldId, newId]);
    // Where the role may (a database that grants it), old rows go and new ones stay.
    await sql`grant delete on realtime.messages to postgres`;
    try {
      expect((await pass()).deleted.realtimeMessages).toBeGreaterThanOrEqual(1);
    } finally {
      await sql`revoke delete on realtime.messages from postgres`;
    }
    expect(await left()).toEqual([newId]);
    await setPolicy({ realtimeMessagesAfter: null });
    expect((await sql<{ p: Record<string, string> }[]>`select cogo.retention_policy() as p`)[0]!.p).toMatchObject({ realtimeMessagesAfter: "3 days" });
  });

  it("claims go on while a 50k-row purge runs", async () => {
    // 50 ended tasks of 1000 output rows and 200 events each, finished a month ago.
    const ids = await sql<{ id: string }[]>`
      insert into public.tasks (command, status, attempt, required_kind, finished_at, created_at)
      select 'echo bulk', 'succeeded', 1, 'retention-bulk', now() - interval '30 days', now() - interval '31 days'
        from generate_series(1, 50) returning id`;
    const bulk = ids.map((r) => r.id);
    await sql`insert into public.task_output (task_id, seq, attempt, stream, data)
      select t, g, 1, 'stdout', repeat('x', 200) from unnest(${bulk}::uuid[]) t, generate_series(1, 1000) g`;
    await sql`insert into public.task_events (task_id, seq, attempt, type, data)
      select t, g, 1, 'progress_update', '{}' from unnest(${bulk}::uuid[]) t, generate_series(1, 200) g`;

    const kind = uniqueKind("ret-claims");
    await startWorker({ kind, concurrency: 4, maintenanceIntervalMs: 0, pollIntervalMs: 1000 });
    const user = await newUser({ maxRunning: 100 });
    /** Queue wait (claimed_at − created_at) of one task, run to its end. */
    async function claimWait(): Promise<number> {
      const h = await user.sandbox.execute({ command: "true", requirements: { kind } });
      await h.result();
      const [row] = await sql<{ ms: number }[]>`select (extract(epoch from claimed_at - created_at) * 1000)::float8 as ms from public.tasks where id = ${h.taskId}`;
      return row!.ms;
    }
    const baseline: number[] = [];
    for (let i = 0; i < 5; i++) baseline.push(await claimWait());

    // Small batches so the purge takes many transactions and claims interleave with them.
    const started = performance.now();
    let done = false;
    const purge = runner(500)
      .runOnce()
      .finally(() => (done = true));
    const during: number[] = [];
    while (!done) during.push(await claimWait());
    const r = (await purge)!;
    const purgeMs = performance.now() - started;
    expect(r).not.toBeNull();
    expect(r.deleted.output).toBeGreaterThanOrEqual(50_000);
    expect(r.deleted.events).toBeGreaterThanOrEqual(10_000);
    expect((await sql`select 1 from public.task_output where task_id = any(${bulk}::uuid[]) limit 1`).length).toBe(0);
    const stat = (xs: number[]) => {
      const s = [...xs].sort((a, b) => a - b);
      return { n: s.length, p50: Math.round(s[Math.floor(s.length / 2)]!), max: Math.round(s.at(-1)!) };
    };
    console.log(
      `retention: purge of 50k output + 10k event rows took ${Math.round(purgeMs)} ms in ${r.transactions} transactions; claim wait baseline ${JSON.stringify(stat(baseline))} ms, during the purge ${JSON.stringify(stat(during))} ms`,
    );
    expect(during.length).toBeGreaterThanOrEqual(1);
    // A claim never waits for the purge: no lock of a queued row is taken, transactions are short.
    expect(stat(during).max).toBeLessThan(Math.max(1500, 3 * stat(baseline).max));
  }, 120_000);

  it("one runner at a time: a pass finds the lock held and does nothing", async () => {
    const conn = await sql.reserve();
    try {
      const [held] = await conn<{ ok: boolean }[]>`select pg_try_advisory_lock(${MAINTENANCE_LOCK_KEY.toString()}::bigint) as ok`;
      expect(held!.ok).toBe(true);
      expect(await runner().runOnce()).toBeNull();
      await conn`select pg_advisory_unlock(${MAINTENANCE_LOCK_KEY.toString()}::bigint)`;
    } finally {
      conn.release();
    }
    // Two at once: one does the pass, the other finds it taken.
    const both = await Promise.all([runner().runOnce(), runner().runOnce()]);
    expect(both.filter((p) => p === null).length).toBeLessThanOrEqual(1);
    expect(await runner().runOnce()).not.toBeNull();
  });
});

describe("tasks of a kind no live worker serves", () => {
  it("fail with no_worker_for_kind after the wait; /health is degraded only for their owner", async () => {
    await startWorker({ kind: uniqueKind("ret-live"), maintenanceIntervalMs: 0 }); // a live fleet
    const [owner, other] = [await newUser(), await newUser()];
    const kind = uniqueKind("ret-nobody");
    const task = await owner.sandbox.execute({ command: "echo never", requirements: { kind, labels: ["gpu"] } });
    await new Promise((r) => setTimeout(r, 200));

    const mine = await api("GET", "/health", { token: owner.token });
    expect(mine.body).toMatchObject({ status: "degraded", noWorkerFailAfterMs: 3_600_000 });
    expect(mine.body.queuedWithoutWorker).toContainEqual({ kind, labels: ["gpu"], count: 1 });
    for (const token of [other.token, stack.anonKey]) {
      const h = await api("GET", "/health", { token });
      expect(h.body.status, JSON.stringify(h.body)).toBe("ok");
      expect(h.body.queuedWithoutWorker).not.toContainEqual(expect.objectContaining({ kind }));
    }
    // The operator sees every tenant's, without the fleet being called degraded for it.
    const ops = await api("GET", "/health", { token: stack.serviceRoleKey });
    expect(ops.body.queuedWithoutWorker).toContainEqual({ kind, labels: ["gpu"], count: 1 });

    // Not before the wait (1 hour by default)...
    await pass();
    expect((await owner.sandbox.getTask(task.taskId)).status).toBe("queued");
    // ...and after it.
    await sql`update public.tasks set created_at = now() - interval '61 minutes', updated_at = now() - interval '61 minutes',
                run_after = now() - interval '61 minutes' where id = ${task.taskId}`;
    const r = await pass();
    expect(r.failedUnserved).toBeGreaterThanOrEqual(1);
    const failed = await task.result();
    expect(failed.status).toBe("failed");
    expect(failed.reason).toMatch(/^no_worker_for_kind: no live worker of kind "ret-nobody-[0-9a-f]+" with labels \[gpu\] for 1 h; failed instead of waiting longer$/);
    expect(failed.task.finishedAt).not.toBeNull();
    // The transition's event validates strictly, and the output says why.
    const events = await sql<{ type: string; data: unknown }[]>`select type, data from public.task_events where task_id = ${task.taskId} order by seq`;
    const last = events.at(-1)!;
    expect(TaskEventSchema.parse(last)).toMatchObject({ type: "task_status", data: { status: "failed", previous: "queued" } });
    const out = await api("GET", `/tasks/${task.taskId}/output`, { token: owner.token });
    expect(out.body.chunks).toMatchObject([{ stream: "system", data: expect.stringMatching(/^no_worker_for_kind/) }]);
    expect((await api("GET", "/health", { token: owner.token })).body.status).toBe("ok");
  });

  it("a served kind is not failed: its worker busy, or gone for less than the wait", async () => {
    const busyKind = uniqueKind("ret-busy");
    await startWorker({ kind: busyKind, concurrency: 1, maintenanceIntervalMs: 0 });
    const user = await newUser();
    const running = await user.sandbox.execute({ command: "sleep 30", requirements: { kind: busyKind } });
    await waitFor(async () => (await user.sandbox.getTask(running.taskId)).status === "running" || undefined, "busy worker");
    const waiting = await user.sandbox.execute({ command: "true", requirements: { kind: busyKind } });

    const goneKind = uniqueKind("ret-gone");
    const gone = await startWorker({ kind: goneKind, maintenanceIntervalMs: 0 });
    await gone.stop(0);
    const orphan = await user.sandbox.execute({ command: "true", requirements: { kind: goneKind } });

    await sql`update public.tasks set created_at = now() - interval '2 hours', updated_at = now() - interval '2 hours',
                run_after = now() - interval '2 hours' where id in ${sql([waiting.taskId, orphan.taskId])}`;
    await pass();
    expect((await user.sandbox.getTask(waiting.taskId)).status).toBe("queued");
    // Its worker was heard from within the hour: the kind is served, maybe by a restart.
    expect((await user.sandbox.getTask(orphan.taskId)).status).toBe("queued");

    // A deployment's shorter wait (cogo.set_retention_policy): the gone worker's kind fails now.
    expect((await setPolicy({ noWorkerFailAfter: "1 second" }))[0]).toBeDefined();
    expect((await api("GET", "/health", { token: user.token })).body.noWorkerFailAfterMs).toBe(1000);
    await new Promise((r) => setTimeout(r, 1500));
    await pass();
    expect((await user.sandbox.getTask(orphan.taskId)).status).toBe("failed");
    expect((await user.sandbox.getTask(waiting.taskId)).status).toBe("queued");
    await setPolicy({ noWorkerFailAfter: null });
    await running.cancel();
    await waiting.cancel();
  });

  it("every worker runs the service on its interval: one fails an overdue task without being asked", async () => {
    await startWorker({ kind: uniqueKind("ret-runner"), maintenanceIntervalMs: 300 });
    const user = await newUser();
    const task = await user.sandbox.execute({ command: "true", requirements: { kind: uniqueKind("ret-overdue") } });
    await sql`update public.tasks set created_at = now() - interval '2 hours', updated_at = now() - interval '2 hours',
                run_after = now() - interval '2 hours' where id = ${task.taskId}`;
    const failed = await task.result();
    expect(failed).toMatchObject({ status: "failed", reason: expect.stringMatching(/^no_worker_for_kind: /) });
  });

  it("the policy is the operator's: unknown keys and bad intervals are refused, users may not call it", async () => {
    await expect(setPolicy({ taskDataAfer: "1 day" })).rejects.toThrow(/unknown setting "taskDataAfer"/);
    await expect(setPolicy({ taskDataAfter: "soon" })).rejects.toThrow(/set_retention_policy/);
    await expect(setPolicy({ taskDataAfter: "0 seconds" })).rejects.toThrow(/set_retention_policy/);
    for (const role of ["authenticated", "anon"]) {
      await expect(
        sql.begin(async (tx) => {
          await tx`select set_config('role', ${role}, true)`;
          await tx`select cogo.set_retention_policy('{"taskDataAfter": "1 day"}')`;
        }),
      ).rejects.toThrow(/permission denied/);
    }
  });
});
