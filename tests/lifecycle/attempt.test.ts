// The Attempt is the worker's one owner of how a task's attempt ends: unit tests with a fake
// queue (no stack), plus a source check that nothing else in the worker ends a task.
import { readdir, readFile } from "node:fs/promises";
import path from "node:path";
import { describe, expect, it } from "vitest";
import type { TaskRow } from "../../functions/_shared/views.ts";
import { Attempt, type Ending } from "../../worker/attempt.ts";
import { LeaseLostError } from "../../worker/db.ts";
import type { Queue } from "../../worker/queue.ts";

const task = { id: "00000000-0000-4000-8000-000000000001", attempt: 2, maxAttempts: 3 } as TaskRow;
const pgError = (code: string, message = code) => Object.assign(new Error(message), { code });

function fakeQueue(fail: Partial<Record<"finish" | "release" | "requeueForRecovery", unknown[]>> = {}) {
  const calls: string[] = [];
  const call = (name: "finish" | "release" | "requeueForRecovery") => async () => {
    calls.push(name);
    const err = fail[name]?.shift();
    if (err) throw err;
  };
  const queue = { finish: call("finish"), release: call("release"), requeueForRecovery: call("requeueForRecovery"), start: async () => 7 } as unknown as Queue;
  return { queue, calls };
}

const finish: Ending = { kind: "finish", status: "succeeded", reason: "exited with code 0", exitCode: 0, signal: null, usage: {} };

describe("Attempt", () => {
  it("applies the first ending and refuses every later one", async () => {
    const { queue, calls } = fakeQueue();
    const logs: string[] = [];
    const a = new Attempt(task, "w1", queue, (l) => logs.push(l));
    expect(a.lease).toEqual({ taskId: task.id, attempt: 2, workerId: "w1" });
    expect(await a.end(finish)).toBe(true);
    expect(await a.end({ kind: "release", reason: "shutdown" })).toBe(false);
    expect(calls).toEqual(["finish"]);
    expect(a.endedAs).toBe("finish");
    expect(logs.join("\n")).toMatch(/already ended \(finish\); ignored release/);
  });

  it("writes nothing once a fenced write found the lease gone", async () => {
    const { queue, calls } = fakeQueue();
    const a = new Attempt(task, "w1", queue, () => {});
    a.lost();
    expect(await a.end(finish)).toBe(false);
    expect(calls).toEqual([]);
    expect(a.endedAs).toBe("lease_lost");
  });

  it("a lost lease while ending is reported, not thrown", async () => {
    const { queue } = fakeQueue({ finish: [new LeaseLostError("lease_lost", "gone")] });
    const a = new Attempt(task, "w1", queue, () => {});
    expect(await a.end(finish)).toBe(false);
    expect(a.endedAs).toBe("lease_lost");
  });

  it("a recovery re-queue with no attempt left ends the way its fallback says", async () => {
    const { queue, calls } = fakeQueue({ requeueForRecovery: [pgError("CG422", "task has no attempts left")] });
    const a = new Attempt(task, "w1", queue, () => {});
    const ok = await a.end({
      kind: "requeue",
      step: { action: "retry", reason: "x" } as never,
      event: { action: "retry", attempt: 2, reason: "idle_stall", message: "re-queued" },
      otherwise: async () => ({ ...finish, status: "failed", reason: "gave up" }),
    });
    expect(ok).toBe(true);
    expect(calls).toEqual(["requeueForRecovery", "finish"]);
    expect(a.endedAs).toBe("finish");
  });

  it("a failed write leaves the attempt open so the caller can end it another way", async () => {
    const { queue, calls } = fakeQueue({ finish: [pgError("XX000", "boom")] });
    const a = new Attempt(task, "w1", queue, () => {});
    await expect(a.end(finish)).rejects.toThrow("boom");
    expect(a.endedAs).toBeUndefined();
    expect(await a.end({ kind: "release", reason: "db failed" })).toBe(true);
    expect(calls).toEqual(["finish", "release"]);
  });

  it("a hand-back retries while the database is away, then leaves it to the rescuer", async () => {
    const { queue, calls } = fakeQueue({ release: [pgError("ECONNREFUSED"), pgError("57P01")] });
    const a = new Attempt(task, "w1", queue, () => {});
    expect(await a.end({ kind: "release", reason: "db away", retryForMs: 10_000 })).toBe(true);
    expect(calls).toEqual(["release", "release", "release"]);
    const logs: string[] = [];
    const b = new Attempt(task, "w1", fakeQueue({ release: [pgError("ECONNREFUSED"), pgError("ECONNREFUSED"), pgError("ECONNREFUSED")] }).queue, (l) => logs.push(l));
    expect(await b.end({ kind: "release", reason: "db away", retryForMs: 500 })).toBe(true);
    expect(logs.join("\n")).toMatch(/the lease rescuer will/);
  }, 10_000);
});

describe("one owner of endings in the worker", () => {
  it("only worker/attempt.ts calls the queue's finish, release or requeueForRecovery", async () => {
    const root = path.resolve(import.meta.dirname, "../../worker");
    const offenders: string[] = [];
    for (const entry of await readdir(root, { recursive: true, withFileTypes: true })) {
      if (!entry.isFile() || !entry.name.endsWith(".ts")) continue;
      const file = path.join(entry.parentPath, entry.name);
      const rel = path.relative(root, file);
      if (rel === "attempt.ts" || rel === "queue.ts") continue;
      const text = await readFile(file, "utf8");
      for (const m of text.matchAll(/\bqueue\s*\.\s*(finish|release|requeueForRecovery)\s*\(|cogo\.(finish_task|release_task|requeue_for_recovery)\b/g))
        offenders.push(`${rel}: ${m[0]}`);
    }
    expect(offenders).toEqual([]);
  });
});
