// Recovery across workers and by request: worker kill -9 mid-task, reassign to another worker,
// POST /tasks/:id/recover and POST /recover/:workerId, /health, and request validation.
import { describe, expect, it } from "vitest";
import { Queue } from "../../worker/queue.ts";
import { api, newUser, sql, stack, startWorker, uniqueKind, waitFor } from "../helpers/env.ts";
import { spawnWorker as spawnWorkerProcess } from "../helpers/worker-process.ts";
import { eventsOf, FAST_DETECTION, story } from "./helpers.ts";

const spawnWorker = (kind: string, args: string[] = []) => spawnWorkerProcess(stack.dbUrl, kind, ["--concurrency", "1", ...args]);

const statusOf = async (id: string) => (await sql<{ status: string }[]>`select status from public.tasks where id = ${id}`)[0]!.status;

describe("recovery", () => {
  it("worker kill -9 mid-task: a worker_lost block, reassigned within the lease, finished once; /health shows it", async () => {
    const kind = uniqueKind("lost");
    const { kill, log } = spawnWorker(kind, ["--lease-ms", "2000"]);
    try {
      const user = await newUser();
      let out = "";
      const handle = await user.sandbox.execute(
        { command: 'echo "attempt starting"; sleep 2; echo done', maxAttempts: 3, requirements: { kind } },
        { onStdout: (d) => (out += d) },
      );
      await waitFor(() => out.includes("attempt starting"), "the first attempt to start", 30_000).catch((err) => {
        throw new Error(`${err.message}; the child worker said:\n${log()}`);
      });
      const [first] = await sql<{ workerId: string }[]>`select worker_id from public.tasks where id = ${handle.taskId}`;
      const killedAt = Date.now();
      kill("SIGKILL");
      await startWorker({ kind, leaseMs: 2000 });
      const r = await handle.result();
      expect(r.status).toBe("succeeded");
      expect(r.task.attempt).toBe(2);
      const events = await eventsOf(handle.taskId);
      expect(story(events)).toEqual(["block_detected:worker_lost", "recovery_started:reassign", "recovery_succeeded:reassign"]);
      const block = events.find((e) => e.type === "block_detected")!;
      expect(block.data).toMatchObject({ recoverable: true, evidence: { workerId: first!.workerId } });
      // Re-queued within the lease (2 s) plus one rescuer interval (1 s), with slack for a busy machine.
      expect(block.createdAt.getTime() - killedAt).toBeLessThan(2000 + 1000 + 3000);
      const running = events.filter((e) => e.type === "task_status" && e.data.status === "running");
      expect(running.map((e) => e.attempt)).toEqual([1, 2]);

      const health = await api("GET", "/health", { token: stack.anonKey });
      expect(health.status).toBe(200);
      expect(health.body.blocks.lastHour.workerLost).toBeGreaterThanOrEqual(1);
      expect(health.body.blocks.silentWorkers.map((w: { id: string }) => w.id)).toContain(first!.workerId);
    } finally {
      kill("SIGKILL");
    }
  });

  it("an idle stall that repeats is reassigned to another worker (the failed one excluded)", async () => {
    const kind = uniqueKind("reassign");
    await Promise.all([startWorker({ kind, concurrency: 2 }), startWorker({ kind, concurrency: 2 })]);
    const user = await newUser();
    const handle = await user.sandbox.execute({ command: "sleep infinity", maxAttempts: 3, requirements: { kind }, blockDetection: FAST_DETECTION, recovery: { backoffMs: 100 } });
    const r = await handle.result();
    const events = await eventsOf(handle.taskId);
    expect(story(events).filter((s) => s.startsWith("recovery_succeeded"))).toEqual([
      "recovery_succeeded:terminate",
      "recovery_succeeded:retry",
      "recovery_succeeded:terminate",
      "recovery_succeeded:reassign",
      "recovery_succeeded:terminate",
    ]);
    expect(r.status).toBe("failed");
    const workerOf = (attempt: number) => events.find((e) => e.type === "task_status" && e.data.status === "claimed" && e.attempt === attempt)!.data.workerId;
    expect(workerOf(3)).not.toBe(workerOf(2));
    expect(r.task.attempt).toBe(3);
  });

  it("a worker excluded from the task at the head of the queue claims the next one; alone, it takes the excluded one too", async () => {
    const kind = uniqueKind("excluded");
    const user = await newUser({ maxRunning: 100 }); // both tasks on one worker: no share cap
    const head = await user.sandbox.execute({ command: "echo head", requirements: { kind } });
    const next = await user.sandbox.execute({ command: "echo next", requirements: { kind } });
    const q = new Queue(sql);
    const register = (name: string) => q.register({ name, kind, labels: [], capacity: 1, leaseMs: 60_000, version: "test", host: {} });
    const [excluded, other] = await Promise.all([register("excluded"), register("other")]);
    // The state a `reassign` away from `excluded` leaves behind.
    await sql`update public.tasks set excluded_workers = ${[excluded.id]}::uuid[] where id = ${head.taskId}`;

    expect((await q.claim(excluded.id, 1)).map((t) => t.id)).toEqual([next.taskId]);
    await q.release({ taskId: next.taskId, attempt: 1, workerId: excluded.id }, "test");
    // With `other` silent, nobody else can take the head task: the exclusion gives way.
    await sql`update public.workers set last_heartbeat_at = now() - interval '5 minutes' where id = ${other.id}`;
    expect((await q.claim(excluded.id, 2)).map((t) => t.id)).toEqual([head.taskId, next.taskId]);
    await Promise.all([head.cancel(), next.cancel()]);
  });

  it("recovery.automatic false: the task stays blocked until POST /tasks/:id/recover feeds it", async () => {
    const kind = uniqueKind("manual");
    await startWorker({ kind });
    const user = await newUser();
    const handle = await user.sandbox.execute({
      command: 'read -p "Continue? [y/N] " a; echo "got $a"',
      stdin: "pipe",
      requirements: { kind },
      blockDetection: FAST_DETECTION,
      recovery: { automatic: false },
    });
    await waitFor(async () => (await statusOf(handle.taskId)) === "blocked", "the task to be blocked", 30_000);
    await new Promise((r) => setTimeout(r, 1500));
    expect(await statusOf(handle.taskId)).toBe("blocked"); // nothing recovers it on its own

    // A forced action that cannot apply is refused with a recovery_failed event; the task stays blocked.
    const refused = await api("POST", `/tasks/${handle.taskId}/recover`, { token: user.token, body: { action: "alternative_command" } });
    expect(refused.status).toBe(202);
    await waitFor(async () => (await eventsOf(handle.taskId)).some((e) => e.type === "recovery_failed"), "the refusal", 10_000);
    expect((await eventsOf(handle.taskId)).find((e) => e.type === "recovery_failed")!.data.message).toMatch(/no recovery.alternativeCommand/);

    const other = await newUser();
    expect((await api("POST", `/tasks/${handle.taskId}/recover`, { token: other.token, body: {} })).status).toBe(404);
    expect((await api("POST", `/tasks/${handle.taskId}/recover`, { token: user.token, body: { action: "explode" } })).body.error.message).toMatch(/^action:/);

    const res = await user.sandbox.recover(handle.taskId, { action: "feed_stdin", data: "y\n" });
    expect(res).toMatchObject({ applied: "sent_to_worker" });
    const r = await handle.result();
    expect(r).toMatchObject({ status: "succeeded", stdout: "got y\n" });
    expect(story(await eventsOf(handle.taskId))).toEqual([
      "block_detected:waiting_for_input",
      "recovery_failed:alternative_command",
      "recovery_started:feed_stdin",
      "recovery_succeeded:feed_stdin",
    ]);
    const finished = await api("POST", `/tasks/${handle.taskId}/recover`, { token: user.token, body: {} });
    expect(finished.status).toBe(409);
    expect(finished.body.error.message).toMatch(/is succeeded: only claimed, running, blocked or recovering/);
  });

  it("POST /recover/:workerId re-queues a silent worker's tasks at once (service key only)", async () => {
    const kind = uniqueKind("ghost");
    const user = await newUser();
    const handle = await user.sandbox.execute({ command: "echo ran", requirements: { kind } });
    const q = new Queue(sql);
    const ghost = await q.register({ name: "ghost", kind, labels: [], capacity: 1, leaseMs: 60_000, version: "test", host: {} });
    expect((await q.claim(ghost.id, 1)).map((t) => t.id)).toEqual([handle.taskId]);
    expect((await api("POST", `/recover/${ghost.id}`, { token: user.token })).status).toBe(403);

    // Live (it registered just now): nothing to take from it.
    const live = await api("POST", `/recover/${ghost.id}`, { token: stack.serviceRoleKey });
    expect(live.body).toMatchObject({ silent: false, requeued: 0 });
    // Silent for a minute, since before it claimed the task (a task claimed a moment ago is left to it).
    await sql`update public.workers set last_heartbeat_at = now() - interval '1 minute' where id = ${ghost.id}`;
    await sql`update public.tasks set claimed_at = now() - interval '1 minute' where id = ${handle.taskId}`;
    const res = await api("POST", `/recover/${ghost.id}`, { token: stack.serviceRoleKey });
    expect(res.status).toBe(202);
    expect(res.body).toMatchObject({ workerId: ghost.id, silent: true, requeued: 1 });
    await startWorker({ kind });
    const r = await handle.result();
    expect(r).toMatchObject({ status: "succeeded", stdout: "ran\n" });
    expect(story(await eventsOf(handle.taskId))).toEqual(["block_detected:worker_lost", "recovery_started:reassign", "recovery_succeeded:reassign"]);
    expect((await api("POST", `/recover/00000000-0000-4000-8000-000000000000`, { token: stack.serviceRoleKey })).status).toBe(404);
  });

  it("rejects bad thresholds and recovery options naming the field; nothing is written", async () => {
    const user = await newUser();
    const kind = uniqueKind("invalid");
    const bad = await api("POST", "/execute", { token: user.token, body: { command: "true", requirements: { kind }, blockDetection: { infiniteLoopMs: 5 } } });
    expect(bad.status).toBe(400);
    expect(bad.body.error.message).toMatch(/^blockDetection\.infiniteLoopMs:/);
    const bad2 = await api("POST", "/execute", { token: user.token, body: { command: "true", requirements: { kind }, recovery: { limitCeilings: { cpu: 1 } } } });
    expect(bad2.status).toBe(400);
    expect(bad2.body.error.message).toMatch(/^recovery\.limitCeilings/);
    const [n] = await sql<{ n: number }[]>`select count(*)::int as n from public.tasks where required_kind = ${kind}`;
    expect(n!.n).toBe(0);
    const ok = await api("POST", "/execute", {
      token: user.token,
      body: { command: "true", requirements: { kind }, blockDetection: { idleStallMs: 5000 }, recovery: { stdinAnswer: "y\n" } },
    });
    expect(ok.status).toBe(202);
    const task = await api("GET", `/tasks/${ok.body.taskId}`, { token: user.token });
    expect(task.body).toMatchObject({ blockDetection: { idleStallMs: 5000 }, recovery: { stdinAnswer: "y\n" } });
    // Recover data travels in a NOTIFY (< 8000 bytes): a longer answer is refused up front.
    const long = await api("POST", `/tasks/${ok.body.taskId}/recover`, { token: user.token, body: { action: "feed_stdin", data: "y".repeat(7000) } });
    expect(long.status).toBe(400);
    expect(long.body.error.message).toMatch(/^data: data is over 6000 bytes as JSON/);
  });
});
