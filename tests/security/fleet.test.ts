// Issue 16, found #7: fleet views by role. A user sees each worker's kind, labels, load and health;
// its name (by default <hostname>-<pid>), version and host facts (pid, CPUs, toolchain) only the
// service role. Checked on every way a user reads the fleet: the API, the table, the `fleet` topic.
import { hostname } from "node:os";
import type { SupabaseClient } from "@supabase/supabase-js";
import type { Sql } from "postgres";
import { describe, expect, it } from "vitest";
import { FLEET_TOPIC, type WorkerChangedMessage, type WorkerSummary } from "../../sdk/index.ts";
import { Queue } from "../../worker/queue.ts";
import { api, newUser, subscribeBroadcast, sql, stack, startWorker, supabaseAs, uniqueKind, waitFor } from "../helpers/env.ts";

/** Exactly what a user sees of a worker. */
const PUBLIC_KEYS = ["capacity", "cpuBudget", "createdAt", "id", "kind", "labels", "lastHeartbeatAt", "leaseMs", "memoryBudgetBytes", "running", "status"];
const SERVICE_KEYS = [...PUBLIC_KEYS, "host", "name", "version"].sort();
const keys = (o: object) => Object.keys(o).sort();

/** Runs fn in a transaction as `role` with the claims PostgREST would set for that token. */
function as<T>(role: "anon" | "authenticated" | "service_role", sub: string | null, fn: (tx: Sql) => Promise<T>): Promise<T> {
  return sql.begin(async (tx) => {
    await tx`select set_config('role', ${role}, true), set_config('request.jwt.claims', ${JSON.stringify({ role, ...(sub ? { sub } : {}) })}, true)`;
    return await fn(tx as unknown as Sql);
  }) as Promise<T>;
}

const subscribe = (supabase: SupabaseClient, onMessage: (m: WorkerChangedMessage) => void) =>
  subscribeBroadcast(supabase, FLEET_TOPIC, (event, payload) => event === "worker_changed" && onMessage(payload as WorkerChangedMessage));

