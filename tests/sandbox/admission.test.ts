// Host admission (issue 18): a worker claims only tasks whose memory limits fit its budget, for the
// whole batch; a task that does not fit waits without blocking smaller ones for long, nor being
// starved by them; the API refuses a task larger than every live worker of its kind can give.
// Real stack: the first and last tests run real workers; the others claim for registered workers
// with no process (cogo.claim_tasks called directly), so what is claimed when is exact.
import { describe, expect, it } from 'vitest';
import { DEFAULT_MEMORY_BYTES, MAX_MEMORY_BYTES } from '../../functions/_shared/limits.ts';
import { computeBudget, isLocalDatabase, localNames, readHostResources } from '../../worker/budget.ts';
import { Queue } from '../../worker/queue.ts';
import { api, newUser, sql, stack, startWorker, uniqueKind, waitFor } from '../helpers/env.ts';

const MiB = 1024 * 1024;
const GiB = 1024 * MiB;
type User = Awaited<ReturnType<typeof newUser>>;

async function queue(user: User, kind: string, memoryBytes?: number, command = 'true'): Promise<string> {
  const body = { command, requirements: { kind }, ...(memoryBytes ? { limits: { memoryBytes } } : {}) };
  const r = await api('POST', '/execute', { token: user.token, body });
  expect(r.status, JSON.stringify(r.body)).toBe(202);
  return r.body.taskId;
}

/** A worker row with no process behind it: the test claims for it. Live for two leases (2 min). */
async function fakeWorker(kind: string, memoryBudgetBytes: number, capacity = 4): Promise<string> {
  const row = await new Queue(sql).register({ name: `adm-${kind}`, kind, labels: [], capacity, leaseMs: 60_000, version: 'test', host: {}, memoryBudgetBytes });
  return row.id;
}

const claim = async (workerId: string, max: number): Promise<string[]> => (await sql<{ id: string }[]>`select id from cogo.claim_tasks(${workerId}, ${max})`).map((r) => r.id);

const ROLLBACK = new Error('rollback');
/** What a claim would take now, rolled back: nothing changes. */
async function wouldClaim(workerId: string, max: number): Promise<string[]> {
  let ids: string[] = [];
  await sql
    .begin(async (tx) => {
      ids = (await tx<{ id: string }[]>`select id from cogo.claim_tasks(${workerId}, ${max})`).map((r) => r.id);
      throw ROLLBACK;
    })
    .catch((err) => {
      if (err !== ROLLBACK) throw err;
    });
  return ids;
}

const finish = (taskId: string, workerId: string) => sql`select cogo.finish_task(${taskId}, 1, ${workerId}, 'succeeded', 0, null, 'admission test', '{}'::jsonb, null)`;

const sorted = (ids: string[]) => [...ids].sort();

async function cancelAll(ids: string[]) {
  const open = await sql<{ id: string }[]>`select id from public.tasks where id = any(${ids}) and not (status = any(cogo.final_states()))`;
  for (const { id } of open) await sql`select cogo.cancel_task(${id})`;
}

