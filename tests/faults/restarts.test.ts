// Faults that restart shared parts: Postgres, the Realtime endpoint (and a client's dropped
// WebSocket), the functions and the gateway. They run on a private stack of their own, so no
// other test file sees its database or endpoints go away.
import { randomUUID } from "node:crypto";
import { rm } from "node:fs/promises";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { freePort } from "../../embedded/ports.ts";
import { startStack, type Stack } from "../../embedded/stack.ts";
import { connect } from "../../functions/_shared/db.ts";
import { Worker } from "../../worker/worker.ts";
import type { WorkerOptions } from "../../worker/config.ts";
import { checkInvariants, dropWebSocket, SandboxWatch, streaming, submitWorkload, tenant, waitFor, WORKSPACES, type Endpoints, type Tenant } from "./harness.ts";

let stack: Stack;
let ep: Endpoints;
let sql: ReturnType<typeof connect>;
let user: Tenant;
const watch = new SandboxWatch();
const workers: Worker[] = [];
const dataDir = `/var/tmp/cogo-test-faults-${process.pid}`;

async function worker(kind: string, options: Partial<WorkerOptions> = {}): Promise<Worker> {
  const w = new Worker({ databaseUrl: stack.dbUrl, kind, concurrency: 4, leaseMs: 10_000, pollIntervalMs: 500, workspaceRoot: WORKSPACES, log: () => {}, ...options });
  await w.start();
  workers.push(w);
  return w;
}

beforeAll(async () => {
  stack = await startStack({ dataDir, reset: true, dbPort: await freePort(), apiPort: 0, watch: false });
  ep = { apiUrl: stack.apiUrl, dbUrl: stack.dbUrl, anonKey: stack.keys.anonKey, jwtSecret: stack.keys.jwtSecret };
  sql = connect(stack.dbUrl, { max: 2 });
  user = await tenant(ep);
  watch.start();
});

afterAll(async () => {
  watch.stop();
  await user?.close();
  await Promise.all(workers.map((w) => w.stop(0)));
  await sql?.end({ timeout: 5 });
  await stack?.stop();
  await rm(dataDir, { recursive: true, force: true });
});

const kindOf = (p: string) => `${p}-${randomUUID().slice(0, 8)}`;

