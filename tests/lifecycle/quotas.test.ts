// Tenant quotas and rate limits (issue 18): each limit lets a request at the limit through and
// refuses the next one with its named code (429 + Retry-After, or 413), writing nothing; a bucket of
// k lets exactly k of many parallel requests through; the stored-bytes counter follows writes and
// deletes; users cannot touch the limits, buckets or counters; /usage shows the caller's own.
import { randomUUID } from "node:crypto";
import { afterAll, describe, expect, it } from "vitest";
import { api, newUser as newTenant, sql, sqlAsUser, stack, startWorker, uniqueKind } from "../helpers/env.ts";

type User = Awaited<ReturnType<typeof newTenant>>;

// Every tenant made here, so their tasks (queued for kinds no worker serves) end with the file.
const owners: string[] = [];
async function newUser(limits?: Record<string, unknown>): Promise<User> {
  const user = await newTenant(limits);
  owners.push(user.id);
  return user;
}
afterAll(async () => {
  const open = await sql<{ id: string }[]>`
    select id from public.tasks where (owner = any(${owners}) or required_kind like 'q-svc-%') and not (status = any(cogo.final_states()))`;
  for (const { id } of open) await sql`select cogo.cancel_task(${id})`;
});

const count = async (table: "tasks" | "plans" | "analyses", owner: string) =>
  (await sql<{ n: number }[]>`select count(*)::int as n from ${sql("public." + table)} where owner = ${owner}`)[0]!.n;
const fileCount = async (workspace: string) => (await sql<{ n: number }[]>`select count(*)::int as n from public.workspace_files where workspace_id = ${workspace}`)[0]!.n;
const storedBytes = async (owner: string) =>
  Number((await sql<{ n: string | null }[]>`select cogo.stored_bytes(u) as n from cogo.tenant_usage u where owner = ${owner}`)[0]?.n ?? 0);

/** A task no worker runs: it stays queued. */
const execute = (user: User, kind: string, extra: Record<string, unknown> = {}) =>
  api("POST", "/execute", { token: user.token, body: { command: "true", requirements: { kind }, ...extra } });

function expectRateLimited(r: Awaited<ReturnType<typeof api>>, route: string, burst: number) {
  expect(r.status, JSON.stringify(r.body)).toBe(429);
  expect(r.body.error.code).toBe("rate_limited");
  expect(r.body.error.message).toContain(`rate limit for ${route}`);
  expect(r.body.error.message).toContain(`(burst ${burst})`);
  expect(r.body.error.route).toBe(route);
  expect(r.body.error.burst).toBe(burst);
  const retry = r.headers.get("retry-after");
  expect(retry).toMatch(/^[1-9][0-9]*$/);
  expect(r.body.error.retryAfterSeconds).toBe(Number(retry));
}

async function newPlan(user: User, files: { path: string; content: string }[] = []): Promise<{ planId: string; workspaceId: string }> {
  const r = await api("POST", "/plans", { token: user.token, body: { files, steps: [{ name: "s", command: "true", requirements: { kind: uniqueKind("q-plan") } }] } });
  expect(r.status, JSON.stringify(r.body)).toBe(202);
  return { planId: r.body.planId, workspaceId: r.body.workspaceId };
}

