// Faults that hit a worker while a workload of streaming tasks runs: kill -9, a blackholed
// database connection, SIGTERM, and a task filling its workspace. After each, the invariants of
// harness.ts hold: every task ends once, output is gap- and duplicate-free in the database and
// at a live SDK client, no task ran twice at once, no sandbox is left.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { sql, stack, startWorker, uniqueKind } from "../helpers/env.ts";
import { checkInvariants, SandboxWatch, spawnWorker, streaming, submitWorkload, tenant, waitFor, type Tenant } from "./harness.ts";
import { TcpProxy } from "./tcp-proxy.ts";

const ep = { apiUrl: stack.apiUrl, dbUrl: stack.dbUrl, anonKey: stack.anonKey, jwtSecret: stack.jwtSecret };
const watch = new SandboxWatch();
let user: Tenant;

beforeAll(async () => {
  watch.start();
  user = await tenant(ep);
  // Each scenario fills a worker with this one tenant's tasks: lift the default 3/4 share cap.
  await sql`select cogo.set_tenant_limits(${user.id}, ${sql.json({ maxRunning: 100 })})`;
});
afterAll(async () => {
  watch.stop();
  await user.close();
});

const attempts = (ids: string[]) => sql<{ id: string; attempt: number; reason: string }[]>`select id, attempt, reason from public.tasks where id = any(${ids})`;

