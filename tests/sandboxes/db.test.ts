// Persistent sandboxes in SQL (migrations/20261207000100_sandboxes.sql), driven by a fake worker
// through the public cogo.* functions: the sandbox follows its init task (starting → ready →
// stopped | lost), commands are claimed only by the holder, another tenant sees nothing, and a
// sandbox that ends fails its queued commands naming why. The real worker is tested in the other
// files of this directory.
import { afterAll, describe, expect, it } from "vitest";
import { checkTaskEvent } from "../../functions/_shared/events.ts";
import { SANDBOX_STATES } from "../../functions/_shared/states.ts";
import { newUserId, sql, sqlAsUser, uniqueKind } from "../helpers/env.ts";

const kind = uniqueKind("sbxdb");
const workers: string[] = [];

async function fakeWorker(leaseMs = 60_000): Promise<string> {
  const [w] = await sql`select id from cogo.register_worker(${`sbxdb-${workers.length}`}, ${kind}, '{}', 4, ${leaseMs}, 'test', '{}')`;
  workers.push(w!.id);
  return w!.id;
}
afterAll(async () => {
  await sql`update public.workers set status = 'offline' where id = any(${workers}::uuid[])`;
});

/** The SQLSTATE a statement failed with (or "ok"). */
async function codeOf(p: Promise<unknown>): Promise<string> {
  try {
    await p;
    return "ok";
  } catch (e) {
    return (e as { code?: string }).code ?? String(e);
  }
}

const asUser = (user: string, statement: string) => sqlAsUser(user, statement) as Promise<any[]>;
const createSandbox = async (user: string, spec: Record<string, unknown> = {}) =>
  (await asUser(user, `select * from cogo.create_sandbox('${JSON.stringify({ requirements: { kind }, ...spec })}'::jsonb)`))[0];
const enqueue = async (user: string, sandbox: string, spec: Record<string, unknown>) =>
  (await asUser(user, `select * from cogo.enqueue_command('${sandbox}', '${JSON.stringify(spec)}'::jsonb)`))[0];
const sandboxRow = async (id: string) => (await sql`select * from public.sandboxes where id = ${id}`)[0]!;
const taskRow = async (id: string) => (await sql`select * from public.tasks where id = ${id}`)[0]!;

/** Claims the init task of `sandbox` as `worker` and starts it: the sandbox is then ready. */
async function hold(worker: string, sandbox: string) {
  const s = await sandboxRow(sandbox);
  const claimed = await sql`select * from cogo.claim_tasks(${worker}, 10)`;
  expect(claimed.map((t) => t.id)).toContain(s.initTaskId);
  await sql`select cogo.start_task(${s.initTaskId}, 1, ${worker})`;
  return s.initTaskId as string;
}

