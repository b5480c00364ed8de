// The dashboard's data path without a browser: GET /tasks, GET /fleet, GET /metrics and the
// `user:<uid>` / `fleet` topics, through the real function and the official client.
import { randomUUID } from "node:crypto";
import { describe, expect, it } from "vitest";
import { FLEET_TOPIC, userTopic, type TaskChangedMessage, type WorkerChangedMessage } from "../../sdk/index.ts";
import { likePattern } from "../../functions/_shared/monitoring/list-query.ts";
import { decodeCursor, encodeCursor } from "../../functions/_shared/monitoring/lists.ts";
import { renderMetrics } from "../../functions/_shared/monitoring/metrics.ts";
import { buildDashboard } from "../../scripts/build-dashboard.ts";
import { api, newUser, subscribeBroadcast, sql, stack, startWorker, supabaseAs, uniqueKind, waitFor } from "../helpers/env.ts";

describe("GET /tasks", () => {
  it("lists the caller's tasks newest first, filtered, searched and paged without gaps or repeats", async () => {
    const kind = uniqueKind("list");
    const user = await newUser();
    const other = await newUser();
    const ids: string[] = [];
    for (let i = 0; i < 7; i++) {
      const { taskId } = (await api("POST", "/execute", { token: user.token, body: { command: `echo item-${i} 100%_done`, requirements: { kind } } })).body;
      ids.push(taskId);
    }
    await api("POST", "/execute", { token: other.token, body: { command: "echo item-other", requirements: { kind } } });
    await user.sandbox.cancel(ids[2]!);

    const all = await user.sandbox.listTasks({ kind });
    expect(all.tasks.map((t) => t.id)).toEqual([...ids].reverse());
    expect(all.next).toBeNull();
    expect(all.tasks[0]).toMatchObject({ status: "queued", command: "echo item-6 100%_done", kind, attempt: 0, version: 0 });

    const seen: string[] = [];
    let cursor: string | undefined;
    do {
      const page = await user.sandbox.listTasks({ kind, limit: 3, cursor });
      expect(page.tasks.length).toBeLessThanOrEqual(3);
      seen.push(...page.tasks.map((t) => t.id));
      cursor = page.next ?? undefined;
    } while (cursor);
    expect(seen).toEqual([...ids].reverse());

    expect((await user.sandbox.listTasks({ kind, status: "cancelled" })).tasks.map((t) => t.id)).toEqual([ids[2]]);
    expect((await user.sandbox.listTasks({ kind, status: ["cancelled", "queued"] })).tasks).toHaveLength(7);
    expect((await user.sandbox.listTasks({ kind, q: "ITEM-4" })).tasks.map((t) => t.id)).toEqual([ids[4]]);
    // % and _ are literal, not wildcards.
    expect((await user.sandbox.listTasks({ kind, q: "100%_d" })).tasks).toHaveLength(7);
    expect((await user.sandbox.listTasks({ kind, q: "1000%" })).tasks).toHaveLength(0);
    expect((await user.sandbox.listTasks({ kind, q: ids[5]!.slice(0, 8) })).tasks.map((t) => t.id)).toEqual([ids[5]]);
    expect((await other.sandbox.listTasks({ kind })).tasks.map((t) => t.command)).toEqual(["echo item-other"]);
    // Plans (issue 7) set plan_id and step; the list filters on them.
    const planId = randomUUID();
    await sql`update public.tasks set plan_id = ${planId}, step = 'build' where id = any(${[ids[1]!, ids[3]!]})`;
    const plan = await user.sandbox.listTasks({ planId });
    expect(plan.tasks.map((t) => [t.id, t.step, t.planId])).toEqual([
      [ids[3], "build", planId],
      [ids[1], "build", planId],
    ]);
    expect((await other.sandbox.listTasks({ planId })).tasks).toEqual([]);
  });

  it("refuses bad filters with a 400 naming the parameter, and anon callers", async () => {
    const user = await newUser();
    const bad = await api("GET", "/tasks?status=running,sleeping", { token: user.token });
    expect(bad.status).toBe(400);
    expect(bad.body.error.message).toMatch(/^status: unknown state "sleeping"/);
    expect((await api("GET", "/tasks?limit=0", { token: user.token })).body.error.message).toMatch(/^limit:/);
    expect((await api("GET", "/tasks?cursor=abc", { token: user.token })).body.error.message).toMatch(/^cursor: not a cursor/);
    expect((await api("GET", "/tasks?colour=red", { token: user.token })).status).toBe(400);
    expect((await api("GET", "/tasks", { token: stack.anonKey })).status).toBe(403);
  });
});

