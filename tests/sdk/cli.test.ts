// The `cogo` CLI as a user meets it (issue 22): help on every command, flag mistakes that say what
// was expected, the task's id and dashboard page on stderr, and --stdin racing a task's end. The
// CLI is bundled once as the package's bin is (esbuild, supabase-js and ws left as imports) and
// run by plain node from a directory outside the checkout, with only the environment it is given.
import { spawn } from "node:child_process";
import { mkdir, mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { Readable } from "node:stream";
import { fileURLToPath } from "node:url";
import * as esbuild from "esbuild";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { FLAG_RANGES, forwardStdin, parseIntFlag } from "../../sdk/cli-args.ts";
import { COMMAND_HELP, SANDBOX_IDLE_DEFAULT_MS } from "../../sdk/cli-help.ts";
import { ConflictError, NotFoundError } from "../../sdk/errors.ts";
import { SANDBOX_DEFAULTS } from "../../functions/_shared/schemas.ts";
import { newUser, stack, startWorker, uniqueKind } from "../helpers/env.ts";

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
const UUID = "[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}";
const literally = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
const kind = uniqueKind("cli");

let scratch: string;
let cliJs: string;
let userDir: string;
let token: string;

interface Ran {
  code: number | null;
  stdout: string;
  stderr: string;
}

function cogo(args: string[], opts: { stdin?: string; env?: Record<string, string> } = {}): Promise<Ran> {
  const child = spawn(process.execPath, [cliJs, ...args], {
    cwd: userDir,
    env: { PATH: process.env.PATH!, SUPABASE_URL: stack.apiUrl, SUPABASE_ANON_KEY: stack.anonKey, COGO_TOKEN: token, ...opts.env },
    stdio: [opts.stdin === undefined ? "ignore" : "pipe", "pipe", "pipe"],
  });
  if (opts.stdin !== undefined) child.stdin!.end(opts.stdin);
  let stdout = "";
  let stderr = "";
  child.stdout!.on("data", (d) => (stdout += d));
  child.stderr!.on("data", (d) => (stderr += d));
  return new Promise((resolve, reject) => {
    child.on("error", reject);
    child.on("close", (code) => resolve({ code, stdout, stderr }));
  });
}

/** The one line `cogo run` writes on stderr at start: the task's id and its dashboard page. */
const taskLine = (dashboard = `${stack.apiUrl}/dashboard/`) => new RegExp(`^task (${UUID})  ${literally(dashboard)}#/tasks/\\1\\n$`);

beforeAll(async () => {
  await mkdir(path.join(ROOT, ".scratch"), { recursive: true });
  // Inside the checkout so the bundle's supabase-js and ws imports resolve to its node_modules.
  scratch = await mkdtemp(path.join(ROOT, ".scratch", "cli-test-"));
  cliJs = path.join(scratch, "cli.js");
  try {
    await esbuild.build({
      entryPoints: [path.join(ROOT, "sdk", "cli.ts")],
      outfile: cliJs,
      bundle: true,
      format: "esm",
      platform: "node",
      target: "es2022",
      external: ["@supabase/supabase-js", "ws"],
      logLevel: "warning",
    });
  } finally {
    await esbuild.stop();
  }
  userDir = await mkdtemp(path.join(tmpdir(), "cogo-cli-user-"));
  await startWorker({ kind });
  token = (await newUser()).token;
});
afterAll(async () => {
  await rm(scratch, { recursive: true, force: true });
  await rm(userDir, { recursive: true, force: true });
});

describe("cogo --help", () => {
  it("every command has its own help: a usage line naming it, exit 0, nothing connects", async () => {
    const commands = Object.keys(COMMAND_HELP);
    expect(commands).toEqual(
      expect.arrayContaining(["run", "logs", "status", "cancel", "workers", "health", "usage", "plan", "plan-status", "plan-cancel", "watch", "sandbox", "exec", "shell", "files"]),
    );
    // No connection settings at all: help must not need them.
    const runs = await Promise.all(commands.flatMap((c) => [cogo([c, "--help"], { env: { SUPABASE_URL: "", SUPABASE_ANON_KEY: "" } }), cogo([c, "-h"])]));
    for (const [i, r] of runs.entries()) {
      const c = commands[Math.floor(i / 2)]!;
      expect({ c, code: r.code, stderr: r.stderr }).toEqual({ c, code: 0, stderr: "" });
      expect(r.stdout.split("\n")[0]).toMatch(new RegExp(`^Usage: cogo ${literally(c)}( |$)`));
      expect(r.stdout).toContain("Example:");
    }
    // Defaults shown are the ones applied.
    expect(COMMAND_HELP.run).toContain("(default 600000)");
    expect(SANDBOX_IDLE_DEFAULT_MS).toBe(SANDBOX_DEFAULTS.idleTimeoutMs);
    // A --help after `--` belongs to the task's command, not to cogo.
    const task = await cogo(["run", "--kind", kind, "--", "printf", "%s\\n", "--help"]);
    expect(task.stdout).toBe("--help\n");
    expect(task.code).toBe(0);
  });
});

describe("cogo flag mistakes", () => {
  it("say the flag, what was expected and what was given; exit 2 before anything is sent", async () => {
    const cases: [string[], string][] = [
      [["run", "--timeout", "abc", "--", "true"], `--timeout: expected a number of milliseconds (100…3600000), got "abc"`],
      [["run", "--timeout", "1.5", "--", "true"], `--timeout: expected a number of milliseconds (100…3600000), got "1.5"`],
      [["run", "--timeout", "99", "--", "true"], `--timeout: expected a number of milliseconds (100…3600000), got "99"`],
      [["run", "--priority", "900", "--", "true"], `--priority: expected a whole number (-1000…899), got "900"`],
      [["run", "--priority=", "--", "true"], `--priority: expected a whole number (-1000…899), got ""`],
      [["sandbox", "create", "--idle-timeout", "10s"], `--idle-timeout: expected a number of milliseconds (1000…3600000), got "10s"`],
      [["sandbox", "create", "--lifetime", "0"], `--lifetime: expected a number of milliseconds (1000…3600000), got "0"`],
      [["watch", userDir, "--workspace", "00000000-0000-4000-8000-000000000000", "--debounce=-1"], `--debounce: expected a number of milliseconds (0 or more), got "-1"`],
    ];
    const runs = await Promise.all(cases.map(([args]) => cogo(args)));
    for (const [i, r] of runs.entries()) {
      const [args, message] = cases[i]!;
      expect({ args, code: r.code, stdout: r.stdout }).toEqual({ args, code: 2, stdout: "" });
      expect(r.stderr).toBe(`cogo: ${message}\nSee cogo ${args[0]} --help.\n`);
    }
    // The same check in-process, where the accepted edges are.
    expect(parseIntFlag("--timeout", "100", FLAG_RANGES.timeout)).toBe(100);
    expect(parseIntFlag("--timeout", "3600000", FLAG_RANGES.timeout)).toBe(3_600_000);
    expect(parseIntFlag("--priority", "-1000", FLAG_RANGES.priority)).toBe(-1000);
    expect(parseIntFlag("--timeout", undefined, FLAG_RANGES.timeout)).toBeUndefined();
    // An option parseArgs does not know: its message and the pointer, no stack trace.
    const unknown = await cogo(["logs", "--bogus", "x"]);
    expect(unknown.code).toBe(2);
    expect(unknown.stderr).toMatch(/^cogo: Unknown option '--bogus'.*\nSee cogo logs --help\.\n$/s);
  });
});

describe("cogo run", () => {
  it("prints the task id and its dashboard page on stderr, stdout the task's alone; --stdin reaches the task", async () => {
    const r = await cogo(["run", "--kind", kind, "--stdin", "--", 'read name; echo "hi $name"'], { stdin: "alice\n" });
    expect(r.stdout).toBe("hi alice\n");
    expect(r.stderr).toMatch(taskLine());
    expect(r.code).toBe(0);
    const own = await cogo(["run", "--kind", kind, "--", "exit 4"], { env: { COGO_DASHBOARD_URL: "https://dash.example.com/cogo" } });
    expect(own.code).toBe(4);
    expect(own.stderr.split("\n")[0] + "\n").toMatch(taskLine("https://dash.example.com/cogo/"));
  });

  it("says at once when no live worker serves the kind; SIGTERM cancels the waiting task and exits 143", async () => {
    const u = await newUser();
    const nobody = uniqueKind("cli-unserved");
    const child = spawn(process.execPath, [cliJs, "run", "--kind", nobody, "--", "true"], {
      cwd: userDir,
      env: { PATH: process.env.PATH!, SUPABASE_URL: stack.apiUrl, SUPABASE_ANON_KEY: stack.anonKey, COGO_TOKEN: u.token },
      stdio: ["ignore", "pipe", "pipe"],
    });
    let stderr = "";
    child.stderr!.on("data", (d) => (stderr += d));
    const closed = new Promise<number | null>((resolve) => child.on("close", resolve));
    const warning = `[cogo] no live worker serves kind "${nobody}": the task waits in the queue until one starts (Ctrl-C cancels it)\n`;
    await expect.poll(() => stderr, { timeout: 10_000, interval: 20 }).toContain(warning);
    const taskId = new RegExp(`^task (${UUID}) `).exec(stderr)![1]!;
    expect((await u.sandbox.getTask(taskId)).status).toBe("queued");
    child.kill("SIGTERM");
    expect(await closed).toBe(143);
    expect(stderr).toContain(`[cogo] terminated: cancelling task ${taskId}\n`);
    expect((await u.sandbox.getTask(taskId)).status).toBe("cancelled");
    // With a live worker of the kind, no such line (the other cases here see only the task line).
  });

  it("--stdin racing a task that ends at once: exit 0 every time, nothing but the task line on stderr", async () => {
    const runs: Ran[] = [];
    // Ten of them through the CLI itself, a few at a time (each is a node process and a task).
    for (let i = 0; i < 10; i += 5) runs.push(...(await Promise.all(Array.from({ length: 5 }, () => cogo(["run", "--kind", kind, "--stdin", "--", "true"], { stdin: "x\n" })))));
    for (const r of runs) {
      expect(r.stderr).toMatch(taskLine());
      expect(r.code).toBe(0);
    }
  });

  it("forwardStdin (what --stdin runs) swallows exactly the task-ended conflict, 50 races in a row", async () => {
    const { sandbox } = await newUser();
    const outcomes: string[] = [];
    // 50 fast tasks, each sent input and EOF as it starts; then input to one that has surely ended.
    for (let i = 0; i < 50; i += 10) {
      await Promise.all(
        Array.from({ length: 10 }, async () => {
          const handle = await sandbox.execute({ command: "true", stdin: "pipe", requirements: { kind } }, {}, { collectOutput: false });
          const sent = forwardStdin(handle, Readable.from(["x\n", "y\n"]));
          await sent;
          outcomes.push((await handle.result()).status);
          await handle.close();
        }),
      );
    }
    expect(outcomes).toEqual(Array(50).fill("succeeded"));
    const ended = await sandbox.execute({ command: "true", stdin: "pipe", requirements: { kind } }, {}, { collectOutput: false });
    await ended.result();
    await ended.close();
    // Without the fix this rejects with the API's ConflictError "task … has already finished".
    await expect(ended.write("late")).rejects.toBeInstanceOf(ConflictError);
    await expect(forwardStdin(ended, Readable.from(["late\n"]))).resolves.toBeUndefined();
    // Anything else still fails: a 404, or a conflict that is not about the task's end.
    const failing = (err: Error) => ({ write: () => Promise.reject(err), closeStdin: () => Promise.resolve() });
    await expect(forwardStdin(failing(new NotFoundError(404, "not_found", "no task")), Readable.from(["x"]))).rejects.toBeInstanceOf(NotFoundError);
    await expect(forwardStdin(failing(new ConflictError(409, "conflict", "stdin is closed")), Readable.from(["x"]))).rejects.toThrow("stdin is closed");
  });
});