describe('host admission: claims', () => {
  it('a worker with a 1 GiB budget and 4 slots runs at most two 512 MiB tasks at once; the others wait, then run', async () => {
    const kind = uniqueKind('adm-run');
    const worker = await startWorker({ kind, concurrency: 4, memoryBudgetBytes: GiB });
    const user = await newUser({ maxRunning: 100 });
    const ids: string[] = [];
    for (let i = 0; i < 5; i++) ids.push(await queue(user, kind, 512 * MiB, 'sleep 1.5'));

    let most = 0;
    let full = false;
    await waitFor(
      async () => {
        const [s] = await sql<{ active: number; queued: number; done: number }[]>`
          select count(*) filter (where status = any(cogo.active_states()))::int as active,
                 count(*) filter (where status = 'queued')::int as queued,
                 count(*) filter (where status = 'succeeded')::int as done
            from public.tasks where id = any(${ids})`;
        most = Math.max(most, s!.active);
        if (s!.active === 2 && s!.queued > 0 && !full) {
          full = true;
          // The budget is used: a claim now takes nothing, though two slots are free.
          expect(await wouldClaim(worker.workerId!, 2)).toEqual([]);
        }
        return s!.done === ids.length;
      },
      'all five tasks',
      60_000,
    );
    expect(full).toBe(true);
    expect(most).toBe(2);
    // Exactly, from the rows: at no start did the worker run more than two of them. (Not from
    // claimed_at: it is the claim's transaction start, which can precede the commit of the finish
    // that the claim waited for and then counted: seen under load as an overlap of 3.)
    const [o] = await sql<{ overlap: number }[]>`
      select max((select count(*) from public.tasks u
                   where u.id = any(${ids}) and u.started_at <= t.started_at and u.finished_at > t.started_at))::int as overlap
        from public.tasks t where t.id = any(${ids})`;
    expect(o!.overlap).toBe(2);
    const rows = await sql<{ memoryBudgetBytes: string; cpuBudget: string }[]>`select memory_budget_bytes, cpu_budget from public.workers where id = ${worker.workerId!}`;
    expect(Number(rows[0]!.memoryBudgetBytes)).toBe(GiB);
  });

  it("the batch fits: of four queued 512 MiB tasks a 1 GiB worker claims two at once; a task over its whole budget is another worker's", async () => {
    const kind = uniqueKind('adm-batch');
    const small = await fakeWorker(kind, GiB);
    const big = await fakeWorker(kind, 4 * GiB);
    const user = await newUser({ maxRunning: 100 });
    const huge = await queue(user, kind, 2 * GiB);
    // Waiting long does not make it the small worker's to wait for: it can never fit there.
    await sql`update public.tasks set created_at = now() - interval '10 minutes', run_after = now() - interval '10 minutes' where id = ${huge}`;
    const smalls: string[] = [];
    for (let i = 0; i < 4; i++) smalls.push(await queue(user, kind, 512 * MiB));

    expect(sorted(await wouldClaim(small, 4))).toEqual(sorted(smalls.slice(0, 2)));
    // 2 GiB + 3 × 512 MiB = 3.5 GiB of 4: four slots, all used.
    expect(sorted(await wouldClaim(big, 4))).toEqual(sorted([huge, ...smalls.slice(0, 3)]));
    // What the small worker takes counts against what it has left on the next claim.
    expect((await claim(small, 4)).length).toBe(2);
    expect(await wouldClaim(small, 2)).toEqual([]);
    const held = await sql<{ id: string }[]>`select id from public.tasks where worker_id = ${small}`;
    for (const { id } of held) await finish(id, small);
    expect((await wouldClaim(small, 4)).length).toBe(2);
    await cancelAll([huge, ...smalls]);
  });

  it('a task that does not fit lets smaller ones pass while it is new, then holds its place until its memory is free', async () => {
    const kind = uniqueKind('adm-patience');
    const w = await fakeWorker(kind, GiB);
    const user = await newUser({ maxRunning: 100 });
    const s1 = await queue(user, kind, 512 * MiB);
    expect(await claim(w, 4)).toEqual([s1]);
    const bigTask = await queue(user, kind, GiB);
    const s2 = await queue(user, kind, 512 * MiB);
    // 512 MiB free: the new 1 GiB task waits, the 512 MiB one behind it goes.
    expect(await wouldClaim(w, 3)).toEqual([s2]);
    // Claimable for longer than cogo.admission_patience(): nothing behind it is taken any more.
    await sql`update public.tasks set created_at = now() - interval '1 minute', run_after = now() - interval '1 minute' where id = ${bigTask}`;
    expect(await wouldClaim(w, 3)).toEqual([]);
    // Its memory is free once s1 ends: it runs, alone (the 512 MiB one would not fit beside it).
    await finish(s1, w);
    expect(await claim(w, 4)).toEqual([bigTask]);
    expect(await wouldClaim(w, 3)).toEqual([]);
    await finish(bigTask, w);
    expect(await claim(w, 4)).toEqual([s2]);
    await finish(s2, w);
  });
});