describe("rate limits", () => {
  it("/execute: the burst is accepted, the next request is 429 naming the limit, nothing written", async () => {
    const user = await newUser({ executePerSecond: 0.01, executeBurst: 3 });
    const kind = uniqueKind("q-rate");
    for (let i = 0; i < 3; i++) expect((await execute(user, kind)).status).toBe(202);
    const refused = await execute(user, kind);
    expectRateLimited(refused, "/execute", 3);
    expect(refused.body.error.limit).toBe("executePerSecond");
    expect(refused.body.error.message).toMatch(/0\.01 requests per second \(burst 3\) exceeded; retry after \d+ s/);
    expect(await count("tasks", user.id)).toBe(3);
    // Another tenant is not affected.
    const other = await newUser({ executePerSecond: 0.01, executeBurst: 3 });
    expect((await execute(other, kind)).status).toBe(202);
  });

  it("tokens refill at the rate", async () => {
    // One token a second: the refused request must come within 1 s of the first, which a loaded
    // machine keeps (at 5 a second, 200 ms between two requests refilled it under fresh-check --loaded).
    const user = await newUser({ executePerSecond: 1, executeBurst: 1 });
    const kind = uniqueKind("q-refill");
    expect((await execute(user, kind)).status).toBe(202);
    const refused = await execute(user, kind);
    expectRateLimited(refused, "/execute", 1);
    expect(refused.headers.get("retry-after")).toBe("1");
    await new Promise((r) => setTimeout(r, 1100));
    expect((await execute(user, kind)).status).toBe(202);
  });

  it("/plans (and /execute with steps): burst accepted, then 429; no plan, workspace or task written", async () => {
    const user = await newUser({ plansPerSecond: 0.01, plansBurst: 2 });
    await newPlan(user);
    await newPlan(user);
    const refused = await api("POST", "/execute", { token: user.token, body: { steps: [{ name: "s", command: "true", requirements: { kind: uniqueKind("q-plan") } }] } });
    expectRateLimited(refused, "/plans", 2);
    expect(refused.body.error.limit).toBe("plansPerSecond");
    expect(await count("plans", user.id)).toBe(2);
    expect((await sql`select 1 from public.workspaces where owner = ${user.id}`).length).toBe(2);
    expect(await count("tasks", user.id)).toBe(2);
  });

  it("/files writes (POST and DELETE): burst accepted, then 429; the workspace is unchanged", async () => {
    const user = await newUser({ filesPerSecond: 0.01, filesBurst: 2 });
    const { workspaceId } = await newPlan(user, [{ path: "a.txt", content: "a" }]);
    const write = (path: string) => api("POST", "/files", { token: user.token, body: { workspaceId, files: [{ path, content: "x" }] } });
    expect((await write("b.txt")).status).toBe(200);
    expect((await api("DELETE", `/files/a.txt?workspace=${workspaceId}`, { token: user.token })).status).toBe(200);
    expectRateLimited(await write("c.txt"), "/files", 2);
    expectRateLimited(await api("DELETE", `/files/b.txt?workspace=${workspaceId}`, { token: user.token }), "/files", 2);
    const files = await sql<{ path: string }[]>`select path from public.workspace_files where workspace_id = ${workspaceId} order by path`;
    expect(files.map((f) => f.path)).toEqual(["b.txt"]);
  });

  it("/analyze/repository: burst accepted, then 429; no analysis written", async () => {
    const user = await newUser({ analysesPerSecond: 0.01, analysesBurst: 1 });
    const { workspaceId } = await newPlan(user, [{ path: "a.ts", content: "export const a = 1;\n" }]);
    const start = () => api("POST", "/analyze/repository", { token: user.token, body: { source: `workspace:${workspaceId}` } });
    expect((await start()).status).toBe(202);
    const refused = await start();
    expectRateLimited(refused, "/analyze/repository", 1);
    expect(refused.body.error.limit).toBe("analysesPerSecond");
    expect(await count("analyses", user.id)).toBe(1);
  });

  it("a bucket of k lets exactly k of N parallel requests through", async () => {
    const k = 5;
    const user = await newUser({ executePerSecond: 0.001, executeBurst: k });
    const kind = uniqueKind("q-par");
    const results = await Promise.all(Array.from({ length: 14 }, () => execute(user, kind)));
    const statuses = results.map((r) => r.status).sort();
    expect(statuses.filter((s) => s === 202)).toHaveLength(k);
    expect(statuses.filter((s) => s === 429)).toHaveLength(14 - k);
    expect(await count("tasks", user.id)).toBe(k);
  });

  it("the service key (ownerless requests) is not rate limited", async () => {
    const kind = uniqueKind("q-svc");
    const results = await Promise.all(Array.from({ length: 8 }, () => api("POST", "/execute", { token: stack.serviceRoleKey, body: { command: "true", requirements: { kind } } })));
    expect(results.map((r) => r.status)).toEqual(Array(8).fill(202));
  });
});

