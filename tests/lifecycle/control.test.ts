// Cancel, priority, idempotency and health: the queue's control surface.
import { describe, expect, it } from "vitest";
import { api, newUser, sql, stack, startWorker, uniqueKind, waitFor } from "../helpers/env.ts";

describe("queue control", () => {
  it("cancels a queued task at once", async () => {
    const user = await newUser();
    const handle = await user.sandbox.execute({ command: "echo never", requirements: { kind: uniqueKind("nobody") } });
    const view = await handle.cancel();
    expect(view.status).toBe("cancelled");
    expect(await handle.result()).toMatchObject({ status: "cancelled", stdout: "" });
  });

  it("kills a running task within a second of the cancel", async () => {
    const kind = uniqueKind("cancel");
    await startWorker({ kind });
    const user = await newUser();
    let out = "";
    const handle = await user.sandbox.execute({ command: "echo started; sleep 60 & wait", requirements: { kind } }, { onStdout: (d) => (out += d) });
    await waitFor(() => out.includes("started"), "task to start", 15_000);
    const t0 = Date.now();
    await handle.cancel();
    const r = await handle.result();
    expect(r.status).toBe("cancelled");
    const [row] = await sql<{ finishedAt: Date; cancelRequestedAt: Date }[]>`select finished_at, cancel_requested_at from public.tasks where id = ${handle.taskId}`;
    expect(row!.finishedAt.getTime() - row!.cancelRequestedAt.getTime()).toBeLessThan(1000);
    expect(Date.now() - t0).toBeLessThan(5000);
  });

  it("claims the highest priority first, then the oldest", async () => {
    const kind = uniqueKind("prio");
    const user = await newUser();
    const specs = [0, 10, -5, 10, 100].map((priority, i) => ({ command: `echo ${i}`, priority, requirements: { kind } }));
    const handles = [];
    for (const s of specs) handles.push(await user.sandbox.execute(s));
    await startWorker({ kind, concurrency: 1 });
    await Promise.all(handles.map((h) => h.result()));
    const rows = await sql<{ id: string; claimedAt: Date }[]>`select id, claimed_at from public.tasks where id = any(${handles.map((h) => h.taskId)}) order by claimed_at`;
    const byId = new Map(handles.map((h, i) => [h.taskId, i]));
    expect(rows.map((r) => byId.get(r.id))).toEqual([4, 1, 3, 0, 2]);
  });

  it("a repeated idempotency key returns the same task", async () => {
    const user = await newUser();
    const body = { command: "echo once", idempotencyKey: `key-${Date.now()}`, requirements: { kind: uniqueKind("idem") } };
    const a = await api("POST", "/execute", { token: user.token, body });
    const b = await api("POST", "/execute", { token: user.token, body });
    expect(a.status).toBe(202);
    expect(b.status).toBe(202);
    expect(b.body.taskId).toBe(a.body.taskId);
    // Another user with the same key gets its own task.
    const other = await newUser();
    const c = await api("POST", "/execute", { token: other.token, body });
    expect(c.body.taskId).not.toBe(a.body.taskId);
  });

  it("health reports live workers, queue depth, oldest queued age, and the caller's tasks of kinds nobody serves", async () => {
    const kind = uniqueKind("orphan");
    const user = await newUser();
    await user.sandbox.execute({ command: "true", requirements: { kind } });
    await new Promise((r) => setTimeout(r, 300));
    // The owner's view: its task waits for a kind nobody serves (issue 18: only its view is degraded).
    const h = await api("GET", "/health", { token: user.token });
    expect(h.status).toBe(200);
    expect(h.body.status).toBe("degraded");
    expect(h.body.queueDepth).toBeGreaterThanOrEqual(1);
    expect(h.body.oldestQueuedAgeMs).toBeGreaterThanOrEqual(300);
    expect(h.body.queuedWithoutWorker).toContainEqual({ kind, labels: [], count: 1 });
    // Anyone else's (anon here) does not list another tenant's task.
    const anon = await api("GET", "/health", { token: stack.anonKey });
    expect(anon.body.queuedWithoutWorker).not.toContainEqual(expect.objectContaining({ kind }));
  });

  it("drains a worker: no new claims, its running task finishes, then it goes offline", async () => {
    const kind = uniqueKind("drain");
    const w = await startWorker({ kind, concurrency: 1 });
    const user = await newUser();
    const running = await user.sandbox.execute({ command: "sleep 1; echo finished", requirements: { kind } });
    await waitFor(async () => (await user.sandbox.getTask(running.taskId)).status === "running", "task running");
    const d = await api("DELETE", `/workers/${w.workerId}`, { token: stack.serviceRoleKey });
    expect(d.status).toBe(202);
    expect(d.body.status).toBe("draining");
    const queued = await user.sandbox.execute({ command: "echo later", requirements: { kind } });
    expect(await running.result()).toMatchObject({ status: "succeeded", stdout: "finished\n" });
    await w.stopped;
    const [row] = await sql<{ status: string }[]>`select status from public.workers where id = ${w.workerId!}`;
    expect(row!.status).toBe("offline");
    expect((await user.sandbox.getTask(queued.taskId)).status).toBe("queued");
    await queued.cancel();
  });
});