describe('host admission: the API refuses what no worker can give', () => {
  it("a task or plan step over every live worker's budget is a 400 naming the maximum, and nothing is written", async () => {
    const kind = uniqueKind('adm-api');
    await fakeWorker(kind, GiB);
    await fakeWorker(kind, 2 * GiB);
    const user = await newUser();
    const r = await api('POST', '/execute', { token: user.token, body: { command: 'true', limits: { memoryBytes: 64 * GiB }, requirements: { kind } } });
    expect(r.status).toBe(400);
    expect(r.body.error).toEqual({ code: 'invalid_request', message: `limits.memoryBytes: ${64 * GiB} is more than any worker of kind ${kind} can give (max ${2 * GiB})` });
    const plan = await api('POST', '/plans', {
      token: user.token,
      body: {
        requirements: { kind },
        steps: [
          { name: 'fits', command: 'true' },
          { name: 'big', command: 'true', limits: { memoryBytes: 3 * GiB } },
        ],
      },
    });
    expect(plan.status).toBe(400);
    expect(plan.body.error.message).toBe(`steps.1.limits.memoryBytes: ${3 * GiB} is more than any worker of kind ${kind} can give (max ${2 * GiB})`);
    const [n] = await sql<{ tasks: number; plans: number }[]>`
      select (select count(*) from public.tasks where owner = ${user.id})::int as tasks,
             (select count(*) from public.plans where owner = ${user.id})::int as plans`;
    expect(n).toEqual({ tasks: 0, plans: 0 });
    // Exactly the maximum is accepted.
    const at = await queue(user, kind, 2 * GiB);
    await sql`select cogo.cancel_task(${at})`;
  });

  it('a task no live worker of its kind has the memory for fails as unserved after the wait, not queued for ever', async () => {
    const kind = uniqueKind('adm-unserved');
    const user = await newUser();
    // Accepted while no worker was live (the static maximum), then only a small worker came up.
    const big = await queue(user, kind, 4 * GiB);
    const fits = await queue(user, kind, 512 * MiB);
    await fakeWorker(kind, GiB);
    await sql`update public.tasks set updated_at = now() - interval '1 minute', run_after = now() - interval '1 minute' where id = any(${[big, fits]})`;
    await sql`select cogo.fail_unserved_tasks(interval '30 seconds')`;
    const rows = await sql<{ id: string; status: string; reason: string | null }[]>`select id, status, reason from public.tasks where id = any(${[big, fits]})`;
    const byId = new Map(rows.map((r) => [r.id, r]));
    expect(byId.get(big)!.status).toBe('failed');
    expect(byId.get(big)!.reason).toMatch(/^no_worker_for_kind: /);
    expect(byId.get(fits)!.status).toBe('queued');
    await cancelAll([fits]);
  });

  it('with no live worker of the kind, the static maximum applies', async () => {
    const kind = uniqueKind('adm-none');
    const user = await newUser();
    const over = await api('POST', '/execute', { token: user.token, body: { command: 'true', limits: { memoryBytes: MAX_MEMORY_BYTES + MiB }, requirements: { kind } } });
    expect(over.status).toBe(400);
    expect(over.body.error.message).toBe(
      `limits.memoryBytes: ${MAX_MEMORY_BYTES + MiB} is more than a task may ask while no worker of kind ${kind} is live (max ${MAX_MEMORY_BYTES})`,
    );
    const at = await queue(user, kind, MAX_MEMORY_BYTES);
    await sql`select cogo.cancel_task(${at})`;
  });

  it('other limits above what a worker gives are refused too, not cut', async () => {
    const user = await newUser();
    for (const [limits, field] of [
      [{ processes: 5000 }, 'limits.processes'],
      [{ outputBytes: 512 * MiB }, 'limits.outputBytes'],
      [{ workspaceBytes: 16 * GiB }, 'limits.workspaceBytes'],
      [{ fileSizeBytes: 8 * GiB }, 'limits.fileSizeBytes'],
      [{ openFiles: 100_000 }, 'limits.openFiles'],
    ] as const) {
      const r = await api('POST', '/execute', { token: user.token, body: { command: 'true', limits, requirements: { kind: uniqueKind('adm-other') } } });
      expect(r.status, field).toBe(400);
      expect(r.body.error.message, field).toContain(field);
    }
  });

  it("POST /workers registers the budgets; the kind's maximum follows them", async () => {
    const kind = uniqueKind('adm-register');
    const r = await api('POST', '/workers', { token: stack.serviceRoleKey, body: { name: `reg-${kind}`, kind, leaseMs: 60_000, memoryBudgetBytes: 3 * GiB, cpuBudget: 1.5 } });
    expect(r.status, JSON.stringify(r.body)).toBe(201);
    expect(r.body).toMatchObject({ kind, memoryBudgetBytes: 3 * GiB, cpuBudget: 1.5 });
    const user = await newUser();
    const over = await api('POST', '/execute', { token: user.token, body: { command: 'true', limits: { memoryBytes: 3 * GiB + MiB }, requirements: { kind } } });
    expect(over.body.error?.message).toBe(`limits.memoryBytes: ${3 * GiB + MiB} is more than any worker of kind ${kind} can give (max ${3 * GiB})`);
    await sql`update public.workers set status = 'offline' where id = ${r.body.id}`;
  });

  it('the SQL default memory of a task is DEFAULT_MEMORY_BYTES', async () => {
    const [r] = await sql<{ d: string; given: string }[]>`select cogo.task_memory_bytes('{}') as d, cogo.task_memory_bytes('{"memoryBytes": 123456789}') as given`;
    expect(Number(r!.d)).toBe(DEFAULT_MEMORY_BYTES);
    expect(Number(r!.given)).toBe(123456789);
  });
});