describe("queued-task quota", () => {
  it("at the quota succeeds, one past is 429 queued_quota_exceeded; nothing written", async () => {
    const user = await newUser({ maxQueuedTasks: 3 });
    const kind = uniqueKind("q-queued");
    for (let i = 0; i < 3; i++) expect((await execute(user, kind)).status).toBe(202);
    const refused = await execute(user, kind);
    expect(refused.status, JSON.stringify(refused.body)).toBe(429);
    expect(refused.body.error.code).toBe("queued_quota_exceeded");
    expect(refused.body.error.quota).toBe("maxQueuedTasks");
    expect(refused.body.error.limit).toBe(3);
    expect(refused.body.error.message).toContain("at most 3 queued tasks");
    expect(await count("tasks", user.id)).toBe(3);
    // An idempotent replay of an accepted request adds nothing and is not refused.
    const [first] = await sql<{ id: string }[]>`select id from public.tasks where owner = ${user.id} limit 1`;
    await sql`update public.tasks set idempotency_key = 'k1' where id = ${first!.id}`;
    const replay = await execute(user, kind, { idempotencyKey: "k1" });
    expect(replay.status).toBe(202);
    expect(replay.body.taskId).toBe(first!.id);
    // Cancelling frees the place.
    await api("DELETE", `/tasks/${first!.id}`, { token: user.token });
    expect((await execute(user, kind)).status).toBe(202);
  });

  it("parallel requests from one tenant cannot pass the quota together (executes and plans alike)", async () => {
    const user = await newUser({ maxQueuedTasks: 4 });
    const kind = uniqueKind("q-qpar");
    const results = await Promise.all([
      ...Array.from({ length: 6 }, () => execute(user, kind)),
      ...Array.from({ length: 3 }, () => api("POST", "/plans", { token: user.token, body: { steps: [{ name: "s", command: "true", requirements: { kind } }] } })),
    ]);
    expect(results.filter((r) => r.status === 202)).toHaveLength(4);
    expect(results.filter((r) => r.status === 429).every((r) => r.body.error.code === "queued_quota_exceeded")).toBe(true);
    expect(await count("tasks", user.id)).toBe(4);
  });

  it("a plan whose steps would pass the quota is refused whole", async () => {
    const user = await newUser({ maxQueuedTasks: 3 });
    const kind = uniqueKind("q-planq");
    for (let i = 0; i < 2; i++) expect((await execute(user, kind)).status).toBe(202);
    // Only `a` is queued at once, `b` waits for it: both count.
    const steps = [
      { name: "a", command: "true", requirements: { kind } },
      { name: "b", dependsOn: ["a"], command: "true", requirements: { kind } },
    ];
    const refused = await api("POST", "/plans", { token: user.token, body: { files: [{ path: "f.txt", content: "f" }], steps } });
    expect(refused.status, JSON.stringify(refused.body)).toBe(429);
    expect(refused.body.error.code).toBe("queued_quota_exceeded");
    expect(refused.body.error.requested).toBe(2);
    expect(await count("plans", user.id)).toBe(0);
    expect(await count("tasks", user.id)).toBe(2);
    expect((await sql`select 1 from public.workspaces where owner = ${user.id}`).length).toBe(0);
    // One step fits exactly.
    const ok = await api("POST", "/plans", { token: user.token, body: { steps: steps.slice(0, 1) } });
    expect(ok.status, JSON.stringify(ok.body)).toBe(202);
    expect(await count("tasks", user.id)).toBe(3);
  });
});