describe("faults: restarts (private stack)", () => {
  it("2. Postgres restart under load: workers, functions, Realtime and clients reconnect; nothing lost or doubled", async () => {
    const kind = kindOf("f-pg");
    await Promise.all([worker(kind, { concurrency: 3 }), worker(kind, { concurrency: 3 })]);
    const tasks = await submitWorkload(user, { count: 6, kind, lines: 120 });
    await streaming(tasks);
    const [before] = await sql<{ t: Date }[]>`select pg_postmaster_start_time() as t`;
    await stack.restart("postgres");
    const [after0] = await sql<{ t: Date }[]>`select pg_postmaster_start_time() as t`;
    expect(after0!.t.getTime(), "a new postmaster").toBeGreaterThan(before!.t.getTime());
    expect(await checkInvariants(sql, tasks, watch)).toEqual([]);
    // After the restart the queue works as before: a new task is claimed (LISTEN/poll) and streams.
    const after = await submitWorkload(user, { count: 1, kind, lines: 5 });
    expect(await checkInvariants(sql, after, watch)).toEqual([]);
    expect((await user.sandbox.health()).db.ok).toBe(true);
  }, 150_000);

  it("5. Realtime endpoint restart, then a dropped client WebSocket: the SDK rejoins and backfills by seq", async () => {
    const kind = kindOf("f-rt");
    await worker(kind);
    // Polling slowed down to 30 s: the tasks finish in time only if live delivery comes back.
    const tasks = await submitWorkload(user, { count: 4, kind, lines: 150, pollIntervalMs: 30_000 });
    await streaming(tasks);
    await stack.restart("realtime");
    await waitFor(() => tasks.every((t) => t.received.length > 40), "output after the Realtime restart", 30_000);
    dropWebSocket(user.supabase);
    const t0 = Date.now();
    expect(await checkInvariants(sql, tasks, watch)).toEqual([]);
    expect(Date.now() - t0).toBeLessThan(25_000);
  }, 150_000);

  it("6. functions and gateway restarted with requests in flight: each fails cleanly or succeeds; retried with its Idempotency-Key, each makes one task", async () => {
    const kind = kindOf("f-gw");
    await worker(kind, { concurrency: 8 });
    const keys = Array.from({ length: 40 }, () => randomUUID());
    const outcomes: string[] = [];
    let inFlight = 0;
    const inFlightAtRestart: number[] = [];
    const taskFor = new Map<string, string>();
    const submit = async (key: string) => {
      for (let tries = 0; tries < 100; tries++) {
        inFlight++;
        try {
          const res = await fetch(`${stack.apiUrl}/functions/v1/sandbox/execute`, {
            method: "POST",
            headers: { authorization: `Bearer ${user.token}`, "content-type": "application/json", "idempotency-key": key },
            body: JSON.stringify({ command: `echo ${key}`, requirements: { kind } }),
          });
          const body = (await res.json().catch(() => null)) as { taskId?: string } | null;
          outcomes.push(String(res.status));
          if (res.status === 202 && body?.taskId) {
            if (taskFor.has(key) && taskFor.get(key) !== body.taskId) throw new Error(`key ${key} got two tasks`);
            taskFor.set(key, body.taskId);
            return;
          }
          expect(res.status, "a failed request says so with a 5xx").toBeGreaterThanOrEqual(500);
        } catch (err) {
          if (err instanceof Error && /two tasks|5xx/.test(err.message)) throw err;
          outcomes.push("network");
        } finally {
          inFlight--;
        }
        await new Promise((r) => setTimeout(r, 100));
      }
      throw new Error(`key ${key}: no 202 after 100 tries`);
    };
    const lanes = 4;
    const all = Promise.all(
      Array.from({ length: lanes }, async (_, lane) => {
        for (let i = lane; i < keys.length; i += lanes) await submit(keys[i]!);
      }),
    );
    await waitFor(() => taskFor.size >= 5, "first submissions", 30_000);
    inFlightAtRestart.push(inFlight);
    await stack.restart("functions");
    await waitFor(() => taskFor.size >= 20, "submissions after the functions restart", 60_000);
    inFlightAtRestart.push(inFlight);
    await stack.restart("gateway");
    await all;
    expect(
      inFlightAtRestart.some((n) => n > 0),
      "requests were in flight when a restart hit",
    ).toBe(true);
    // One task per key, each whole and run once.
    const rows = await sql<{ key: string; n: number; command: string; status: string }[]>`
      select idempotency_key as key, count(*)::int as n, min(command) as command, min(status::text) as status
        from public.tasks where owner = ${user.id} and idempotency_key = any(${keys}) group by 1`;
    expect(rows.length).toBe(keys.length);
    for (const r of rows) expect(r).toMatchObject({ n: 1, command: `echo ${r.key}` });
    await waitFor(
      async () => {
        const [r] = await sql<{ n: number }[]>`select count(*)::int as n from public.tasks where owner = ${user.id} and idempotency_key = any(${keys}) and status = 'succeeded'`;
        return r!.n === keys.length;
      },
      "all tasks to succeed",
      60_000,
    );
    const runs = await sql<{ n: number }[]>`
      select count(*)::int as n from public.task_events e join public.tasks t on t.id = e.task_id
       where t.owner = ${user.id} and t.idempotency_key = any(${keys}) and e.type = 'task_status' and e.data->>'status' = 'running'`;
    expect(runs[0]!.n).toBe(keys.length);
    console.log(
      `gateway fault: ${outcomes.length} requests: ${JSON.stringify(Object.fromEntries([...new Set(outcomes)].map((o) => [o, outcomes.filter((x) => x === o).length])))}`,
    );
  }, 180_000);
});