describe('host admission: the default budget', () => {
  it('a worker registers the host budget and its cores; on this host it runs four default-limit tasks at once', async () => {
    const kind = uniqueKind('adm-default');
    const worker = await startWorker({ kind, concurrency: 4 });
    const expected = computeBudget(await readHostResources(), { databaseLocal: isLocalDatabase(stack.dbUrl, localNames()) });
    const [row] = await sql<{ memoryBudgetBytes: string; cpuBudget: string }[]>`select memory_budget_bytes, cpu_budget from public.workers where id = ${worker.workerId!}`;
    expect(Number(row!.memoryBudgetBytes)).toBe(expected.memoryBytes);
    expect(Number(row!.cpuBudget)).toBe(expected.cpus);
    expect(expected.memoryBytes).toBeGreaterThanOrEqual(4 * DEFAULT_MEMORY_BYTES);
    console.log(`default host budget here: ${expected.explanation}`);
    // Users see it in the fleet view.
    const user = await newUser({ maxRunning: 100 });
    const listed = (await api('GET', '/workers', { token: user.token })).body.workers.find((w: { id: string }) => w.id === worker.workerId);
    expect(listed).toMatchObject({ memoryBudgetBytes: expected.memoryBytes, cpuBudget: expected.cpus });

    const ids: string[] = [];
    for (let i = 0; i < 4; i++) ids.push(await queue(user, kind, undefined, 'sleep 3'));
    await waitFor(
      async () => (await sql<{ n: number }[]>`select count(*)::int as n from public.tasks where id = any(${ids}) and status = any(cogo.active_states())`)[0]!.n === 4,
      'four default-limit tasks running at once',
      20_000,
    );
    await cancelAll(ids);
  });
});