describe("stored-bytes quota", () => {
  it("at the quota succeeds, one past is 413 naming the quota and the usage; nothing written", async () => {
    const user = await newUser();
    const kind = uniqueKind("q-bytes");
    const body = { files: [{ path: "data.txt", content: "x".repeat(1000) }], env: { A: "1" } };
    expect((await execute(user, kind, body)).status).toBe(202);
    const one = await storedBytes(user.id);
    expect(one).toBeGreaterThan(1000);
    await sql`select cogo.set_tenant_limits(${user.id}, ${sql.json({ maxStoredBytes: 2 * one })})`;
    expect((await execute(user, kind, body)).status).toBe(202); // exactly at the quota
    expect(await storedBytes(user.id)).toBe(2 * one);
    const refused = await execute(user, kind, body);
    expect(refused.status, JSON.stringify(refused.body)).toBe(413);
    expect(refused.body.error.code).toBe("storage_quota_exceeded");
    expect(refused.body.error.quota).toBe("maxStoredBytes");
    expect(refused.body.error.limit).toBe(2 * one);
    expect(refused.body.error.storedBytes).toBe(2 * one);
    expect(refused.body.error.message).toContain(`at most ${2 * one} bytes; you store ${2 * one}`);
    expect(await count("tasks", user.id)).toBe(2);
    expect(await storedBytes(user.id)).toBe(2 * one);
  });

  it("workspace writes over the quota are 413 and change nothing; deletes still go through", async () => {
    const user = await newUser();
    const { workspaceId } = await newPlan(user, [{ path: "a.txt", content: "a".repeat(100) }]);
    const used = await storedBytes(user.id);
    await sql`select cogo.set_tenant_limits(${user.id}, ${sql.json({ maxStoredBytes: used + 50 })})`;
    const write = (path: string, n: number) => api("POST", "/files", { token: user.token, body: { workspaceId, files: [{ path, content: "b".repeat(n) }] } });
    expect((await write("b.txt", 50)).status).toBe(200); // exactly at the quota
    const refused = await write("c.txt", 1);
    expect(refused.status, JSON.stringify(refused.body)).toBe(413);
    expect(refused.body.error.code).toBe("storage_quota_exceeded");
    expect(await fileCount(workspaceId)).toBe(2);
    // Over the quota (the operator lowered it): freeing space is allowed, adding is not.
    await sql`select cogo.set_tenant_limits(${user.id}, ${sql.json({ maxStoredBytes: 10 })})`;
    expect((await api("DELETE", `/files/b.txt?workspace=${workspaceId}`, { token: user.token })).status).toBe(200);
    expect((await write("c.txt", 1)).status).toBe(413);
    expect(await fileCount(workspaceId)).toBe(1);
    // And a new task is refused too: the next request after going over.
    const r = await execute(user, uniqueKind("q-over"));
    expect(r.status).toBe(413);
  });

  it("a running task's output past the quota is kept and the task succeeds; the next request is refused", async () => {
    const user = await newUser({ maxStoredBytes: 3000 });
    const kind = uniqueKind("q-outq");
    await startWorker({ kind });
    const h = await user.sandbox.execute({ command: "seq 1 2000", requirements: { kind } });
    const result = await h.result();
    expect(result.status).toBe("succeeded");
    const usage = await user.sandbox.usage();
    expect(usage.storedBytes.byClass.output).toBeGreaterThan(8000);
    expect(usage.storedBytes.total).toBeGreaterThan(usage.storedBytes.max);
    const refused = await execute(user, kind);
    expect(refused.status).toBe(413);
    expect(refused.body.error.storedBytes).toBe(usage.storedBytes.total);
    expect(await count("tasks", user.id)).toBe(1);
  });

  it("stdin past the quota is 413 and not stored; EOF still goes through", async () => {
    const user = await newUser();
    const r = await execute(user, uniqueKind("q-stdin"), { stdin: "pipe" });
    expect(r.status).toBe(202);
    await sql`select cogo.set_tenant_limits(${user.id}, ${sql.json({ maxStoredBytes: (await storedBytes(user.id)) + 5 })})`;
    const stdin = (data: string, eof = false) => api("POST", `/tasks/${r.body.taskId}/stdin`, { token: user.token, body: { data, eof } });
    expect((await stdin("12345")).status).toBe(202); // exactly at the quota
    const refused = await stdin("6");
    expect(refused.status, JSON.stringify(refused.body)).toBe(413);
    expect(refused.body.error.code).toBe("storage_quota_exceeded");
    expect((await stdin("", true)).status).toBe(202);
    const rows = await sql<{ data: string; eof: boolean }[]>`select data, eof from public.task_stdin where task_id = ${r.body.taskId} order by seq`;
    expect(rows).toEqual([
      { data: "12345", eof: false },
      { data: "", eof: true },
    ]);
  });

  it("the counter equals the real sum after writes and deletes of every class", async () => {
    const user = await newUser();
    const kind = uniqueKind("q-count");
    await startWorker({ kind });
    const check = async (what: string) => {
      const [row] = await sql<{ counted: Record<string, unknown>; real: Record<string, unknown> }[]>`
        select to_jsonb(u) - 'updated_at' as counted, to_jsonb(cogo.tenant_usage_recount(${user.id})) - 'updated_at' as real
          from cogo.tenant_usage u where u.owner = ${user.id}`;
      expect(row?.counted, what).toEqual(row?.real);
    };
    // Output and stdin (a real run), task inputs.
    const h = await user.sandbox.execute({
      command: "cat; seq 1 300",
      stdin: "pipe",
      files: [{ path: "in.txt", content: "hello" }],
      env: { GREETING: "hi" },
      requirements: { kind },
    });
    await h.write("some input\n");
    await h.closeStdin();
    const result = await h.result();
    expect(result.status).toBe("succeeded");
    await check("after a run");
    const [usage] = await sql<{ outputBytes: string; stdinBytes: string }[]>`select output_bytes, stdin_bytes from cogo.tenant_usage where owner = ${user.id}`;
    expect(Number(usage!.outputBytes)).toBeGreaterThan(1000);
    expect(Number(usage!.stdinBytes)).toBe("some input\n".length);
    // Workspace files: writes, an overwrite, a delete.
    const { workspaceId } = await newPlan(user, [{ path: "a.txt", content: "a".repeat(500) }]);
    await api("POST", "/files", {
      token: user.token,
      body: {
        workspaceId,
        files: [
          { path: "a.txt", content: "a".repeat(20) },
          { path: "b.txt", content: "bb" },
        ],
      },
    });
    await api("DELETE", `/files/b.txt?workspace=${workspaceId}`, { token: user.token });
    await check("after workspace changes");
    // Artifacts (as the worker stores them), then replaced.
    await sql`insert into public.task_artifacts (task_id, path, attempt, size_bytes, content) values (${h.taskId}, 'out.bin', 1, 3, '\\x010203'::bytea)`;
    await sql`update public.task_artifacts set content = '\\x0102030405'::bytea where task_id = ${h.taskId}`;
    await check("after artifacts");
    // Analysis blobs, through the tenant's repository.
    const [repo] = await sql<{ id: string }[]>`insert into public.analysis_repos (owner, source) values (${user.id}, ${"https://example.test/" + randomUUID()}) returning id`;
    await sql`insert into public.analysis_blobs (repo_id, hash, size, content)
              select ${repo!.id}, lpad(to_hex(i), 40, '0'), 100, repeat('z', 100 * i) from generate_series(1, 3) i`;
    await check("after blobs");
    // Retention-style deletes: some output, the stdin, the artifacts, one blob.
    await sql`delete from public.task_output where task_id = ${h.taskId} and seq <= 2`;
    await sql`delete from public.task_stdin where task_id = ${h.taskId}`;
    await sql`delete from public.task_artifacts where task_id = ${h.taskId}`;
    await sql`delete from public.analysis_blobs where repo_id = ${repo!.id} and size = 100 and content = repeat('z', 100)`;
    await check("after retention deletes");
    // Retention (cogo.purge_expired) also clears an ended task's submitted files and env.
    await sql`update public.tasks set files = '[]', env = '{}' where id = ${h.taskId}`;
    await check("after clearing the task's inputs");
    // Whole rows by cascade: a repository, a task with its remaining output.
    await sql`delete from public.analysis_repos where id = ${repo!.id}`;
    await sql`delete from public.tasks where id = ${h.taskId}`;
    await check("after cascades");
  });
});