describe("list helpers", () => {
  it("cursors round-trip Postgres timestamps to the microsecond and refuse anything else", () => {
    const c = { createdAt: "2026-11-25 06:44:46.123456+00", id: "6b4e8fc6-ec05-4d01-8063-7cd0d23bd4a8" };
    expect(decodeCursor(encodeCursor(c))).toEqual(c);
    expect(encodeCursor(c)).toMatch(/^[A-Za-z0-9_-]+$/); // safe in a query string as is
    expect(decodeCursor(encodeCursor({ ...c, id: "x' or 1=1" }))).toBeNull();
    expect(decodeCursor(encodeCursor({ ...c, createdAt: "yesterday" }))).toBeNull();
    expect(decodeCursor("%%%")).toBeNull();
  });

  it("search patterns take % _ and \\ literally", () => {
    expect(likePattern("50%_a\\b")).toBe("%50\\%\\_a\\\\b%");
  });
});

describe("live topics", () => {
  it("user:<uid> carries each of the user's task changes, and only to that user", async () => {
    const kind = uniqueKind("usertopic");
    const user = await newUser();
    const other = await newUser();
    const got: TaskChangedMessage[] = [];
    const channel = await subscribeBroadcast(user.supabase, userTopic(user.id), (event, p) => event === "task_changed" && got.push(p as TaskChangedMessage));
    await expect(subscribeBroadcast(other.supabase, userTopic(user.id), () => {})).rejects.toThrow(/Unauthorized/);

    await startWorker({ kind });
    const handle = await user.sandbox.execute({ command: "echo hi", requirements: { kind } });
    await handle.result();
    await waitFor(() => got.some((m) => m.task.id === handle.taskId && m.task.status === "succeeded"), "succeeded over user topic", 10_000);
    const mine = got.filter((m) => m.task.id === handle.taskId);
    expect(mine.map((m) => m.task.status)).toEqual(["queued", "claimed", "running", "succeeded"]);
    expect(mine.map((m) => m.previous)).toEqual([null, "queued", "claimed", "running"]);
    // version grows with every change, so a client can keep the newest copy.
    const versions = mine.map((m) => m.task.version);
    expect([...versions].sort((a, b) => a - b)).toEqual(versions);
    expect(new Set(versions).size).toBe(versions.length);
    expect(mine.at(-1)!.task).toMatchObject({ exitCode: 0, command: "echo hi", kind });
    await user.supabase.removeChannel(channel);
  });

  it("fleet carries worker changes and heartbeats with load and queue depth; anon may not join", async () => {
    const kind = uniqueKind("fleet");
    const user = await newUser();
    const got: WorkerChangedMessage[] = [];
    const channel = await subscribeBroadcast(user.supabase, FLEET_TOPIC, (event, p) => event === "worker_changed" && got.push(p as WorkerChangedMessage));
    await expect(subscribeBroadcast(supabaseAs(stack.anonKey), FLEET_TOPIC, () => {})).rejects.toThrow(/Unauthorized/);

    const queued = await user.sandbox.execute({ command: "echo queued", priority: 7, requirements: { kind } });
    const worker = await startWorker({ kind, labels: ["gpu"], leaseMs: 1500, concurrency: 2 });
    const mine = () => got.filter((m) => m.worker.kind === kind);
    await waitFor(() => mine().length > 0, "the new worker on the fleet topic", 10_000);
    expect(mine()[0]!.worker).toMatchObject({ kind, labels: ["gpu"], capacity: 2, status: "online" });
    expect(mine()[0]!.queue).toContainEqual({ kind, priority: 7, count: 1 });
    await queued.result();
    // Heartbeats arrive every lease/3 and say how many tasks the worker holds.
    const before = mine().length;
    await waitFor(() => mine().length >= before + 2, "two heartbeats", 10_000);
    expect(Date.parse(mine().at(-1)!.worker.lastHeartbeatAt)).toBeGreaterThan(Date.parse(mine()[0]!.worker.lastHeartbeatAt));
    expect(mine().at(-1)!.worker.running).toBe(0);
    expect(
      mine()
        .at(-1)!
        .queue.find((q) => q.kind === kind),
    ).toBeUndefined();

    const fleet = await user.sandbox.fleet();
    expect(fleet.workers.find((w) => w.id === worker.workerId)).toMatchObject({ kind, running: 0, status: "online" });
    expect(fleet.health.liveWorkers).toBeGreaterThan(0);
    expect(fleet.db.ok).toBe(true);
    expect(fleet.function.runtime).toMatch(/^deno /);
    await user.supabase.removeChannel(channel);
  });
});