describe("fleet views by role", () => {
  it("a user's GET /workers, GET /fleet and GET /health show no host details; the service role's do", async () => {
    const kind = uniqueKind("fleet-view");
    const worker = await startWorker({ kind, labels: ["gpu"], concurrency: 2 });
    const user = await newUser();
    await user.sandbox.execute({ command: "sleep 5", requirements: { kind } });
    const mine = (workers: WorkerSummary[]) => workers.find((w) => w.id === worker.workerId);

    const listed = await waitFor(async () => {
      const w = mine((await api("GET", "/workers", { token: user.token })).body.workers);
      return w?.running === 1 ? w : undefined;
    }, "the user's view of the worker holding the task");
    expect(keys(listed)).toEqual(PUBLIC_KEYS);
    expect(listed).toMatchObject({ kind, labels: ["gpu"], capacity: 2, running: 1, status: "online", leaseMs: 10_000 });
    const fleet = await api("GET", "/fleet", { token: user.token });
    expect(fleet.status).toBe(200);
    expect(keys(mine(fleet.body.workers)!)).toEqual(PUBLIC_KEYS);
    for (const w of [...(await api("GET", "/workers", { token: user.token })).body.workers, ...fleet.body.workers]) {
      expect(keys(w)).toEqual(PUBLIC_KEYS);
    }
    // A worker gone silent is listed by GET /health, for anyone: named for the service role only.
    const ghost = await new Queue(sql).register({ name: `ghost-${kind}`, kind, labels: [], capacity: 1, leaseMs: 1000, version: "test", host: { pid: 1 } });
    await sql`update public.workers set last_heartbeat_at = now() - interval '10 seconds' where id = ${ghost.id}`;
    const silent = async (token: string) => ((await api("GET", "/health", { token })).body.blocks.silentWorkers as { id: string }[]).find((w) => w.id === ghost.id);
    expect(keys((await silent(user.token))!)).toEqual(["activeTasks", "id", "lastHeartbeatAt", "status"]);
    expect(keys((await silent(stack.anonKey))!)).toEqual(["activeTasks", "id", "lastHeartbeatAt", "status"]);
    expect(await silent(stack.serviceRoleKey)).toMatchObject({ name: `ghost-${kind}` });
    await sql`update public.workers set status = 'offline' where id = ${ghost.id}`;
    expect((await api("GET", "/workers", { token: stack.anonKey })).status).toBe(403);

    for (const route of ["/workers", "/fleet"]) {
      const res = await api("GET", route, { token: stack.serviceRoleKey });
      const w = mine(res.body.workers)!;
      expect(keys(w), route).toEqual(SERVICE_KEYS);
      expect(w, route).toMatchObject({ name: worker.options.name, version: expect.any(String) });
      expect(w.host, route).toMatchObject({ hostname: hostname(), pid: process.pid, cpus: expect.any(Number), sandbox: { toolchain: expect.any(Object) } });
    }
  });

  it("a user token reading public.workers directly (as PostgREST would for supabase-js) gets the public columns, never host", async () => {
    const kind = uniqueKind("fleet-table");
    const worker = await startWorker({ kind });
    const user = await newUser();
    // supabase-js .from('workers').select('*') becomes `select workers.*`; .select('host') names the column.
    for (const column of ['"public"."workers".*', "host", "name", "version", "id, host"]) {
      await expect(
        as("authenticated", user.id, (tx) => tx.unsafe(`select ${column} from public.workers`)),
        column,
      ).rejects.toThrow(/permission denied for table workers/);
    }
    await expect(as("authenticated", user.id, (tx) => tx.unsafe(`select w from public.workers w`))).rejects.toThrow(/permission denied/);
    const rows = await as(
      "authenticated",
      user.id,
      (tx) => tx`
      select id, kind, labels, capacity, status, lease_ms, last_heartbeat_at, created_at from public.workers where id = ${worker.workerId!}`,
    );
    expect(rows).toEqual([expect.objectContaining({ id: worker.workerId, kind, status: "online" })]);
    await expect(as("anon", null, (tx) => tx`select id from public.workers`)).rejects.toThrow(/permission denied/);
    // The summaries that include host are not the user's to call either.
    await expect(as("authenticated", user.id, (tx) => tx`select cogo.worker_summary(null::public.workers)`)).rejects.toThrow(/permission denied for function worker_summary/);
    const [own] = await as("authenticated", user.id, (tx) => tx<{ workers: object[] }[]>`select cogo.fleet_workers(false) as workers`);
    for (const w of own!.workers) expect(keys(w)).toEqual(PUBLIC_KEYS);
    const [svc] = await as("service_role", null, (tx) => tx<{ host: { pid: number } }[]>`select host from public.workers where id = ${worker.workerId!}`);
    expect(svc!.host.pid).toBe(process.pid);
  });

  it("the `fleet` topic carries exactly the public fields, heartbeats included", async () => {
    const kind = uniqueKind("fleet-topic");
    const user = await newUser();
    const got: WorkerChangedMessage[] = [];
    const channel = await subscribe(user.supabase, (m) => m.worker.kind === kind && got.push(m));
    const service: WorkerChangedMessage[] = [];
    const serviceClient = supabaseAs(stack.serviceRoleKey);
    await serviceClient.realtime.setAuth(); // the join carries the service key, not the anon key
    const serviceChannel = await subscribe(serviceClient, (m) => m.worker.kind === kind && service.push(m));
    const worker = await startWorker({ kind, labels: ["topic"], leaseMs: 1500 });
    await waitFor(() => got.length >= 3 && service.length >= 3, "registration and two heartbeats on the fleet topic", 10_000);
    await worker.stop(0);
    await waitFor(() => got.some((m) => m.worker.status === "offline"), "the worker going offline", 10_000);
    for (const m of [...got, ...service]) {
      expect(keys(m).filter((k) => k !== "id")).toEqual(["now", "queue", "worker"]); // id: the message's, added by Realtime
      expect(keys(m.worker)).toEqual(PUBLIC_KEYS);
    }
    expect(got[0]!.worker).toMatchObject({ id: worker.workerId, kind, labels: ["topic"], capacity: 4, running: 0, status: "online", leaseMs: 1500 });
    await user.supabase.removeChannel(channel);
    await serviceClient.removeChannel(serviceChannel);
  });
});
