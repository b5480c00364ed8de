// Bad input gets a 4xx naming what is wrong, and nothing is written; tenants see only their own.
import { describe, expect, it } from "vitest";
import { api, newUser, sql, stack, uniqueKind } from "../helpers/env.ts";

const kind = uniqueKind("input");

describe("API input and tenancy", () => {
  it.each([
    [{}, "command: give exactly one of command"],
    [{ command: "echo", argv: ["echo"] }, "give exactly one of command"],
    [{ command: "" }, "command"],
    [{ command: "echo\u0000x" }, "command: command contains a NUL byte"],
    [{ command: "echo", env: { "1BAD": "x" } }, "env.1BAD"],
    [{ command: "echo", env: { "A;rm -rf /": "x" } }, "env names are letters"],
    [{ command: "echo", files: [{ path: "../escape", content: "x" }] }, "files.0.path: workspace path \"../escape\": contains '..'"],
    [{ command: "echo", files: [{ path: "/etc/passwd", content: "x" }] }, "is absolute"],
    [{ command: "echo", files: [{ path: "a\u0000b", content: "x" }] }, "NUL"],
    [{ command: "echo", priority: 5000 }, "priority"],
    [{ command: "echo", timeoutMs: "soon" }, "timeoutMs"],
    // One wall-time setting, and nothing above what a worker honours (it used to cut 24 h to 1 h).
    [{ command: "echo", timeoutMs: 3_600_001 }, "timeoutMs: Too big: expected number to be <=3600000"],
    [{ command: "echo", limits: { wallTimeMs: 1000 } }, "limits.wallTimeMs: the wall-time limit is timeoutMs"],
    [{ command: "echo", limits: { cpuTimeMs: 86_400_000 } }, "limits.cpuTimeMs"],
    [{ command: "echo", requirements: { kind: "Bad Kind!" } }, "requirements.kind"],
    [{ command: "echo", requirements: { labels: ["$(reboot)"] } }, "requirements.labels.0"],
    [{ command: "echo", limits: { memoryBytes: 1 } }, "limits.memoryBytes"],
    [{ command: "echo", limits: { onOutputLimit: "ignore" } }, "limits.onOutputLimit"],
    [{ command: "echo", surprise: true }, "surprise"],
  ])("400 for %j naming the field", async (body, fragment) => {
    const user = await newUser();
    const r = await api("POST", "/execute", { token: user.token, body });
    expect(r.status).toBe(400);
    expect(r.body.error.code).toBe("invalid_request");
    expect(r.body.error.message).toContain(fragment);
    const [row] = await sql<{ n: number }[]>`select count(*)::int as n from public.tasks where owner = ${user.id}`;
    expect(row!.n).toBe(0);
  });

  it("400 for a body that is not JSON, and for a non-UUID id", async () => {
    const user = await newUser();
    const r = await api("POST", "/execute", { token: user.token, body: "{not json" });
    expect(r.status).toBe(400);
    expect(r.body.error.code).toBe("invalid_json");
    const bad = await api("GET", "/tasks/../../etc/passwd", { token: user.token });
    expect([400, 404]).toContain(bad.status);
    const notUuid = await api("GET", "/tasks/12345", { token: user.token });
    expect(notUuid.status).toBe(400);
    expect(notUuid.body.error.message).toContain("ids are UUIDs");
    // A good id under a route that does not exist is a 404 naming the route, not "ids are UUIDs".
    const id = "6f1c2b9e-3d4a-4c5b-8e7f-0a1b2c3d4e5f";
    const unknown = await api("GET", `/tasks/${id}/nope`, { token: user.token });
    expect(unknown.status).toBe(404);
    expect(unknown.body.error).toEqual({ code: "no_route", message: `no route GET /tasks/${id}/nope` });
  });

  it("the anon key cannot run tasks or register workers; users cannot register workers", async () => {
    const anon = await api("POST", "/execute", { token: stack.anonKey, body: { command: "echo" } });
    expect(anon.status).toBe(403);
    const user = await newUser();
    const reg = await api("POST", "/workers", { token: user.token, body: { name: "mine" } });
    expect(reg.status).toBe(403);
    expect(reg.body.error.message).toContain("service key");
  });

  it("another tenant's task is 404 for read, output, stdin and cancel, and its topic refuses to join", async () => {
    const owner = await newUser();
    const other = await newUser();
    const { taskId } = (await api("POST", "/execute", { token: owner.token, body: { command: "echo secret", stdin: "pipe", requirements: { kind } } })).body;
    for (const [method, route, body] of [
      ["GET", `/tasks/${taskId}`],
      ["GET", `/tasks/${taskId}/output`],
      ["GET", `/tasks/${taskId}/events`],
      ["POST", `/tasks/${taskId}/stdin`, { data: "x" }],
      ["DELETE", `/tasks/${taskId}`],
    ] as const) {
      const r = await api(method, route, { token: other.token, body });
      expect(r.status, `${method} ${route}`).toBe(404);
    }
    expect((await api("GET", `/tasks/${taskId}`, { token: owner.token })).body.status).toBe("queued");
    const refused = await new Promise<string>((resolve) => {
      other.supabase.channel(`task:${taskId}`, { config: { private: true } }).subscribe((status, err) => {
        if (status !== "SUBSCRIBED") resolve(`${status} ${err?.message}`);
        else resolve("SUBSCRIBED");
      });
    });
    expect(refused).toBe(`CHANNEL_ERROR Unauthorized: You do not have permissions to read from this Channel topic: task:${taskId}`);
    await other.supabase.removeAllChannels();
    const allowed = await new Promise<string>((resolve) => {
      owner.supabase.channel(`task:${taskId}`, { config: { private: true } }).subscribe((status) => resolve(status));
    });
    expect(allowed).toBe("SUBSCRIBED");
    await api("DELETE", `/tasks/${taskId}`, { token: owner.token });
  });

  it("users cannot write tables directly, even their own rows", async () => {
    const user = await newUser();
    const { taskId } = (await api("POST", "/execute", { token: user.token, body: { command: "echo", requirements: { kind } } })).body;
    const attempt = sql.begin(async (tx) => {
      await tx`select set_config('role', 'authenticated', true), set_config('request.jwt.claims', ${JSON.stringify({ role: "authenticated", sub: user.id })}, true)`;
      await tx`update public.tasks set status = 'succeeded' where id = ${taskId}`;
    });
    await expect(attempt).rejects.toThrow(/permission denied/);
    await api("DELETE", `/tasks/${taskId}`, { token: user.token });
  });
});
