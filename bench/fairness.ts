// Fair shares (issue 18): tenant A floods the queue; tenants B and C each submit one task a second
// while A's backlog lasts, all on one worker of concurrency 4. Measures B's and C's queue wait
// (created → claimed) and A's throughput against a run of A alone, through the real API with user
// tokens, so what a tenant meets (round-robin, the running cap) is what is measured. First, one
// tenant fires 500 requests at once at its default rate limit: how many pass, how many get a 429.
import { randomUUID } from "node:crypto";
import type { Sql } from "postgres";
import { mintUserToken } from "../embedded/keys.ts";
import type { Stack } from "../embedded/stack.ts";
import { Worker } from "../worker/worker.ts";
import { ms, percentile, type Row } from "./stats.ts";

const FLOOD = 500;
const A_TASK = "sleep 0.2";
const NEWCOMER_TASK = "echo hi";

interface Tenant {
  id: string;
  token: string;
}

async function tenant(stack: Stack): Promise<Tenant> {
  const id = randomUUID();
  return { id, token: await mintUserToken(stack.keys.jwtSecret, id) };
}

async function execute(stack: Stack, who: Tenant, kind: string, command: string): Promise<string> {
  for (;;) {
    const res = await fetch(`${stack.apiUrl}/functions/v1/sandbox/execute`, {
      method: "POST",
      headers: { authorization: `Bearer ${who.token}`, apikey: stack.keys.anonKey, "content-type": "application/json" },
      body: JSON.stringify({ command, requirements: { kind } }),
    });
    const body = (await res.json()) as { taskId?: string; error?: { message: string } };
    // A flood meets the tenant's rate limit: wait as told and go on, as a well-behaved client does.
    if (res.status === 429) {
      await new Promise((r) => setTimeout(r, 1000 * Number(res.headers.get("retry-after") ?? 1)));
      continue;
    }
    if (res.status !== 202 || !body.taskId) throw new Error(`fairness bench: POST /execute → ${res.status} ${JSON.stringify(body)}`);
    return body.taskId;
  }
}

/** Submits A's flood (8 requests at a time) and returns the task ids. */
async function flood(stack: Stack, a: Tenant, kind: string): Promise<string[]> {
  const ids: string[] = [];
  let next = 0;
  await Promise.all(
    Array.from({ length: 8 }, async () => {
      while (next < FLOOD) {
        next++;
        ids.push(await execute(stack, a, kind, A_TASK));
      }
    }),
  );
  return ids;
}

async function pending(sql: Sql, ids: string[]): Promise<number> {
  const [r] = await sql<{ n: number }[]>`select count(*)::int as n from public.tasks where id = any(${ids}) and not (status = any(cogo.final_states()))`;
  return r!.n;
}

/** A's tasks per second from its first claim to its last finish; all must have succeeded. */
async function throughput(sql: Sql, ids: string[]): Promise<number> {
  const [r] = await sql<{ n: number; ok: number; span: number }[]>`
    select count(*)::int as n, count(*) filter (where status = 'succeeded')::int as ok,
           extract(epoch from max(finished_at) - min(claimed_at)) as span
      from public.tasks where id = any(${ids})`;
  if (r!.ok !== r!.n) throw new Error(`fairness bench: ${r!.n - r!.ok} of A's tasks did not succeed`);
  return r!.n / Number(r!.span);
}

async function until(done: () => Promise<boolean>, what: string, timeoutMs: number, tick?: () => Promise<void>): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await done())) {
    if (Date.now() > deadline) throw new Error(`fairness bench: ${what} took over ${timeoutMs / 1000} s`);
    await (tick ? tick() : new Promise((r) => setTimeout(r, 100)));
  }
}

