// A worker holding persistent sandboxes (worker/sandboxes/host.ts), on the real stack with real
// bubblewrap: sandboxes and commands are made through the SQL functions the API calls, as their
// owner. State carries over between commands, a background process stays up, a cancel ends one
// command only, DELETE and idle expiry leave nothing behind and free the slot, a fork bomb does not
// spoil the sandbox, and a holder killed with SIGKILL makes its sandbox lost.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Worker } from "../../worker/worker.ts";
import { newUserId, sql, sqlAsUser, stack, startWorker, uniqueKind, waitFor, stopLiveSandboxes } from "../helpers/env.ts";
import { isRoot, requireRoot } from "../helpers/root.ts";
import { spawnWorker } from "../helpers/worker-process.ts";

requireRoot("Persistent sandboxes");
const kind = uniqueKind("sbxw");
let worker: Worker;
const user = newUserId();

beforeAll(async () => {
  await sql`select cogo.set_tenant_limits(${user}, '{"maxRunning": 100}'::jsonb)`;
  if (isRoot) worker = await startWorker({ kind, concurrency: 2 });
});

const createSandbox = async (spec: Record<string, unknown> = {}, owner = user, k = kind) =>
  ((await sqlAsUser(owner, `select * from cogo.create_sandbox('${JSON.stringify({ requirements: { kind: k }, ...spec })}'::jsonb)`)) as any[])[0];
const enqueue = async (sandbox: string, spec: Record<string, unknown>) =>
  ((await sqlAsUser(user, `select * from cogo.enqueue_command('${sandbox}', '${JSON.stringify(spec).replaceAll("'", "''")}'::jsonb)`)) as any[])[0];
const sandboxRow = async (id: string) => (await sql`select * from public.sandboxes where id = ${id}`)[0]!;
const taskRow = async (id: string) => (await sql`select * from public.tasks where id = ${id}`)[0]!;
const FINAL = ["succeeded", "failed", "cancelled", "timed_out"];

async function sandboxIn(id: string, statuses: string[], timeoutMs = 20_000) {
  return waitFor(
    async () => {
      const s = await sandboxRow(id);
      return statuses.includes(s.status) ? s : undefined;
    },
    `sandbox ${id} to be ${statuses.join("|")}`,
    timeoutMs,
  );
}

/** Waits for the command to end; its stdout and row. */
async function finished(taskId: string, timeoutMs = 20_000) {
  const row = await waitFor(
    async () => {
      const t = await taskRow(taskId);
      return FINAL.includes(t.status) ? t : undefined;
    },
    `command ${taskId} to end`,
    timeoutMs,
  );
  const out = await sql`select stream, data from public.task_output where task_id = ${taskId} order by seq`;
  return {
    row,
    stdout: out
      .filter((o) => o.stream === "stdout")
      .map((o) => o.data)
      .join(""),
    all: out.map((o) => o.data).join(""),
  };
}

async function run(sandbox: string, spec: Record<string, unknown>) {
  const t = await enqueue(sandbox, spec);
  return finished(t.id);
}