describe("who sees and sets what", () => {
  it("a user token cannot read or write the limits, buckets or counters, nor call the unmetered writes", async () => {
    const user = await newUser();
    await execute(user, uniqueKind("q-sec"));
    const asUser = (statement: string) => sqlAsUser(user.id, statement);
    for (const statement of [
      "select * from cogo.tenant_limits",
      "select * from cogo.rate_buckets",
      "select * from cogo.tenant_usage",
      `update cogo.tenant_usage set task_bytes = 0 where owner = '${user.id}'`,
      `delete from cogo.rate_buckets where owner = '${user.id}'`,
      `insert into cogo.rate_buckets (owner, class, tokens, refilled_at) values ('${user.id}', 'plans', 1000, now())`,
      `select cogo.set_tenant_limits('${user.id}', '{"executeBurst": 100000}')`,
      `select cogo.enqueue_task_unmetered('{"command": "true"}')`,
      `select cogo.write_files_unmetered('${randomUUID()}', '[]', '{}')`,
      `select cogo.take_rate_token('execute')`,
      `select cogo.tenant_metrics(10)`,
    ]) {
      await expect(asUser(statement), statement).rejects.toThrow(/permission denied/);
    }
    // Its own report only.
    await expect(asUser(`select cogo.tenant_usage_report('${randomUUID()}')`)).rejects.toThrow(/only its own usage/);
    const [own] = await asUser(`select cogo.tenant_usage_report('${user.id}') as r`);
    expect(own!.r.queued.count).toBe(1);
  });

  it("PUT/GET /tenants/:id/limits: the service key only; same rules as the SQL call", async () => {
    const user = await newUser();
    const put = (token: string, body: unknown) => api("PUT", `/tenants/${user.id}/limits`, { token, body });
    expect((await put(user.token, { executeBurst: 1000 })).status).toBe(403);
    expect((await api("GET", `/tenants/${user.id}/limits`, { token: user.token })).status).toBe(403);
    expect((await put(stack.anonKey, { executeBurst: 1000 })).status).toBe(403);
    expect((await sql`select 1 from cogo.tenant_limits where owner = ${user.id}`).length).toBe(0);

    const set = await put(stack.serviceRoleKey, { executeBurst: 7, maxQueuedTasks: 12 });
    expect(set.status, JSON.stringify(set.body)).toBe(200);
    expect(set.body.overrides).toEqual({ executeBurst: 7, maxQueuedTasks: 12 });
    expect(set.body.limits.executeBurst).toBe(7);
    expect(set.body.limits.executePerSecond).toBe(set.body.defaults.executePerSecond);
    // Keys left out keep their value; null restores the default.
    const again = await put(stack.serviceRoleKey, { executeBurst: null, maxStoredBytes: 4096 });
    expect(again.body.overrides).toEqual({ maxQueuedTasks: 12, maxStoredBytes: 4096 });
    expect(again.body.limits.executeBurst).toBe(again.body.defaults.executeBurst);
    const got = await api("GET", `/tenants/${user.id}/limits`, { token: stack.serviceRoleKey });
    expect(got.body).toEqual(again.body);

    const unknown = await put(stack.serviceRoleKey, { executeBrust: 5 });
    expect(unknown.status).toBe(400);
    expect(unknown.body.error.message).toContain('unknown limit "executeBrust" (known: maxRunning, executePerSecond');
    for (const bad of [{ executeBurst: 0 }, { executeBurst: 2.5 }, { executePerSecond: 0 }, { maxQueuedTasks: "10" }, { maxStoredBytes: -1 }]) {
      const r = await put(stack.serviceRoleKey, bad);
      expect(r.status, JSON.stringify(bad)).toBe(400);
      expect(r.body.error.code).toBe("invalid_parameter");
    }
    expect((await put(stack.serviceRoleKey, [1, 2])).status).toBe(400);
  });

  it("GET /usage shows the caller's own figures only", async () => {
    const [a, b] = [await newUser({ maxQueuedTasks: 50, executeBurst: 30 }), await newUser()];
    const kind = uniqueKind("q-usage");
    for (let i = 0; i < 2; i++) await execute(a, kind, { files: [{ path: "x.txt", content: "x".repeat(100) }] });
    const ua = await a.sandbox.usage();
    expect(ua.tenant).toBe(a.id);
    expect(ua.queued).toEqual({ count: 2, max: 50 });
    expect(ua.running).toEqual([{ kind, running: 0, cap: 1 }]);
    expect(ua.storedBytes.total).toBe(await storedBytes(a.id));
    expect(ua.storedBytes.byClass.taskInputs).toBe(ua.storedBytes.total);
    expect(ua.storedBytes.max).toBe(10 * 1024 ** 3);
    const exec = ua.rateLimits.find((l) => l.class === "execute")!;
    expect(exec).toMatchObject({ route: "/execute", perSecond: 20, burst: 30 });
    expect(exec.tokens).toBeGreaterThanOrEqual(28);
    expect(exec.tokens).toBeLessThanOrEqual(30);
    expect(ua.rateLimits.find((l) => l.class === "plans")).toMatchObject({ tokens: 50, burst: 50 });

    const ub = await api("GET", "/usage", { token: b.token });
    expect(ub.status).toBe(200);
    expect(ub.body.tenant).toBe(b.id);
    expect(ub.body.queued.count).toBe(0);
    expect(ub.body.storedBytes.total).toBe(0);
    expect((await api("GET", `/usage?tenant=${a.id}`, { token: b.token })).status).toBe(403);
    // The service key names the tenant.
    const svc = await api("GET", `/usage?tenant=${a.id}`, { token: stack.serviceRoleKey });
    expect(svc.body.queued.count).toBe(2);
    expect((await api("GET", "/usage", { token: stack.serviceRoleKey })).status).toBe(400);
    expect((await api("GET", "/usage", { token: stack.anonKey })).status).toBe(403);
  });

  it("/metrics lists the top tenants by running tasks and stored bytes (service key)", async () => {
    const user = await newUser();
    await execute(user, uniqueKind("q-metrics"), { files: [{ path: "big.txt", content: "m".repeat(200_000) }] });
    const res = await api("GET", "/metrics", { token: stack.serviceRoleKey });
    expect(res.status).toBe(200);
    expect(res.body).toContain("# TYPE cogo_tenant_stored_bytes gauge");
    expect(res.body).toContain("# TYPE cogo_tenant_active_tasks gauge");
    const top = await sql<{ owner: string }[]>`select owner from cogo.tenant_usage order by cogo.stored_bytes(tenant_usage) desc limit 10`;
    if (top.some((t) => t.owner === user.id)) expect(res.body).toContain(`cogo_tenant_stored_bytes{tenant="${user.id}"}`);
  });
});