/** One tenant fires FLOOD requests at once (8 in flight) at its default rate limit, no retries. */
async function rateLimited(stack: Stack, sql: Sql, kind: string): Promise<Row[]> {
  const r = await tenant(stack);
  const statuses: number[] = [];
  let retryAfter = "";
  const started = performance.now();
  let next = 0;
  await Promise.all(
    Array.from({ length: 8 }, async () => {
      while (next < FLOOD) {
        next++;
        const res = await fetch(`${stack.apiUrl}/functions/v1/sandbox/execute`, {
          method: "POST",
          headers: { authorization: `Bearer ${r.token}`, apikey: stack.keys.anonKey, "content-type": "application/json" },
          body: JSON.stringify({ command: "true", requirements: { kind } }),
        });
        await res.arrayBuffer();
        statuses.push(res.status);
        if (res.status === 429) retryAfter ||= res.headers.get("retry-after") ?? "(none)";
      }
    }),
  );
  const seconds = (performance.now() - started) / 1000;
  const accepted = statuses.filter((x) => x === 202).length;
  const refused = statuses.filter((x) => x === 429).length;
  const [stored] = await sql<{ n: number }[]>`select count(*)::int as n from public.tasks where owner = ${r.id}`;
  await sql`select cogo.cancel_task(id) from public.tasks where owner = ${r.id} and status = 'queued'`;
  const [limits] = await sql<{ l: { executePerSecond: number; executeBurst: number } }[]>`select cogo.tenant_limits_of(${r.id}) as l`;
  const expected = limits!.l.executeBurst + Math.ceil(limits!.l.executePerSecond * seconds);
  return [
    {
      metric: `rate limit: ${FLOOD} POST /execute at once`,
      value: `${accepted} accepted, ${refused} × 429 (Retry-After ${retryAfter} s) in ${seconds.toFixed(1)} s`,
      target: `≤ burst ${limits!.l.executeBurst} + ${limits!.l.executePerSecond}/s`,
      ok: accepted <= expected && accepted + refused === FLOOD,
    },
    { metric: "rate limit: tasks stored", value: String(stored!.n), target: "= accepted", ok: stored!.n === accepted },
  ];
}

export async function benchFairness(stack: Stack, sql: Sql, progress: (s: string) => void): Promise<Row[]> {
  const kind = "bench-fair";
  // A floods through the API as fast as it can: lift its request rate, not its share of the fleet.
  const raiseRateLimits = async (owner: string) => {
    await sql`select cogo.set_tenant_limits(${owner}, ${sql.json({ executePerSecond: 10_000, executeBurst: 10_000 })})`;
  };
  const worker = new Worker({ databaseUrl: stack.dbUrl, kind, concurrency: 4, workspaceRoot: "/var/tmp/cogo-bench-ws", log: () => {} });
  await worker.start();
  try {
    // 1. A alone: the same flood with nobody else queued.
    const alone = await tenant(stack);
    progress(`fairness: one tenant fires ${FLOOD} requests at its default rate limit…`);
    const limited = await rateLimited(stack, sql, `${kind}-limited`);
    await raiseRateLimits(alone.id);
    progress(`fairness: A alone, ${FLOOD} × \`${A_TASK}\`…`);
    const aloneIds = await flood(stack, alone, kind);
    await until(async () => (await pending(sql, aloneIds)) === 0, "A's tasks alone", 600_000);
    const aloneRate = await throughput(sql, aloneIds);

    // 2. A floods again; B and C each submit one task a second while A's backlog lasts.
    const [a, b, c] = [await tenant(stack), await tenant(stack), await tenant(stack)];
    await raiseRateLimits(a.id);
    progress(`fairness: A floods ${FLOOD}, B and C submit one task a second each…`);
    const aIds = await flood(stack, a, kind);
    const newcomers: string[] = [];
    await until(
      async () => (await pending(sql, aIds)) < 4,
      "A's backlog",
      600_000,
      async () => {
        // B on the second, C half a second later: two independent tenants, not one in lockstep.
        const tick = new Promise((r) => setTimeout(r, 1000));
        const cLater = new Promise((r) => setTimeout(r, 500)).then(() => execute(stack, c, kind, NEWCOMER_TASK));
        newcomers.push(await execute(stack, b, kind, NEWCOMER_TASK), await cLater);
        await tick;
      },
    );
    await until(async () => (await pending(sql, [...aIds, ...newcomers])) === 0, "the last tasks", 120_000);
    const rate = await throughput(sql, aIds);
    const waits = (await sql<{ ms: number }[]>`select extract(epoch from claimed_at - created_at) * 1000 as ms from public.tasks where id = any(${newcomers})`).map((r) =>
      Number(r.ms),
    );
    const [failed] = await sql<{ n: number }[]>`select count(*)::int as n from public.tasks where id = any(${newcomers}) and status <> 'succeeded'`;
    const p99 = percentile(waits, 99);
    const share = rate / aloneRate;
    return [
      ...limited,
      { metric: `A alone: ${FLOOD} × \`${A_TASK}\``, value: `${aloneRate.toFixed(1)} tasks/s` },
      { metric: "A beside B and C", value: `${rate.toFixed(1)} tasks/s` },
      { metric: "A's throughput vs alone", value: `${(share * 100).toFixed(1)} %`, target: "≥ 90 %", ok: share >= 0.9 },
      { metric: `B/C queue wait p50 (${waits.length} tasks)`, value: ms(percentile(waits, 50)) },
      { metric: "B/C queue wait p99", value: ms(p99), target: "< 1 s", ok: p99 < 1000 },
      { metric: "B/C max wait", value: ms(Math.max(...waits)) },
      { metric: "B/C tasks not succeeded", value: String(failed!.n), target: "0", ok: failed!.n === 0 },
    ];
  } finally {
    await worker.stop(0);
  }
}