describe("sandboxes in SQL", () => {
  it("SANDBOX_STATES equals the enum", async () => {
    const rows = await sql`select unnest(enum_range(null::public.sandbox_status))::text as s`;
    expect(rows.map((r) => r.s)).toEqual([...SANDBOX_STATES]);
  });

  it("starting → ready on the init task's start; commands only for the holder, not for claim_tasks", async () => {
    const user = newUserId();
    const worker = await fakeWorker();
    const other = await fakeWorker();
    const s = await createSandbox(user, { env: { A: "1" }, idleTimeoutMs: 60_000, metadata: { agent: "x" } });
    expect(s).toMatchObject({ status: "starting", owner: user, idleTimeoutMs: 60_000, maxLifetimeMs: 3_600_000, topic: `sandbox:${s.id}` });
    const init = await taskRow(s.initTaskId);
    expect(init).toMatchObject({ internal: "sandbox-init", maxAttempts: 1, owner: user, timeoutMs: 3_600_000, sandboxId: null });

    // A command queued while the sandbox starts waits; nobody claims it yet.
    const early = await enqueue(user, s.id, { command: "echo early", env: { B: "2" } });
    expect(early).toMatchObject({ sandboxId: s.id, maxAttempts: 1, owner: user, requiredKind: kind });
    expect(early.env).toEqual({ A: "1", B: "2" });

    await hold(worker, s.id);
    expect(await sandboxRow(s.id)).toMatchObject({ status: "ready", workerId: worker });

    const cmd = await enqueue(user, s.id, { argv: ["cat", "f"], cwd: "/workspace", background: true });
    expect(cmd).toMatchObject({ background: true, cwd: "/workspace", argv: ["cat", "f"] });
    // claim_tasks never takes a command, not even for the holder; another worker gets none.
    expect(await sql`select id from cogo.claim_tasks(${worker}, 10)`).toHaveLength(0);
    expect(await sql`select id from cogo.claim_tasks(${other}, 10)`).toHaveLength(0);
    expect(await sql`select id from cogo.claim_sandbox_commands(${other}, 10)`).toHaveLength(0);
    const mine = await sql`select id from cogo.claim_sandbox_commands(${worker}, 10)`;
    expect(mine.map((t) => t.id).sort()).toEqual([early.id, cmd.id].sort());
    await sql`select cogo.start_task(${early.id}, 1, ${worker})`;
    await sql`select cogo.finish_task(${early.id}, 1, ${worker}, 'succeeded', 0, null, null, null, null)`;

    // The sandbox's status events: on its init task, strictly of the contract.
    const events = await sql`select type, data from public.task_events where task_id = ${s.initTaskId} and type = 'sandbox_status' order by seq`;
    expect(events.map((e) => e.data.status)).toEqual(["starting", "ready"]);
    for (const e of events) expect(checkTaskEvent(e as never)).toMatchObject({ ok: true });
  });

  it("another tenant sees nothing: no row, no command, no topic, no stop; the FK refuses a foreign command", async () => {
    const a = newUserId();
    const b = newUserId();
    const s = await createSandbox(a);
    expect(await asUser(a, `select id from public.sandboxes where id = '${s.id}'`)).toHaveLength(1);
    expect(await asUser(b, `select id from public.sandboxes where id = '${s.id}'`)).toHaveLength(0);
    expect(await codeOf(enqueue(b, s.id, { command: "id" }))).toBe("CG404");
    expect(await codeOf(asUser(b, `select cogo.stop_sandbox('${s.id}')`))).toBe("CG404");
    expect(await codeOf(asUser(b, `select cogo.set_sandbox_idle_timeout('${s.id}', 5000)`))).toBe("CG404");
    expect((await asUser(a, `select cogo.owns_sandbox_topic('sandbox:${s.id}') as ok`))[0].ok).toBe(true);
    expect((await asUser(b, `select cogo.owns_sandbox_topic('sandbox:${s.id}') as ok`))[0].ok).toBe(false);
    // Whatever inserts it: a row owned by B naming A's sandbox violates (sandbox_id, owner).
    expect(await codeOf(sql`insert into public.tasks (owner, command, sandbox_id, max_attempts) values (${b}, 'id', ${s.id}, 1)`)).toBe("23503");
    // Users write nothing directly.
    expect(await codeOf(asUser(a, `update public.sandboxes set status = 'ready' where id = '${s.id}'`))).toBe("42501");
    await sql`select cogo.stop_sandbox(${s.id})`;
  });

  it("refuses network (R1), a lifetime over an hour, and a ninth live sandbox", async () => {
    const user = newUserId();
    expect(await codeOf(createSandbox(user, { network: true }))).toBe("22023");
    expect(await codeOf(createSandbox(user, { maxLifetimeMs: 3_600_001 }))).toBe("22023");
    const live = [];
    for (let i = 0; i < 8; i++) live.push(await createSandbox(user));
    expect(await codeOf(createSandbox(user))).toBe("CGQ29");
    // A stopped one frees its place.
    await asUser(user, `select cogo.stop_sandbox('${live[0].id}')`);
    expect(await sandboxRow(live[0].id)).toMatchObject({ status: "stopped", reason: "cancelled before it started" });
    live.push(await createSandbox(user));
    for (const s of live) await asUser(user, `select cogo.stop_sandbox('${s.id}')`);
  });

  it("DELETE: the holder is asked to cancel; when it ends the init task the sandbox is stopped, queued commands fail, new ones are 409", async () => {
    const user = newUserId();
    const worker = await fakeWorker();
    const s = await createSandbox(user);
    const init = await hold(worker, s.id);
    // A command the holder has not claimed yet.
    const queued = await enqueue(user, s.id, { command: "sleep 1" });
    const stopped = (await asUser(user, `select * from cogo.stop_sandbox('${s.id}')`))[0];
    expect(stopped.status).toBe("ready"); // until the holder has killed it
    expect((await taskRow(init)).cancelRequestedAt).not.toBeNull();
    const [hb] = await sql`select cancel from cogo.heartbeat(${worker})`;
    expect(hb!.cancel).toContain(init);
    await sql`select cogo.finish_task(${init}, 1, ${worker}, 'cancelled', null, 'SIGKILL', 'deleted', null, null)`;
    expect(await sandboxRow(s.id)).toMatchObject({ status: "stopped", reason: "deleted" });
    const q = await taskRow(queued.id);
    expect(q).toMatchObject({ status: "failed", reason: `sandbox ${s.id} stopped: deleted` });
    const out = await sql`select data from public.task_output where task_id = ${queued.id}`;
    expect(out.map((o) => o.data).join("")).toContain("stopped: deleted");
    expect(await codeOf(enqueue(user, s.id, { command: "echo late" }))).toBe("CG409");
    expect(await codeOf(asUser(user, `select cogo.set_sandbox_idle_timeout('${s.id}', 5000)`))).toBe("CG409");
  });

  it("a holder that stops heartbeating: the sandbox is lost, its queued command fails with the reason", async () => {
    const user = newUserId();
    const worker = await fakeWorker(1000);
    const s = await createSandbox(user);
    const init = await hold(worker, s.id);
    const running = await enqueue(user, s.id, { command: "sleep 100" });
    await sql`select id from cogo.claim_sandbox_commands(${worker}, 1)`;
    const queued = await enqueue(user, s.id, { command: "echo never" });
    await sql`update public.tasks set lease_expires_at = now() - interval '1 second' where id in (${init}, ${running.id})`;
    await sql`select cogo.requeue_expired()`;
    const lost = await sandboxRow(s.id);
    expect(lost).toMatchObject({ status: "lost", reason: `worker ${worker} stopped heartbeating` });
    expect(await taskRow(queued.id)).toMatchObject({ status: "failed", reason: `sandbox ${s.id} lost: worker ${worker} stopped heartbeating` });
    expect((await taskRow(running.id)).status).toBe("failed"); // one attempt: never re-queued
    expect(await codeOf(enqueue(user, s.id, { command: "echo" }))).toBe("CG409");
  });

  it("expire_sandboxes: an idle or over-lifetime sandbox is asked to stop; one never claimed stops at once", async () => {
    const user = newUserId();
    const worker = await fakeWorker();
    const idle = await createSandbox(user, { idleTimeoutMs: 1000 });
    const init = await hold(worker, idle.id);
    const busy = await createSandbox(user, { idleTimeoutMs: 1000 });
    const busyInit = await hold(worker, busy.id);
    const unclaimed = await createSandbox(user, { maxLifetimeMs: 1000 });
    await enqueue(user, busy.id, { command: "sleep 100" });
    await sql`select id from cogo.claim_sandbox_commands(${worker}, 10)`;
    await sql`update public.sandboxes set last_activity_at = now() - interval '1 minute', expires_at = least(expires_at, now() + interval '1 minute')
               where id in (${idle.id}, ${busy.id})`;
    await sql`update public.sandboxes set expires_at = now() - interval '10 seconds' where id = ${unclaimed.id}`;
    await sql`select cogo.expire_sandboxes()`;
    expect((await taskRow(init)).cancelRequestedAt).not.toBeNull();
    expect((await taskRow(busyInit)).cancelRequestedAt).toBeNull(); // a running command is activity
    expect((await sandboxRow(unclaimed.id)).status).toBe("stopped");
    // PATCH restarts the idle clock.
    await asUser(user, `select cogo.set_sandbox_idle_timeout('${busy.id}', 120000)`);
    expect((await sandboxRow(busy.id)).idleTimeoutMs).toBe(120_000);
    await sql`select cogo.stop_sandbox(${idle.id}), cogo.stop_sandbox(${busy.id})`;
  });

  it("commands take no tenant share and no memory room from claim_tasks", async () => {
    const user = newUserId();
    await sql`select cogo.set_tenant_limits(${user}, '{"maxRunning": 1}'::jsonb)`;
    const worker = await fakeWorker();
    const s = await createSandbox(user);
    await hold(worker, s.id); // the sandbox holds the tenant's one running slot
    for (let i = 0; i < 3; i++) await enqueue(user, s.id, { command: `echo ${i}` });
    expect(await sql`select id from cogo.claim_sandbox_commands(${worker}, 10)`).toHaveLength(3);
    // A plain task of the tenant still waits for the sandbox's slot, not for the commands.
    const [t] = await asUser(user, `select * from cogo.enqueue_task('{"command": "true", "requirements": {"kind": "${kind}"}}'::jsonb)`);
    expect(await sql`select id from cogo.claim_tasks(${worker}, 10)`).toHaveLength(0);
    await sql`select cogo.stop_sandbox(${s.id})`;
    await sql`select cogo.finish_task(${s.initTaskId}, 1, ${worker}, 'cancelled', null, null, 'deleted', null, null)`;
    const [shares] = await sql`select count(*)::int as n from public.tasks where sandbox_id = ${s.id} and status = any(cogo.active_states())`;
    expect(shares!.n).toBe(3); // the holder stops them; until then they still hold no share:
    expect((await sql`select id from cogo.claim_tasks(${worker}, 10)`).map((r) => r.id)).toEqual([t.id]);
  });
});