describe.runIf(isRoot)("a worker holding persistent sandboxes", () => {
  it("create → ready; files and a background process carry over; a cancel ends one command only", async () => {
    const t0 = Date.now();
    const s = await createSandbox();
    const ready = await sandboxIn(s.id, ["ready"]);
    const readyMs = ready.readyAt.getTime() - ready.createdAt.getTime();
    expect(ready.workerId).toBe(worker.workerId);
    console.log(`sandbox: create → ready ${readyMs} ms in SQL (${Date.now() - t0} ms seen by the test)`);

    const first = await run(s.id, { command: "echo a > f; echo wrote" });
    expect(first.row.status).toBe("succeeded");
    expect((await run(s.id, { argv: ["cat", "f"] })).stdout).toBe("a\n");

    const server = await enqueue(s.id, { command: "exec sleep 300", background: true });
    await waitFor(async () => (await taskRow(server.id)).status === "running" || null, "the background command to run");
    const ps = await run(s.id, { command: "ps -eo args | grep -c '^sleep 300'" });
    expect(ps.stdout.trim()).toBe("1");

    // A foreground command's leftovers are killed when it exits; the background one stays.
    await run(s.id, { command: "sleep 200 & echo started" });
    expect((await run(s.id, { command: "ps -eo args | grep -c '^sleep 200' || true" })).stdout.trim()).toBe("0");

    const long = await enqueue(s.id, { command: "sleep 100" });
    await waitFor(async () => (await taskRow(long.id)).status === "running" || null, "the long command to run");
    await sqlAsUser(user, `select cogo.cancel_task('${long.id}')`);
    expect((await finished(long.id)).row.status).toBe("cancelled");
    expect((await sandboxRow(s.id)).status).toBe("ready");
    expect((await taskRow(server.id)).status).toBe("running");
    expect((await run(s.id, { command: "echo still; cat f" })).stdout).toBe("still\na\n");

    // Command → first byte, against a fresh sandbox (POST /execute's path) of the same echo.
    // In the database's clock: the task row's insert to its first stdout row.
    const firstByte = async (enqueueIt: () => Promise<{ id: string }>) => {
      const t = await enqueueIt();
      const row = await waitFor(
        async () =>
          (
            await sql`select round(extract(epoch from o.created_at - t.created_at) * 1000)::int as ms from public.task_output o
                        join public.tasks t on t.id = o.task_id where o.task_id = ${t.id} and o.stream = 'stdout' order by o.seq limit 1`
          )[0] ?? undefined,
        "first byte",
        20_000,
      );
      return row.ms as number;
    };
    const inSandbox: number[] = [];
    const fresh: number[] = [];
    for (let i = 0; i < 5; i++) {
      inSandbox.push(await firstByte(() => enqueue(s.id, { command: "echo hi" })));
      fresh.push(
        await firstByte(async () => ((await sqlAsUser(user, `select * from cogo.enqueue_task('{"command": "echo hi", "requirements": {"kind": "${kind}"}}'::jsonb)`)) as any[])[0]),
      );
    }
    const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
    console.log(
      `sandbox: command → first stdout row (DB clock) p50 ${median(inSandbox)} ms in the sandbox, ${median(fresh)} ms as a fresh task (${inSandbox.join(",")} / ${fresh.join(",")})`,
    );

    // DELETE: every process killed, the workspace and cgroups gone, the slot free again.
    await sqlAsUser(user, `select cogo.stop_sandbox('${s.id}')`);
    const stopped = await sandboxIn(s.id, ["stopped"]);
    expect(stopped.reason).toBe("deleted");
    const init = await taskRow(s.initTaskId);
    expect(init.status).toBe("cancelled");
    expect(init.result).toEqual({ cleanup: { clean: true, processesLeft: 0, cgroupsLeft: [], workspaceLeft: false } });
    expect(FINAL).toContain((await finished(server.id)).row.status);
    await waitFor(() => worker.activeTasks === 0 || null, "the worker's slot to be free");
    expect(((await sqlAsUser(user, `select cogo.enqueue_command('${s.id}', '{"command": "true"}'::jsonb)`).catch((e) => e)) as { code?: string }).code).toBe("CG409");
  }, 120_000);

  it("a create like the last one gets the warm sandbox, started before it was asked for, with its own env and nothing of the last", async () => {
    // Seconds PID 1 of the sandbox has lived, read inside it (/proc/uptime − PID 1's start time).
    const age = "awk -v up=$(cut -d' ' -f1 /proc/uptime) '{print up - $22 / 100}' /proc/1/stat";
    const made: { id: string }[] = [];
    const create = async (spec: Record<string, unknown>) => {
      const s = await createSandbox(spec);
      made.push(s);
      return s;
    };
    try {
      const first = await create({ env: { WHO: "first" } });
      await sandboxIn(first.id, ["ready"]);
      await run(first.id, { command: "echo secret > /workspace/left; sleep 300 &", background: true });
      // The warm one starts as the first becomes ready; give it time to be up.
      await new Promise((r) => setTimeout(r, 500));
      const asked = Date.now();
      const warm = await create({ env: { WHO: "second" } });
      await sandboxIn(warm.id, ["ready"]);
      const r = await run(warm.id, { command: `${age}; echo "$WHO"; ls -A /workspace | wc -l; ps -eo args | grep -c '^sleep 300' || true` });
      const sinceAsked = (Date.now() - asked) / 1000;
      const [lived, who, files, sleeps] = r.stdout.trim().split("\n");
      // Started before the request: it lived longer than the request has taken so far.
      expect(Number(lived), r.all).toBeGreaterThan(sinceAsked);
      expect([who, files, sleeps]).toEqual(["second", "0", "0"]);
      // Other limits: a cold start (younger than the request), and the warm one is replaced. (The
      // worker holds two sandboxes at most: the first makes room.)
      await sqlAsUser(user, `select cogo.stop_sandbox('${first.id}')`);
      await sandboxIn(first.id, ["stopped"]);
      const askedCold = Date.now();
      const cold = await create({ limits: { processes: 100 } });
      await sandboxIn(cold.id, ["ready"]);
      const c = await run(cold.id, { command: age });
      expect(Number(c.stdout), c.all).toBeLessThan((Date.now() - askedCold) / 1000);
    } finally {
      for (const s of made) await sqlAsUser(user, `select cogo.stop_sandbox('${s.id}')`);
      for (const s of made) await sandboxIn(s.id, ["stopped"]);
    }
  }, 60_000);

  it("a fork bomb and a full disk in one command; then `echo ok` works", async () => {
    const s = await createSandbox({ limits: { processes: 64, workspaceBytes: 16 * 1024 * 1024 } });
    await sandboxIn(s.id, ["ready"]);
    const bomb = await run(s.id, { command: "b() { b | b & }; b; sleep 2", timeoutMs: 10_000 });
    expect(FINAL).toContain(bomb.row.status);
    const fill = await run(s.id, { command: "dd if=/dev/zero of=/workspace/big bs=1M count=64; rm -f /workspace/big", timeoutMs: 20_000 });
    expect(fill.all).toMatch(/No space left/);
    expect((await run(s.id, { command: "echo ok" })).stdout).toBe("ok\n");
    await sqlAsUser(user, `select cogo.stop_sandbox('${s.id}')`);
    await sandboxIn(s.id, ["stopped"]);
  }, 90_000);

  it("idle expiry stops the sandbox (the worker's timer) and frees the slot", async () => {
    const s = await createSandbox({ idleTimeoutMs: 1500 });
    await sandboxIn(s.id, ["ready"]);
    await run(s.id, { command: "true" });
    const stopped = await sandboxIn(s.id, ["stopped"], 15_000);
    expect(stopped.reason).toMatch(/^idle timeout: no command for 1500 ms/);
    expect((await taskRow(s.initTaskId)).status).toBe("succeeded");
  }, 40_000);

  it("the lifetime stops a sandbox even while a command runs", async () => {
    const s = await createSandbox({ maxLifetimeMs: 2500 });
    await sandboxIn(s.id, ["ready"]);
    const busy = await enqueue(s.id, { command: "sleep 100" });
    const stopped = await sandboxIn(s.id, ["stopped"], 15_000);
    expect(stopped.reason).toBe("lifetime reached (maxLifetimeMs 2500)");
    expect((await finished(busy.id)).row.status).toBe("failed");
  }, 40_000);

  it("a draining worker stops its sandboxes (stopped, not lost), their commands with them, and goes offline", async () => {
    const k = uniqueKind("sbxdrain");
    const w = await startWorker({ kind: k, concurrency: 2 });
    const s = await createSandbox({}, user, k);
    await sandboxIn(s.id, ["ready"]);
    const server = await enqueue(s.id, { command: "exec sleep 300", background: true });
    await waitFor(async () => (await taskRow(server.id)).status === "running" || undefined, "the background command to run");
    await sql`select cogo.drain_worker(${w.workerId!})`;
    const stopped = await sandboxIn(s.id, ["stopped"]);
    expect(stopped.reason).toBe("worker draining");
    expect((await taskRow(s.initTaskId)).result).toEqual({ cleanup: { clean: true, processesLeft: 0, cgroupsLeft: [], workspaceLeft: false } });
    expect(FINAL).toContain((await finished(server.id)).row.status);
    await w.stopped;
    expect((await sql`select status from public.workers where id = ${w.workerId!}`)[0]!.status).toBe("offline");
  }, 60_000);

  it("a holder killed with SIGKILL: the sandbox is lost and its queued command fails with the reason", async () => {
    const k = uniqueKind("sbxlost");
    const w = spawnWorker(stack.dbUrl, k, ["--lease-ms", "2000"]);
    try {
      const s = await createSandbox({}, user, k);
      const ready = await sandboxIn(s.id, ["ready"], 30_000);
      w.kill("SIGKILL");
      await w.exited;
      const queued = await enqueue(s.id, { command: "echo never" });
      const lost = await waitFor(
        async () => {
          await sql`select cogo.requeue_expired()`;
          const row = await sandboxRow(s.id);
          return row.status === "lost" ? row : undefined;
        },
        "the sandbox to be lost",
        20_000,
      );
      expect(lost.reason).toBe(`worker ${ready.workerId} stopped heartbeating`);
      const q = await finished(queued.id);
      expect(q.row.status).toBe("failed");
      expect(q.row.reason).toBe(`sandbox ${s.id} lost: worker ${ready.workerId} stopped heartbeating`);
    } finally {
      w.kill("SIGKILL");
      await sql`update public.workers set status = 'offline' where kind = ${k}`;
    }
  }, 60_000);
});

afterAll(async () => {
  // Nothing of this file's may stay live for other files' workers.
  await stopLiveSandboxes(user);
});
