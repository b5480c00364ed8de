// Leases are renewed from a thread of the worker's own: a main loop stalled for longer than the
// lease (a task's 600,000 files, a parse, a loaded machine) no longer loses them, so the task is
// not stopped, re-queued and run again. A main loop that never comes back lets them run out.
import { describe, expect, it } from "vitest";
import { HeartbeatThread, nowMs } from "../../worker/heartbeat.ts";
import { newUser, sql, stack, startWorker, uniqueKind, waitFor } from "../helpers/env.ts";

/** Holds this thread (the test's and the in-process worker's main loop) for `ms`. */
const stall = (ms: number) => {
  const until = performance.now() + ms;
  while (performance.now() < until) {
    /* busy, as a synchronous walk or parse is */
  }
};

describe("heartbeats on their own thread", () => {
  it("a main loop stalled for 1.5 leases keeps its task: it finishes on attempt 1, not re-run", async () => {
    const kind = uniqueKind("hb");
    const logs: string[] = [];
    await startWorker({ kind, concurrency: 1, leaseMs: 2000, log: (l) => logs.push(l) });
    const user = await newUser();
    const handle = await user.sandbox.execute({ command: "sleep 4; echo done", requirements: { kind } });
    await waitFor(async () => (await sql`select 1 from public.tasks where id = ${handle.taskId} and status = 'running'`).length > 0, "the task to run", 10_000, 20);
    stall(3000); // past the 2 s lease and the 1.4 s lease-safety point
    const r = await handle.result();
    expect(r).toMatchObject({ status: "succeeded", stdout: "done\n" });
    expect(r.task.attempt).toBe(1);
    expect(logs.filter((l) => l.includes("no heartbeat for"))).toEqual([]);
    const [renewed] = await sql<{ n: number }[]>`
      select count(*)::int as n from public.task_events where task_id = ${handle.taskId} and type = 'task_status' and data->>'status' = 'queued'`;
    expect(renewed!.n).toBe(0);
  });

  it("a main loop that stops ticking stops the renewals: leases run out", async () => {
    const [w] = await sql<{ id: string }[]>`
      select * from cogo.register_worker(${uniqueKind("wedged")}, 'wedged', '{}', 1, 2000, 'test', '{}'::jsonb)`;
    const beats: number[] = [];
    const failures: string[] = [];
    const died: string[] = [];
    const startedAt = nowMs();
    const hb = new HeartbeatThread({
      databaseUrl: stack.dbUrl,
      workerId: w!.id,
      intervalMs: 100,
      maxMainStallMs: 500,
      applicationName: "heartbeat test",
      onBeat: (b) => beats.push(b.sentAt),
      onDied: (reason) => died.push(reason),
      log: (l) => failures.push(l),
    });
    try {
      // mainAlive() is never called after the start: within 500 ms the thread stops renewing.
      await waitFor(() => failures.some((l) => l.includes("the main loop has not run for")), "renewals to stop", 5000, 20);
      const lastOk = hb.lastOkAt;
      expect(lastOk).toBeGreaterThan(startedAt);
      expect(lastOk - startedAt).toBeLessThan(1500);
      await new Promise((r) => setTimeout(r, 400));
      expect(hb.lastOkAt).toBe(lastOk); // nothing renewed since
      // While the main loop ticks, it renews again.
      const keepAlive = setInterval(() => hb.mainAlive(), 50);
      await waitFor(() => hb.lastOkAt > lastOk, "renewals to resume", 5000, 20);
      clearInterval(keepAlive);
      expect(beats.length).toBeGreaterThan(1);
    } finally {
      await hb.stop();
      expect(died).toEqual([]); // a stop() is no death
      await sql`update public.workers set status = 'offline' where id = ${w!.id}`;
    }
  });
});