describe("GET /metrics", () => {
  it("prints Prometheus text for the service key only, with figures that move", async () => {
    const user = await newUser();
    expect((await api("GET", "/metrics", { token: user.token })).status).toBe(403);
    expect((await api("GET", "/metrics", { token: stack.anonKey })).status).toBe(403);

    const read = async () => {
      const res = await api("GET", "/metrics", { token: stack.serviceRoleKey });
      expect(res.status).toBe(200);
      expect(res.headers.get("content-type")).toBe("text/plain; version=0.0.4; charset=utf-8");
      const values = new Map<string, number>();
      for (const line of (res.body as string).split("\n")) {
        if (line === "" || line.startsWith("#")) continue;
        const m = /^([a-z_]+(?:\{[^}]*\})?) (\S+)$/.exec(line);
        expect(m, `a sample line: ${line}`).not.toBeNull();
        values.set(m![1]!, Number(m![2]));
      }
      return values;
    };
    const kind = uniqueKind("metrics");
    await startWorker({ kind });
    const before = await read();
    const h = await user.sandbox.execute({ command: "seq 1 5", requirements: { kind } });
    await h.result();
    // Synthetic contract events (the blocks feature writes real ones) must show up by label.
    const usage = { cpuPercent: 0, cpuMs: 0, rssBytes: 0, processes: 1, threads: 1, outputBytes: 0, wallMs: 1, memoryLimitBytes: null, processLimit: null };
    await sql`select cogo.append_event_unchecked(${h.taskId}, 'block_detected', ${sql.json({ reason: "idle_stall", durationMs: 1, usage, recoverable: true, evidence: { summary: "idle", lastOutput: [], processes: [] }, plan: ["retry"] })})`;
    await sql`select cogo.append_event_unchecked(${h.taskId}, 'recovery_succeeded', ${sql.json({ action: "retry", attempt: 1, reason: "idle_stall", message: "re-queued" })})`;
    const after = await read();

    const d = (k: string) => (after.get(k) ?? 0) - (before.get(k) ?? 0);
    expect(d('cogo_tasks{state="succeeded"}')).toBeGreaterThanOrEqual(1);
    expect(d("cogo_claim_latency_seconds_count")).toBeGreaterThanOrEqual(1);
    expect(d('cogo_claim_latency_seconds_bucket{le="+Inf"}')).toBe(d("cogo_claim_latency_seconds_count"));
    expect(after.get('cogo_claim_latency_seconds_bucket{le="60"}')).toBeLessThanOrEqual(after.get('cogo_claim_latency_seconds_bucket{le="+Inf"}')!);
    expect(d("cogo_output_rows_total")).toBeGreaterThanOrEqual(1);
    expect(after.get("cogo_output_rows_per_second")).toBeGreaterThan(0);
    expect(d('cogo_blocks_total{reason="idle_stall"}')).toBe(1);
    expect(d('cogo_recoveries_total{outcome="succeeded",action="retry"}')).toBe(1);
    expect(after.get('cogo_workers{status="online"}')).toBeGreaterThanOrEqual(1);
    expect(after.get("cogo_workers_live")).toBeGreaterThanOrEqual(1);
  });

  it("renders a snapshot in the exposition format, labels escaped, histogram cumulative", () => {
    const text = renderMetrics({
      tasksByState: { running: 2 },
      claimLatency: {
        buckets: [
          { le: 0.01, count: 3 },
          { le: 0.1, count: 5 },
        ],
        count: 6,
        sum: 1.5,
      },
      outputRowsTotal: 120,
      outputRowsLastMinute: 30,
      blocksByReason: { 'we"ird\\': 1 },
      recoveries: [],
      workersByStatus: {},
      liveWorkers: 0,
      queue: [{ kind: "basic", priority: -5, count: 4 }],
      oldestQueuedAgeMs: 1500,
    });
    expect(text).toContain('cogo_tasks{state="running"} 2\ncogo_tasks{state="blocked"} 0');
    expect(text).toContain('cogo_claim_latency_seconds_bucket{le="0.01"} 3\ncogo_claim_latency_seconds_bucket{le="0.1"} 5\ncogo_claim_latency_seconds_bucket{le="+Inf"} 6');
    expect(text).toContain("# TYPE cogo_claim_latency_seconds histogram");
    expect(text).toContain('cogo_blocks_total{reason="we\\"ird\\\\"} 1');
    expect(text).toContain('cogo_queue_depth{kind="basic",priority="-5"} 4');
    expect(text).toContain("cogo_output_rows_per_second 0.5");
    expect(text).toContain("cogo_oldest_queued_age_seconds 1.5");
    expect(text.endsWith("\n")).toBe(true);
  });
});

describe("dashboard files on the gateway", () => {
  it("serves the page and a config with the anon key only, and nothing outside the build", async () => {
    await buildDashboard();
    const redirect = await fetch(`${stack.apiUrl}/dashboard`, { redirect: "manual" });
    expect(redirect.status).toBe(308);
    expect(redirect.headers.get("location")).toBe("/dashboard/");
    const index = await fetch(`${stack.apiUrl}/dashboard/`);
    expect(index.headers.get("content-type")).toBe("text/html; charset=utf-8");
    expect(await index.text()).toContain('<script type="module" src="app.js">');
    const config = await (await fetch(`${stack.apiUrl}/dashboard/config.json`)).json();
    expect(config).toEqual({ anonKey: stack.anonKey, auth: "token" });
    expect((await fetch(`${stack.apiUrl}/dashboard/%2e%2e/package.json`)).status).toBe(404);
    expect((await fetch(`${stack.apiUrl}/dashboard/..%2fpackage.json`)).status).toBe(404);
    expect((await fetch(`${stack.apiUrl}/dashboard/app.js`, { method: "POST" })).status).toBe(405);
  });
});
