// Fair claiming (issue 18): tenants share the fleet. One tenant's backlog does not starve another,
// equal priorities go round-robin across tenants, a tenant stays within its running cap, priority
// still wins across tenants, and user priorities stay below the system's.
import { describe, expect, it } from "vitest";
import { USER_PRIORITY } from "../../functions/_shared/plans/limits.ts";
import { api, newUser, sql, sqlAsUser, startWorker, uniqueKind } from "../helpers/env.ts";
import { waitFor } from "../helpers/wait.ts";

type User = Awaited<ReturnType<typeof newUser>>;

async function queue(user: User, kind: string, command: string, priority = 0): Promise<string> {
  const r = await api("POST", "/execute", { token: user.token, body: { command, priority, requirements: { kind } } });
  expect(r.status, JSON.stringify(r.body)).toBe(202);
  return r.body.taskId;
}

const activeOf = async (owner: string) =>
  (await sql<{ n: number }[]>`select count(*)::int as n from public.tasks where owner = ${owner} and status = any(cogo.active_states())`)[0]!.n;

async function cancelAll(...owners: string[]) {
  const ids = await sql<{ id: string }[]>`select id from public.tasks where owner = any(${owners}) and not (status = any(cogo.final_states()))`;
  for (const { id } of ids) await sql`select cogo.cancel_task(${id})`;
}

/** Owners in claim order. */
async function claimOrder(ids: string[], users: User[]): Promise<string[]> {
  const names = new Map<string, string>(users.map((u, i) => [u.id, "ABC"[i]!]));
  const rows = await sql<{ owner: string }[]>`select owner from public.tasks where id = any(${ids}) order by claimed_at, id`;
  return rows.map((r) => names.get(r.owner)!);
}

describe("fair claiming", () => {
  it("a tenant's backlog does not starve the next tenant: B starts within about a second", async () => {
    const kind = uniqueKind("fair-starve");
    await startWorker({ kind, concurrency: 4 });
    const [a, b] = [await newUser(), await newUser()];
    // The measured case of issue 18 (there at priority 1000, now above the user range).
    for (let i = 0; i < 8; i++) await queue(a, kind, "sleep 8", USER_PRIORITY.max);
    const bTask = await queue(b, kind, "true");
    const bDone = await waitFor(
      async () =>
        (
          await sql<{ status: string; waitMs: number }[]>`
        select status, (extract(epoch from (started_at - created_at)) * 1000)::float8 as "waitMs" from public.tasks
         where id = ${bTask} and started_at is not null`
        )[0] ?? undefined,
      "B's task to start",
      30_000,
    );
    console.log(`fair claims: B's task started ${Math.round(bDone.waitMs)} ms after it was queued (A: 8 × sleep 8 queued first)`);
    expect(bDone.waitMs).toBeLessThan(2000);
    // A alone held three of the four slots (the default cap: 3/4 of the live capacity).
    expect(await activeOf(a.id)).toBe(3);
    await cancelAll(a.id, b.id);
  });

  it("equal priorities go round-robin across three tenants", async () => {
    const kind = uniqueKind("fair-rr");
    const users = [await newUser(), await newUser(), await newUser()];
    const ids: string[] = [];
    for (const u of users) for (let i = 0; i < 3; i++) ids.push(await queue(u, kind, "true"));
    await startWorker({ kind, concurrency: 1 });
    await waitFor(async () => (await sql`select 1 from public.tasks where id = any(${ids}) and status = 'succeeded'`).length === ids.length || null, "all tasks", 60_000);
    expect(await claimOrder(ids, users)).toEqual(["A", "B", "C", "A", "B", "C", "A", "B", "C"]);
  });

  it("priority still wins across tenants", async () => {
    const kind = uniqueKind("fair-prio");
    const users = [await newUser(), await newUser(), await newUser()];
    const ids = [await queue(users[0]!, kind, "true", 0), await queue(users[1]!, kind, "true", 10), await queue(users[2]!, kind, "true", 5)];
    ids.push(await queue(users[1]!, kind, "true", 10));
    await startWorker({ kind, concurrency: 1 });
    await waitFor(async () => (await sql`select 1 from public.tasks where id = any(${ids}) and status = 'succeeded'`).length === ids.length || null, "all tasks", 60_000);
    expect(await claimOrder(ids, users)).toEqual(["B", "B", "C", "A"]);
  });

  it("a tenant at its running cap takes no more slots, even at a higher priority, while another waits", async () => {
    const kind = uniqueKind("fair-cap");
    const [a, b] = [await newUser(), await newUser()];
    const [row] = await sql<{ maxRunning: number }[]>`select max_running from cogo.set_tenant_limits(${a.id}, ${sql.json({ maxRunning: 1 })})`;
    expect(row!.maxRunning).toBe(1);
    for (let i = 0; i < 3; i++) await queue(a, kind, "sleep 30", 500);
    const bTask = await queue(b, kind, "sleep 30", 0);
    await startWorker({ kind, concurrency: 3 });
    await waitFor(async () => (await activeOf(a.id)) === 1 && (await activeOf(b.id)) === 1 && true, "A and B to run one task each", 15_000);
    await new Promise((r) => setTimeout(r, 1200)); // a few polls: still one each, a slot free
    expect([await activeOf(a.id), await activeOf(b.id)]).toEqual([1, 1]);
    expect((await sql`select 1 from public.tasks where id = ${bTask} and status = any(cogo.active_states())`).length).toBe(1);
    await cancelAll(a.id, b.id);
    await sql`select cogo.set_tenant_limits(${a.id}, ${sql.json({ maxRunning: null })})`;
  });

  it("a lone tenant holds 3/4 of the fleet by default, and all of it when the operator allows", async () => {
    const kind = uniqueKind("fair-lone");
    const a = await newUser();
    await startWorker({ kind, concurrency: 4 });
    for (let i = 0; i < 6; i++) await queue(a, kind, "sleep 30");
    await waitFor(async () => (await activeOf(a.id)) === 3 || null, "A to run three tasks", 15_000);
    await new Promise((r) => setTimeout(r, 1200));
    expect(await activeOf(a.id)).toBe(3);
    await sql`select cogo.set_tenant_limits(${a.id}, ${sql.json({ maxRunning: 4 })})`;
    await waitFor(async () => (await activeOf(a.id)) === 4 || null, "A to run four tasks once allowed", 15_000);
    await cancelAll(a.id);
  });
});

