// Many tasks over two workers, and a worker killed mid-task: nothing runs twice, nothing is lost.
import { describe, expect, it } from "vitest";
import { LeaseLostError } from "../../worker/db.ts";
import { Queue } from "../../worker/queue.ts";
import { SANDBOX_DEFAULTS } from "../../worker/sandbox/index.ts";
import { acquireSlot } from "../../worker/sandbox/slots.ts";
import { newUser, sql, stack, startWorker, uniqueKind, waitFor } from "../helpers/env.ts";
import { spawnWorker as spawnWorkerProcess } from "../helpers/worker-process.ts";

const spawnWorker = (kind: string, args: string[] = []) => spawnWorkerProcess(stack.dbUrl, kind, ["--concurrency", "1", ...args]);

describe("failover", () => {
  it("a worker without a free sandbox hands the task back while attempts remain, then fails it saying why", async () => {
    const kind = uniqueKind("busy");
    // The worker's only sandbox slot (a uid range of its own) is held here, as another worker of the machine would.
    const uidBase = 450_000;
    const held = await acquireSlot({ uidBase, gidBase: uidBase, slots: 1, slotDir: SANDBOX_DEFAULTS.slotDir, waitMs: 0 });
    try {
      const worker = await startWorker({ kind, concurrency: 1, sandboxUidBase: uidBase, sandbox: { slots: 1, slotWaitMs: 200 } });
      const user = await newUser();
      const handle = await user.sandbox.execute({ command: "echo never", requirements: { kind }, maxAttempts: 2 });
      const r = await handle.result();
      expect(r).toMatchObject({ status: "failed", stdout: "", reason: "could not run: all 1 sandbox uid slots are in use" });
      expect(r.task.attempt).toBe(2);
      const statuses = await sql<{ status: string; attempt: number; reason: string | null }[]>`
        select data->>'status' as status, (data->>'attempt')::int as attempt, data->>'reason' as reason
          from public.task_events where task_id = ${r.taskId} and type = 'task_status' order by seq`;
      expect(statuses.map((e) => `${e.status}#${e.attempt}`)).toEqual(["claimed#1", "running#1", "queued#1", "claimed#2", "running#2", "failed#2"]);
      expect(statuses[2]!.reason).toBe(`no free sandbox on worker ${worker.workerId} (all 1 sandbox uid slots are in use); re-queued`);
    } finally {
      await held.release(false);
    }
  });

  it("2 workers × 200 tasks: each runs exactly once, both workers take part", async () => {
    const kind = uniqueKind("pair");
    const user = await newUser();
    const ids: string[] = [];
    for (let i = 0; i < 200; i++) {
      const r = await user.supabase.functions.invoke("sandbox/execute", { body: { command: `echo ${i}`, requirements: { kind } } });
      ids.push((r.data as { taskId: string }).taskId);
    }
    // A production-length lease: with the tests' 3 s one, a heartbeat stalled 2.1 s on a loaded
    // 2-core machine makes a worker stop and hand back its tasks (by design), which ran them twice.
    const [a, b] = await Promise.all([startWorker({ kind, concurrency: 8, leaseMs: 15_000 }), startWorker({ kind, concurrency: 8, leaseMs: 15_000 })]);
    await waitFor(
      async () => {
        const [row] = await sql<{ n: number }[]>`select count(*)::int as n from public.tasks where id = any(${ids}) and finished_at is not null`;
        return row!.n === 200;
      },
      "200 tasks to finish",
      170_000,
      250,
    ).catch(async (err) => {
      const states = await sql`select status, attempt, reason, count(*)::int as n from public.tasks where id = any(${ids}) group by 1, 2, 3`;
      throw new Error(`${err.message}: ${JSON.stringify(states)}`);
    });
    const failed = await sql<{ status: string; reason: string }[]>`select status, reason from public.tasks where id = any(${ids}) and status <> 'succeeded' limit 3`;
    expect(failed).toEqual([]);
    const rows = await sql<{ attempt: number; workerId: string; runs: number; out: string }[]>`
      select t.attempt, t.worker_id,
             (select count(*)::int from public.task_events e where e.task_id = t.id and e.type = 'task_status' and e.data->>'status' = 'running') as runs,
             (select string_agg(data, '' order by seq) from public.task_output o where o.task_id = t.id) as out
        from public.tasks t where t.id = any(${ids})`;
    const again = rows.filter((r) => r.attempt !== 1 || r.runs !== 1);
    if (again.length) {
      const [t] = await sql`select id, status, reason, attempt from public.tasks where id = any(${ids}) and (attempt <> 1) limit 1`;
      const events = t ? await sql`select type, attempt, data from public.task_events where task_id = ${t.id} order by seq` : [];
      expect.fail(`ran more than once: ${JSON.stringify(again.slice(0, 3))}; ${JSON.stringify(t)} ${JSON.stringify(events)}`);
    }
    const outs = rows.map((r) => r.out).sort();
    expect(outs).toEqual(Array.from({ length: 200 }, (_, i) => `${i}\n`).sort());
    const perWorker = new Map<string, number>();
    for (const r of rows) perWorker.set(r.workerId, (perWorker.get(r.workerId) ?? 0) + 1);
    expect(perWorker.get(a.workerId!)).toBeGreaterThan(0);
    expect(perWorker.get(b.workerId!)).toBeGreaterThan(0);
  }, 180_000);

  it("kill -9 of a worker mid-task: the lease expires, the task is re-queued and completes once; late writes are refused", async () => {
    const kind = uniqueKind("kill9");
    const { kill, log: childLog } = spawnWorker(kind, ["--lease-ms", "2000"]);
    try {
      const user = await newUser();
      let out = "";
      const handle = await user.sandbox.execute(
        { command: 'echo "attempt starting"; sleep 2; echo done', maxAttempts: 3, requirements: { kind } },
        { onStdout: (d) => (out += d) },
      );
      await waitFor(() => out.includes("attempt starting"), "first attempt to start", 30_000).catch((err) => {
        throw new Error(`${err.message}; the child worker said:\n${childLog()}`);
      });
      const [first] = await sql<{ workerId: string; attempt: number }[]>`select worker_id, attempt from public.tasks where id = ${handle.taskId}`;
      kill("SIGKILL");
      await startWorker({ kind, leaseMs: 2000 });
      const r = await handle.result();
      expect(r.status).toBe("succeeded");
      expect(r.task.attempt).toBe(2);
      expect(r.stdout).toBe("attempt starting\nattempt starting\ndone\n");
      const system = await sql<{ data: string }[]>`select data from public.task_output where task_id = ${handle.taskId} and stream = 'system' order by seq`;
      expect(system[0]!.data).toMatch(/attempt 1 lost: worker .* stopped heartbeating; re-queued/);
      const runs = await sql`select 1 from public.task_events where task_id = ${handle.taskId} and type = 'task_status' and data->>'status' = 'running'`;
      expect(runs.length).toBe(2);
      // The dead worker's attempt is fenced off.
      const q = new Queue(sql);
      const stale = { taskId: handle.taskId, attempt: first!.attempt, workerId: first!.workerId };
      await expect(q.appendOutput(stale, 1, [{ stream: "stdout", data: "late\n", at: new Date() }])).rejects.toBeInstanceOf(LeaseLostError);
      await expect(q.finish(stale, { status: "failed", exitCode: 1, signal: null, reason: "late", usage: {} })).rejects.toBeInstanceOf(LeaseLostError);
      expect((await user.sandbox.getTask(handle.taskId)).status).toBe("succeeded");
    } finally {
      kill("SIGKILL");
    }
  });

  it("fails a task whose attempts are used up by dying workers", async () => {
    const kind = uniqueKind("exhaust");
    const user = await newUser();
    const handle = await user.sandbox.execute({ command: "sleep 30", maxAttempts: 1, requirements: { kind } });
    // Simulate a worker that claimed it and died: claim with a registered worker that never heartbeats.
    const q = new Queue(sql);
    const w = await q.register({ name: "ghost", kind, labels: [], capacity: 1, leaseMs: 1000, version: "test", host: {} });
    expect((await q.claim(w.id, 1)).map((t) => t.id)).toEqual([handle.taskId]);
    await new Promise((r) => setTimeout(r, 1100));
    await q.requeueExpired(); // this file's workers run the rescuer too; whichever runs first ends it
    const r = await handle.result();
    expect(r.status).toBe("failed");
    expect(r.reason).toMatch(/no attempts left \(max 1\)/);
  });

  it("SIGTERM: the worker stops claiming, hands back what outlives its grace, and exits; another worker finishes it", async () => {
    const kind = uniqueKind("sigterm");
    const w = spawnWorker(kind, ["--grace-ms", "500"]);
    const user = await newUser();
    let out = "";
    const handle = await user.sandbox.execute({ command: "echo begin; sleep 3; echo end", requirements: { kind } }, { onStdout: (d) => (out += d) });
    await waitFor(() => out.includes("begin"), "task to start", 30_000);
    w.child.kill("SIGTERM");
    expect(await w.exited).toBe(0);
    expect(w.log()).toMatch(/grace of 500 ms over; stopping 1 task\(s\) and re-queueing them/);
    const [row] = await sql<{ status: string }[]>`select status from public.tasks where id = ${handle.taskId}`;
    expect(row!.status).toBe("queued");
    await startWorker({ kind });
    const r = await handle.result();
    expect(r).toMatchObject({ status: "succeeded", stdout: "begin\nbegin\nend\n" });
  });

  it("a worker whose database connections are killed mid-task reconnects and finishes it once", async () => {
    const kind = uniqueKind("dbdrop");
    const w = await startWorker({ kind, name: `dbdrop-${kind}` });
    const user = await newUser();
    const lines: number[] = [];
    const handle = await user.sandbox.execute(
      { command: "for i in $(seq 1 40); do echo $i; sleep 0.05; done", requirements: { kind } },
      { onOutput: (c) => lines.push(c.sequence) },
    );
    await waitFor(() => lines.length >= 3, "output to flow", 20_000);
    const killed = await sql<{ ok: boolean }[]>`
      select pg_terminate_backend(pid) as ok from pg_stat_activity where application_name = ${"cogo-worker " + w.options.name}`;
    expect(killed.length).toBeGreaterThan(0);
    const r = await handle.result();
    expect(r.status).toBe("succeeded");
    expect(r.stdout).toBe(Array.from({ length: 40 }, (_, i) => `${i + 1}\n`).join(""));
    expect(r.task.attempt).toBe(1);
    expect(lines).toEqual(lines.map((_, i) => i + 1));
  });

  it("a worker sent SIGTERM the moment it says online still stops in order (npm start stops its workers so)", async () => {
    const kind = uniqueKind("early-signal");
    const w = spawnWorker(kind);
    // On the very chunk that says online: the worker is still starting to listen then.
    w.child.stderr!.on("data", (d: Buffer) => / online: /.test(String(d)) && w.child.kill("SIGTERM"));
    const code = await w.exited;
    expect(w.log()).toMatch(/ online: [\s\S]*SIGTERM: finishing running tasks[\s\S]*worker \S+ stopped\n/);
    expect(code).toBe(0);
    const [row] = await sql<{ status: string }[]>`select status from public.workers where kind = ${kind}`;
    expect(row!.status).toBe("offline");
  });

  it("append_output is idempotent: a batch retried after a lost reply is written once", async () => {
    const kind = uniqueKind("retry");
    const user = await newUser();
    const handle = await user.sandbox.execute({ command: "true", requirements: { kind } });
    const q = new Queue(sql);
    const w = await q.register({ name: "retrier", kind, labels: [], capacity: 1, leaseMs: 30_000, version: "test", host: {} });
    const [task] = await q.claim(w.id, 1);
    const lease = { taskId: task!.id, attempt: task!.attempt, workerId: w.id };
    const first = (await q.start(lease)) + 1;
    const batch = [{ stream: "stdout" as const, data: "once\n", at: new Date() }];
    await q.appendOutput(lease, first, batch);
    await q.appendOutput(lease, first, batch);
    await expect(q.appendOutput(lease, first + 5, batch)).rejects.toBeInstanceOf(LeaseLostError);
    const rows = await sql`select seq, data from public.task_output where task_id = ${handle.taskId}`;
    expect(rows.map((r) => r.data)).toEqual(["once\n"]);
    await q.finish(lease, { status: "succeeded", exitCode: 0, signal: null, reason: "test", usage: {} });
    expect((await handle.result()).stdout).toBe("once\n");
  });
});