describe("faults: workers", () => {
  it("1. kill -9 of a worker mid-stream: its tasks come back after the lease and run once more, on another worker", async () => {
    const kind = uniqueKind("f-kill");
    const a = spawnWorker(stack.dbUrl, kind, ["--concurrency", "4", "--lease-ms", "2000"]);
    try {
      const tasks = await submitWorkload(user, { count: 4, kind, lines: 80 });
      await streaming(tasks).catch((e) => Promise.reject(new Error(`${e.message}; worker log:\n${a.log()}`)));
      a.kill("SIGKILL");
      await startWorker({ kind, leaseMs: 2000 });
      expect(await checkInvariants(sql, tasks, watch)).toEqual([]);
      for (const t of await attempts(tasks.map((x) => x.handle.taskId))) expect(t.attempt).toBe(2);
    } finally {
      a.kill("SIGKILL");
    }
  }, 120_000);

  it("3. a blackholed database connection: the worker stops its sandboxes before its lease runs out; another worker re-runs them", async () => {
    const kind = uniqueKind("f-hole");
    const leaseMs = 3000;
    const { proxy, url } = await TcpProxy.start(stack.dbUrl);
    const logs: string[] = [];
    try {
      const a = await startWorker({ databaseUrl: url, kind, concurrency: 3, leaseMs, name: `hole-${kind}`, log: (l) => logs.push(`${Date.now()} ${l}`) });
      const tasks = await submitWorkload(user, { count: 3, kind, lines: 120 });
      const ids = tasks.map((t) => t.handle.taskId);
      await streaming(tasks);
      // The lease each task holds is only ever extended; its latest value is when it runs out.
      const expiry = new Map<string, number>();
      let polling = true;
      const poller = (async () => {
        while (polling) {
          for (const r of await sql<{ id: string; exp: Date | null }[]>`select id, lease_expires_at as exp from public.tasks where id = any(${ids}) and attempt = 1`) {
            if (r.exp) expiry.set(r.id, Math.max(expiry.get(r.id) ?? 0, r.exp.getTime()));
          }
          await new Promise((r) => setTimeout(r, 50));
        }
      })();
      proxy.blackhole();
      await startWorker({ kind, leaseMs });
      await waitFor(async () => (await attempts(ids)).every((t) => t.attempt === 2), "the tasks to be re-claimed", 60_000);
      polling = false;
      await poller;
      expect(await checkInvariants(sql, tasks, watch)).toEqual([]);
      for (const t of tasks) {
        const [first, second] = [...(watch.runs.get(t.mark)?.values() ?? [])];
        expect(second, `task ${t.handle.taskId} ran a second time`).toBeDefined();
        // The watch samples every 20 ms: the first sandbox was last seen alive before its lease ran out.
        expect(first!.last, `first sandbox of ${t.handle.taskId} gone before its lease expired`).toBeLessThan(expiry.get(t.handle.taskId)!);
      }
      expect(logs.join("\n")).toMatch(/no heartbeat for \d+ ms: stopping 3 task\(s\) before their leases expire/);
      const stoppedAt = Number(logs.find((l) => l.includes("no heartbeat for"))!.split(" ")[0]);
      // It acts at 70 % of the lease: well before the end, not at the last moment.
      for (const id of ids) expect(stoppedAt, `worker stopped task ${id} ahead of its lease's end`).toBeLessThan(expiry.get(id)! - leaseMs * 0.1);
      proxy.heal(); // the stranded worker reconnects, finds its leases lost, and can stop
      await a.stop(0);
    } finally {
      await proxy.close();
    }
  }, 150_000);

  it("4. SIGTERM drain: tasks that finish within the grace finish there; the rest are handed back and finished elsewhere", async () => {
    const kind = uniqueKind("f-term");
    // The grace splits the margins: the short tasks (~0.5 s of output) have 4 s to finish, the
    // long ones (~10 s of output) are still mid-stream when it ends.
    const a = spawnWorker(stack.dbUrl, kind, ["--concurrency", "4", "--grace-ms", "4000"]);
    try {
      const short = await submitWorkload(user, { count: 2, kind, lines: 10 });
      const long = await submitWorkload(user, { count: 2, kind, lines: 200 });
      await streaming([...short, ...long], 1);
      a.kill("SIGTERM");
      expect(await a.exited).toBe(0);
      expect(a.log()).toMatch(/grace of 4000 ms over; stopping 2 task\(s\) and re-queueing them/);
      await startWorker({ kind });
      expect(await checkInvariants(sql, [...short, ...long], watch)).toEqual([]);
      const byId = new Map((await attempts([...short, ...long].map((t) => t.handle.taskId))).map((t) => [t.id, t.attempt]));
      for (const t of short) expect(byId.get(t.handle.taskId)).toBe(1);
      // Handed back (a slow machine may lose a later attempt's lease too: that is another fault).
      for (const t of long) {
        expect(byId.get(t.handle.taskId)).toBeGreaterThanOrEqual(2);
        const reasons = await sql<{ reason: string }[]>`
          select data->>'reason' as reason from public.task_events where task_id = ${t.handle.taskId} and type = 'task_status' and data->>'status' = 'queued' and attempt = 1`;
        expect(reasons.map((r) => r.reason)).toEqual(["worker shut down before the task finished; re-queued"]);
      }
    } finally {
      a.kill("SIGKILL");
    }
  }, 150_000);

  it("4b. SIGTERM with a grace longer than the lease: heartbeats go on, so the task finishes where it runs, once", async () => {
    const kind = uniqueKind("f-grace");
    const a = spawnWorker(stack.dbUrl, kind, ["--lease-ms", "2000", "--grace-ms", "15000"]);
    try {
      const [task] = await submitWorkload(user, { count: 1, kind, lines: 120 }); // ~6 s of output
      await streaming([task!], 1);
      a.kill("SIGTERM");
      // Another worker of the kind, whose lease rescuer would take the task if its lease ran out.
      await startWorker({ kind, leaseMs: 2000 });
      expect(await a.exited).toBe(0);
      expect(a.log()).not.toMatch(/grace of/);
      expect(await checkInvariants(sql, [task!], watch)).toEqual([]);
      expect((await attempts([task!.handle.taskId]))[0]).toMatchObject({ attempt: 1 });
    } finally {
      a.kill("SIGKILL");
    }
  }, 150_000);

  it("7. disk full in a task workspace: the task sees ENOSPC and keeps streaming; the next task on the slot gets a clean, empty workspace", async () => {
    const kind = uniqueKind("f-disk");
    await startWorker({ kind, concurrency: 2 });
    const MiB = 1024 * 1024;
    const fill = "echo filling; dd if=/dev/zero of=/workspace/fill bs=64k 2>&1; echo after-full; df -k /workspace | tail -n 1; ls /workspace";
    const full = await Promise.all([1, 2].map(async () => (await user.sandbox.execute({ command: fill, limits: { workspaceBytes: 2 * MiB }, requirements: { kind } })).result()));
    for (const r of full) {
      expect(r.status).toBe("succeeded");
      expect(r.stdout).toMatch(/No space left on device/);
      expect(r.stdout).toMatch(/after-full\n/);
    }
    const next = await Promise.all(
      [1, 2].map(async () =>
        (
          await user.sandbox.execute({
            command: "ls -A /workspace | wc -l; head -c 1500000 /dev/zero > /workspace/big && echo wrote",
            limits: { workspaceBytes: 2 * MiB },
            requirements: { kind },
          })
        ).result(),
      ),
    );
    for (const r of next) expect(r).toMatchObject({ status: "succeeded", stdout: "0\nwrote\n" });
    const rows = await sql<{ n: number; max: string }[]>`
      select count(*)::int as n, max(seq) as max from public.task_output o join public.tasks t on t.id = o.task_id where t.required_kind = ${kind} group by o.task_id`;
    for (const r of rows) expect(r.n).toBe(Number(r.max));
  }, 120_000);
});