describe("user priorities and tenant limits: what a user may not do", () => {
  it("the user range ends just below the system's re-run priority", async () => {
    const [row] = await sql<{ p: number }[]>`select cogo.rerun_priority() as p`;
    expect(USER_PRIORITY).toEqual({ min: -1000, max: row!.p - 1 });
  });

  it.each([
    ["/execute", { command: "true", priority: 1000 }, "priority: priority is between -1000 and 899"],
    ["/execute", { command: "true", priority: 900 }, "priority is between -1000 and 899"],
    ["/execute", { command: "true", priority: -1001 }, "priority is between -1000 and 899"],
    ["/plans", { steps: [{ name: "a", command: "true", priority: 900 }] }, "steps.0.priority: priority is between -1000 and 899"],
    ["/plans", { priority: 1000, steps: [{ name: "a", command: "true" }] }, "priority: priority is between -1000 and 899"],
  ])("POST %s %j is a 400 naming the range, nothing written", async (route, body, fragment) => {
    const user = await newUser();
    const r = await api("POST", route, { token: user.token, body });
    expect(r.status).toBe(400);
    expect(r.body.error.code).toBe("invalid_request");
    expect(r.body.error.message).toContain(fragment);
    const [n] = await sql<{ n: number }[]>`select count(*)::int as n from public.tasks where owner = ${user.id}`;
    expect(n!.n).toBe(0);
  });

  it("a user token cannot read or change tenant limits", async () => {
    const user = await newUser();
    const asUser = (statement: string) => sqlAsUser(user.id, statement);
    for (const statement of [
      "select * from cogo.tenant_limits",
      `insert into cogo.tenant_limits (owner, max_running) values ('${user.id}', 100)`,
      `select cogo.set_tenant_limits('${user.id}', '{"maxRunning": 100}')`,
      "select cogo.default_running_share('basic')",
    ]) {
      await expect(asUser(statement), statement).rejects.toThrow(/permission denied/);
    }
    expect(await sql`select 1 from cogo.tenant_limits where owner = ${user.id}`).toHaveLength(0);
    await expect(sql`select cogo.set_tenant_limits(${user.id}, ${sql.json({ maxRunning: 0 })})`).rejects.toThrow(/at least 1/);
    await expect(sql`select cogo.set_tenant_limits(${user.id}, ${sql.json({ maxRuning: 5 })})`).rejects.toThrow(/unknown limit "maxRuning"/);
    await expect(sql`select cogo.set_tenant_limits(${user.id}, ${sql.json({ maxRunning: 2.5 })})`).rejects.toThrow(/whole number/);
  });
});
