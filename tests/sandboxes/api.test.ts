// Persistent sandboxes through the API and the SDK (functions/_shared/routes/sandboxes.ts,
// sdk/sandboxes.ts) on the real stack: create answers ready, commands run through the task
// machinery (output, exit code, cancel) and carry state, the owner's sandbox_status events arrive
// on the sandbox's topic, another tenant gets 404 everywhere (and no topic), a stopped sandbox
// takes no command (409), and network is refused (400, design risk R1).
import { spawn } from "node:child_process";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { CommandExitError, ConflictError, NotFoundError } from "../../sdk/index.ts";
import { api, newUser, stack, startWorker, uniqueKind, stopLiveSandboxes } from "../helpers/env.ts";
import { isRoot, requireRoot } from "../helpers/root.ts";

/** `cogo …` as user `a`; its exit code and stdout. */
function cli(args: string[]): Promise<{ code: number; out: string; err: string }> {
  const child = spawn(process.execPath, ["--import", "tsx", "sdk/cli.ts", ...args], {
    env: { PATH: process.env.PATH!, SUPABASE_URL: stack.apiUrl, SUPABASE_ANON_KEY: stack.anonKey, COGO_TOKEN: a.token },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let out = "";
  let err = "";
  child.stdout.on("data", (d) => (out += d));
  child.stderr.on("data", (d) => (err += d));
  return new Promise((resolve) => child.on("exit", (code) => resolve({ code: code ?? -1, out, err })));
}

requireRoot("Persistent sandboxes");
const kind = uniqueKind("sbxapi");
let a: Awaited<ReturnType<typeof newUser>>;
let b: Awaited<ReturnType<typeof newUser>>;

beforeAll(async () => {
  a = await newUser({ maxRunning: 100 });
  b = await newUser();
  if (isRoot) await startWorker({ kind, concurrency: 2 });
});
afterAll(async () => {
  await stopLiveSandboxes(a.id);
});

describe("sandboxes over the API", () => {
  it("refuses network (R1) and bad clocks with a 400 saying why", async () => {
    const net = await api("POST", "/sandboxes", { token: a.token, body: { network: true, requirements: { kind } } });
    expect(net.status).toBe(400);
    expect(JSON.stringify(net.body)).toMatch(/without network/);
    expect((await api("POST", "/sandboxes", { token: a.token, body: { maxLifetimeMs: 7_200_000, requirements: { kind } } })).status).toBe(400);
    expect((await api("POST", "/sandboxes", { body: { requirements: { kind } } })).status).toBe(401);
  });

  it.runIf(isRoot)(
    "create → ready, commands with state, cancel, events on the topic, 404 for another tenant, kill → 409",
    async () => {
      const t0 = performance.now();
      const sbx = await a.sandbox.sandboxes.create({ requirements: { kind }, idleTimeoutMs: 60_000 });
      const createMs = performance.now() - t0;
      expect(sbx.info).toMatchObject({ status: "ready", topic: `sandbox:${sbx.sandboxId}` });
      expect(sbx.info.workerId).toBeTruthy();
      console.log(`sandbox API: POST /sandboxes → 201 ready in ${createMs.toFixed(0)} ms`);

      const statuses: string[] = [];
      const channel = a.supabase.channel(sbx.topic, { config: { private: true } });
      channel.on("broadcast", { event: "sandbox_status" }, (m) => statuses.push(m.payload.data.status));
      await new Promise<void>((resolve, reject) => channel.subscribe((s, err) => (s === "SUBSCRIBED" ? resolve() : s === "CHANNEL_ERROR" ? reject(err) : undefined)));

      const seen: string[] = [];
      const first = await sbx.commands.run("echo a > f && echo hi", { onStdout: (d) => seen.push(d) });
      expect(first).toMatchObject({ exitCode: 0, stdout: "hi\n", error: null });
      expect(seen.join("")).toBe("hi\n");
      expect((await sbx.commands.run(["cat", "f"])).stdout).toBe("a\n");
      const failed = await sbx.commands.run("exit 3").catch((e) => e);
      expect(failed).toBeInstanceOf(CommandExitError);
      expect(failed.result.exitCode).toBe(3);

      // Stdin through the task handle, as for a task.
      const cat = await sbx.commands.start("tr a-z A-Z", { stdin: "pipe" }, false);
      await cat.write("piped\n");
      await cat.closeStdin();
      expect((await cat.result()).stdout).toBe("PIPED\n");

      // A command is a task: the task routes and handle work on it unchanged.
      const server = await sbx.commands.start("echo up; exec sleep 300");
      await expect.poll(async () => (await a.sandbox.getTask(server.taskId)).status, { timeout: 10_000 }).toBe("running");
      // Output is flushed in batches: poll the task's output route until the line is there.
      const output = async () => (await api("GET", `/tasks/${server.taskId}/output`, { token: a.token })).body.chunks.map((c: { data: string }) => c.data).join("");
      await expect.poll(output, { timeout: 10_000 }).toContain("up");
      await a.sandbox.cancel(server.taskId);
      expect((await server.result()).status).toBe("cancelled");
      expect((await sbx.getInfo()).status).toBe("ready");

      // Another tenant: 404 on every route, the command's task routes too, and no topic.
      const id = sbx.sandboxId;
      for (const [method, route, body] of [
        ["GET", `/sandboxes/${id}`],
        ["PATCH", `/sandboxes/${id}`, { idleTimeoutMs: 5000 }],
        ["DELETE", `/sandboxes/${id}`],
        ["POST", `/sandboxes/${id}/commands`, { command: "id" }],
        ["GET", `/tasks/${first.taskId}`],
        ["GET", `/tasks/${first.taskId}/output`],
        ["DELETE", `/tasks/${server.taskId}`],
      ] as [string, string, unknown?][]) {
        expect((await api(method, route, { token: b.token, body })).status, `${method} ${route}`).toBe(404);
      }
      await expect(b.sandbox.sandboxes.connect(id)).rejects.toBeInstanceOf(NotFoundError);
      expect((await b.sandbox.sandboxes.list()).map((s) => s.sandboxId)).not.toContain(id);
      const denied = b.supabase.channel(sbx.topic, { config: { private: true } });
      await expect(
        new Promise<void>((resolve, reject) => denied.subscribe((s, err) => (s === "SUBSCRIBED" ? resolve() : s === "CHANNEL_ERROR" ? reject(err) : undefined))),
      ).rejects.toThrow(/Unauthorized/);
      await b.supabase.removeChannel(denied);

      expect((await sbx.setTimeout(120_000)).idleTimeoutMs).toBe(120_000);
      expect((await a.sandbox.sandboxes.list()).map((s) => s.sandboxId)).toContain(id);

      const killed = await sbx.kill();
      expect(killed).toMatchObject({ status: "stopped", reason: "deleted" });
      await expect(sbx.commands.run("echo late")).rejects.toBeInstanceOf(ConflictError);
      await expect.poll(() => statuses, { timeout: 5000 }).toContain("stopped");
      await a.supabase.removeChannel(channel);
    },
    120_000,
  );

  it.runIf(isRoot)(
    "the CLI: cogo sandbox create | list | kill and cogo exec",
    async () => {
      const created = await cli(["sandbox", "create", "--kind", kind, "--idle-timeout", "60000"]);
      expect(created.code, created.err).toBe(0);
      const info = JSON.parse(created.out);
      expect(info.status).toBe("ready");
      const write = await cli(["exec", info.sandboxId, "--", "echo cli > f; exit 4"]);
      expect(write.code).toBe(4);
      const read = await cli(["exec", info.sandboxId, "--", "cat", "f"]);
      expect(read).toMatchObject({ code: 0, out: "cli\n" });
      expect(JSON.parse((await cli(["sandbox", "list"])).out).map((s: { sandboxId: string }) => s.sandboxId)).toContain(info.sandboxId);
      const killed = await cli(["sandbox", "kill", info.sandboxId]);
      expect(JSON.parse(killed.out)).toMatchObject({ status: "stopped" });
    },
    120_000,
  );
});
