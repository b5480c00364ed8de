// The seed API's names (docs/seed-api.md): GET /tasks/:id/status is a small status view with the
// same tenancy as GET /tasks/:id; a seed route we serve under another name is a 404 saying which;
// any unknown route is a 404 naming method and path; the started event names its worker.
import { describe, expect, it } from "vitest";
import { SEED_ROUTES, seedHint } from "../../functions/_shared/seed-routes.ts";
import { api, newUser, sql, stack, startWorker, uniqueKind, waitFor } from "../helpers/env.ts";

describe("seed API names", () => {
  it("GET /tasks/:id/status: status, exit code, attempt and times for the owner; 404 for another tenant; refused for anon", async () => {
    const kind = uniqueKind("seed-status");
    const worker = await startWorker({ kind, concurrency: 1 });
    const user = await newUser();
    const r = await api("POST", "/execute", { token: user.token, body: { command: "exit 7", maxAttempts: 1, requirements: { kind } } });
    expect(r.status).toBe(202);
    const done = await waitFor(
      async () => {
        const s = await api("GET", `/tasks/${r.body.taskId}/status`, { token: user.token });
        return s.status === 200 && s.body.finishedAt ? s : undefined;
      },
      "the task to finish",
      15_000,
    );
    expect(done.body).toEqual({
      id: r.body.taskId,
      status: "failed",
      exitCode: 7,
      signal: null,
      reason: expect.any(String),
      attempt: 1,
      maxAttempts: 1,
      workerId: worker.workerId,
      cancelRequested: false,
      createdAt: expect.any(String),
      claimedAt: expect.any(String),
      startedAt: expect.any(String),
      finishedAt: expect.any(String),
    });
    // The full view is still GET /tasks/:id, and says the same about where the task is.
    const full = await api("GET", `/tasks/${r.body.taskId}`, { token: user.token });
    expect(full.body).toMatchObject({ status: "failed", exitCode: 7, attempt: 1, command: "exit 7" });
    expect(done.body).not.toHaveProperty("command");

    const stranger = await newUser();
    const other = await api("GET", `/tasks/${r.body.taskId}/status`, { token: stranger.token });
    expect(other.status).toBe(404);
    expect(other.body.error.code).toBe("task_not_found");
    const anon = await api("GET", `/tasks/${r.body.taskId}/status`, { token: stack.anonKey });
    // anon passes the gateway but RLS shows it no task: the same 404 as a stranger, no data.
    expect(anon.status).toBe(404);
    expect(JSON.stringify(anon.body)).not.toContain("exit 7");
    const none = await api("GET", `/tasks/${r.body.taskId}/status`);
    expect(none.status).toBe(401);
  });

  it("unknown routes are a 404 naming method and path; a seed name says where it went; a bad id is still a 400", async () => {
    const user = await newUser();
    const unknown = await api("POST", "/nothing/here", { token: user.token, body: {} });
    expect(unknown.status).toBe(404);
    expect(unknown.body.error).toEqual({ code: "no_route", message: "no route POST /nothing/here" });

    // Before: POST /workers/create answered 400 "ids are UUIDs", POST /files/create 405.
    const workers = await api("POST", "/workers/create", { token: user.token, body: {} });
    expect(workers.status).toBe(404);
    expect(workers.body.error.message).toBe(
      "no route POST /workers/create; the seed's POST /api/sandbox/workers/create is POST /workers under /functions/v1/sandbox here (docs/seed-api.md)",
    );
    const files = await api("POST", "/files/create", { token: user.token, body: {} });
    expect(files.status).toBe(404);
    expect(files.body.error.message).toContain("is POST /files under /functions/v1/sandbox");
    // The seed's prefix too: the status route is served here without it.
    const id = "6f1c2b9e-3d4a-4c5b-8e7f-0a1b2c3d4e5f";
    const prefixed = await api("GET", `/api/sandbox/tasks/${id}/status`, { token: user.token });
    expect(prefixed.status).toBe(404);
    expect(prefixed.body.error.message).toContain(`is GET /tasks/:id/status under /functions/v1/sandbox`);

    const notUuid = await api("GET", "/tasks/12345/status", { token: user.token });
    expect(notUuid.status).toBe(400);
    expect(notUuid.body.error.message).toContain("ids are UUIDs");
  });

  it("the seed table names each route once, and every route it says we serve is one the router serves", async () => {
    const keys = SEED_ROUTES.map((s) => `${s.method} ${s.seed}`);
    expect(new Set(keys).size).toBe(keys.length);
    const user = await newUser();
    const id = "6f1c2b9e-3d4a-4c5b-8e7f-0a1b2c3d4e5f";
    for (const s of SEED_ROUTES) {
      const [method, path] = (s.ours ?? `${s.method} ${s.seed}`).split(" ") as [string, string];
      const route = path.replace(":id", id).replace("<path>", "a.txt").replace("…", id);
      const r = await api(method, route, { token: user.token, body: method === "GET" || method === "DELETE" ? undefined : {} });
      // Served: whatever the handler says (400 for an empty body, 403 for a user, 404 for no such
      // thing), never the router's "no route" or "not allowed".
      expect([r.status, r.body?.error?.code], `${s.method} ${s.seed} → ${method} ${route}`).not.toEqual([404, "no_route"]);
      expect(r.status, `${method} ${route}`).not.toBe(405);
      if (s.ours !== null) expect(seedHint(s.method, s.seed)?.message).toContain(s.ours);
    }
  });

  it("the started event (task_status running) carries the worker's id, as the seed's did", async () => {
    const kind = uniqueKind("seed-started");
    const worker = await startWorker({ kind, concurrency: 1 });
    const user = await newUser();
    const handle = await user.sandbox.execute({ command: "true", requirements: { kind } });
    expect((await handle.result()).status).toBe("succeeded");
    const events = await sql<{ data: { status: string; workerId?: string } }[]>`
      select data from public.task_events where task_id = ${handle.taskId} and type = 'task_status' order by seq`;
    const byStatus = Object.fromEntries(events.map((e) => [e.data.status, e.data.workerId]));
    expect(byStatus).toMatchObject({ claimed: worker.workerId, running: worker.workerId, succeeded: worker.workerId });
  });
});
