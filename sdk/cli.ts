// `cogo`: run a command in the sandbox and stream it live, follow a task's logs, and more. The SDK
// package's bin (built to sdk/dist/cli.js by `npm run build:sdk`); in the checkout `npm run cogo`.
// The client (zod's schemas with it), supabase-js and ws are imported only once a command connects,
// so `cogo --help` and a usage error load none of them.
import { existsSync } from "node:fs";
import path from "node:path";
import { parseArgs } from "node:util";
import { renderUsage } from "../functions/_shared/quotas/usage.ts";
import { dashboardTaskUrl, FLAG_RANGES, FlagError, forwardStdin, parseIntFlag } from "./cli-args.ts";
import { COMMAND_HELP, wantsHelp } from "./cli-help.ts";
import { SandboxError } from "./errors.ts";
import type { TaskResult } from "./handle.ts";
import { PLAN_USAGE, planCommand, watchCommand } from "./plan-cli.ts";
import { SANDBOX_USAGE, execCommand, filesCommand, sandboxCommand, shellCommand } from "./sandbox-cli.ts";

const USAGE = `Usage: cogo [--url URL] [--anon-key KEY] <command> [options]
       (in the checkout: npm run cogo -- <command> [options])

Commands:
  run [options] -- <cmd> [args…]   run a command in a sandbox, stream its output, exit with its code
                                  (one argument runs via /bin/sh -c; several are an argv)
      --stdin                     forward this terminal's stdin to the task
      --timeout MS                wall time limit (default 600000)
      --priority N                -1000…899, higher runs first (default 0; 900 and up are the system's)
      --kind KIND                 worker kind to run on (default basic)
      --file PATH=LOCAL           put LOCAL into the workspace at PATH (repeatable)
  logs <taskId> [--follow]        print a task's output; --follow streams until it ends
  status <taskId>                 the task as JSON
  cancel <taskId>                 cancel a task
  workers                         the fleet as JSON
  health                          queue and fleet health as JSON
  usage [--json]                  your running and queued tasks, stored bytes and rate limits
                                  against your quotas, as a table (or JSON)
${PLAN_USAGE}
${SANDBOX_USAGE}

Every command has its own help: cogo <command> --help. \`run\` prints the task's id and its
dashboard page on stderr at start (COGO_DASHBOARD_URL, default <SUPABASE_URL>/dashboard/).

Connection: --url and --anon-key (before the command), else the environment, else ./.env.local
(the one npm start writes; read when SUPABASE_URL is not set otherwise):
  SUPABASE_URL, SUPABASE_ANON_KEY, and COGO_TOKEN (a user JWT). Without COGO_TOKEN, a token for
  COGO_USER_ID (default ${"00000000-0000-4000-8000-000000000001"}) is minted from SUPABASE_JWT_SECRET
  (the embedded default only; on a real project sign in with Supabase Auth and set COGO_TOKEN).
`;

const DEV_USER = "00000000-0000-4000-8000-000000000001";

function fail(message: string, code = 2): never {
  console.error(`cogo: ${message}`);
  process.exit(code);
}

/**
 * `npm run cogo` runs in the checkout, but the paths a user gives (--file, plan files, watch
 * directories) are meant from where they typed it (npm's INIT_CWD): work there, and remember the
 * checkout for its .env.local. Run as the installed bin, the process is already where the user is.
 */
function enterUserDirectory(): string | undefined {
  const userDir = process.env.INIT_CWD;
  if (process.env.npm_lifecycle_event !== "cogo" || !userDir) return undefined;
  const scriptDir = process.cwd();
  process.chdir(userDir);
  return scriptDir;
}
const checkoutDir = enterUserDirectory();
/** Where connect() looks for .env.local: the user's directory, then (npm run cogo) the checkout's. */
const envFiles = [process.cwd(), ...(checkoutDir ? [checkoutDir] : [])].map((d) => path.join(d, ".env.local"));

/** `--url URL` / `--anon-key KEY` before the command: they win over the environment. */
function takeConnectionOptions(argv: string[]): string[] {
  const names: Record<string, string> = { "--url": "SUPABASE_URL", "--anon-key": "SUPABASE_ANON_KEY" };
  let i = 0;
  for (; i < argv.length; i++) {
    const [flag = "", inline] = argv[i]!.split(/=(.*)/s);
    const variable = names[flag];
    if (!variable) break;
    process.env[variable] = inline ?? argv[++i] ?? fail(`${flag} needs a value`);
  }
  return argv.slice(i);
}

/**
 * supabase-js (2.119) prints a "Node.js 20 and below are deprecated" notice when imported on Node
 * 20, with no option or variable to turn it off; the CLI's output is its user's, so that one line
 * is dropped while the module loads. Anything else it warns stays.
 */
async function importSupabase(): Promise<typeof import("@supabase/supabase-js")> {
  const warn = console.warn;
  console.warn = (...args: unknown[]) => {
    if (typeof args[0] === "string" && args[0].includes("Node.js 20 and below are deprecated")) return;
    warn(...args);
  };
  try {
    return await import("@supabase/supabase-js");
  } finally {
    console.warn = warn;
  }
}

async function connect() {
  const envFile = envFiles.find((f) => existsSync(f));
  if (!process.env.SUPABASE_URL && envFile) process.loadEnvFile(envFile);
  const url = process.env.SUPABASE_URL;
  const anonKey = process.env.SUPABASE_ANON_KEY;
  if (!url || !anonKey) fail(`SUPABASE_URL and SUPABASE_ANON_KEY are not set (--url/--anon-key, the environment or ${envFiles.join(", ")}); npm start writes .env.local`);
  let token = process.env.COGO_TOKEN;
  if (!token && process.env.SUPABASE_JWT_SECRET) {
    const { mintUserToken } = await import("../embedded/keys.ts");
    token = await mintUserToken(process.env.SUPABASE_JWT_SECRET, process.env.COGO_USER_ID ?? DEV_USER);
  }
  if (!token) fail("no COGO_TOKEN (a user's access token) and no SUPABASE_JWT_SECRET to mint one.");
  const [{ createClient }, { default: WebSocket }, { createSandboxClient }] = await Promise.all([importSupabase(), import("ws"), import("./client.ts")]);
  // Node 20 has no global WebSocket; ws serves Realtime there (and on later Nodes alike).
  const supabase = createClient(url, anonKey, { accessToken: async () => token, realtime: { transport: WebSocket as never } });
  return { url, supabase, sandbox: createSandboxClient(supabase) };
}

function exitCodeOf(r: TaskResult): number {
  if (r.status === "succeeded") return 0;
  if (r.exitCode !== null) return r.exitCode;
  if (r.status === "timed_out") return 124;
  if (r.status === "cancelled") return 130;
  return 1;
}

async function run(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      stdin: { type: "boolean" },
      timeout: { type: "string" },
      priority: { type: "string" },
      kind: { type: "string" },
      file: { type: "string", multiple: true },
    },
  });
  if (positionals.length === 0) fail("run needs a command: cogo run -- 'echo hi' (cogo run --help)");
  const timeoutMs = parseIntFlag("--timeout", values.timeout, FLAG_RANGES.timeout);
  const priority = parseIntFlag("--priority", values.priority, FLAG_RANGES.priority);
  const { readFile } = await import("node:fs/promises");
  const files = await Promise.all(
    (values.file ?? []).map(async (f) => {
      const eq = f.indexOf("=");
      if (eq < 1) fail(`--file ${f}: expected PATH=LOCAL`);
      return { path: f.slice(0, eq), content: (await readFile(f.slice(eq + 1))).toString("base64"), encoding: "base64" as const };
    }),
  );
  const { url, sandbox } = await connect();
  const handle = await sandbox.execute(
    {
      ...(positionals.length === 1 ? { command: positionals[0]! } : { argv: positionals }),
      files,
      stdin: values.stdin ? "pipe" : "closed",
      ...(timeoutMs !== undefined ? { timeoutMs } : {}),
      ...(priority !== undefined ? { priority } : {}),
      ...(values.kind ? { requirements: { kind: values.kind } } : {}),
    },
    {
      onStdout: (d) => process.stdout.write(d),
      onStderr: (d) => process.stderr.write(d),
      onOutput: (c) => c.stream === "system" && process.stderr.write(`[cogo] ${c.data}`),
    },
    { collectOutput: false },
  );
  // stderr, so stdout stays exactly the task's output.
  process.stderr.write(`task ${handle.taskId}  ${dashboardTaskUrl(url, handle.taskId, process.env.COGO_DASHBOARD_URL)}\n`);
  // A kind no live worker serves would otherwise wait in silence: say so at once (the task stays
  // queued until such a worker starts; Ctrl-C cancels it).
  const kind = values.kind ?? "basic";
  void sandbox
    .health()
    .then((h) => {
      if (!((h.workerKinds?.[kind] ?? 0) > 0))
        process.stderr.write(`[cogo] no live worker serves kind "${kind}": the task waits in the queue until one starts (Ctrl-C cancels it)\n`);
    })
    .catch(() => {}); // health is advice here: the task runs either way
  let interrupted = false;
  process.on("SIGINT", () => {
    if (interrupted) process.exit(130);
    interrupted = true;
    process.stderr.write(`\n[cogo] cancelling task ${handle.taskId}… (Ctrl-C again to leave it running)\n`);
    void handle.cancel();
  });
  // Killed (a supervisor, a timeout in a script): the task goes with the CLI rather than running,
  // or waiting queued, with nobody to read it. Bounded, so the CLI always ends.
  process.on("SIGTERM", () => {
    process.stderr.write(`[cogo] terminated: cancelling task ${handle.taskId}\n`);
    const bound = new Promise((resolve) => setTimeout(resolve, 5000).unref());
    void Promise.race([handle.cancel().catch(() => {}), bound]).finally(() => process.exit(143));
  });
  // Input the task ended before reading is no error; any other failure to send it ends the CLI.
  if (values.stdin) forwardStdin(handle, process.stdin).catch((err) => fail(`stdin not sent: ${err instanceof Error ? err.message : String(err)}`, 1));
  const result = await handle.result();
  if (result.status !== "succeeded") process.stderr.write(`[cogo] task ${result.taskId} ${result.status}: ${result.reason}\n`);
  return exitCodeOf(result);
}

async function logs(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({ args: argv, allowPositionals: true, options: { follow: { type: "boolean", short: "f" } } });
  const id = positionals[0] ?? fail("logs needs a task id");
  const { sandbox } = await connect();
  const write = (c: { stream: string; data: string }) => (c.stream === "stdout" ? process.stdout : process.stderr).write(c.data);
  const handle = await sandbox.attach(id, values.follow ? { onOutput: write } : {}, { collectOutput: false });
  // Retention deletes an ended task's output after a while: say so rather than print nothing.
  const purged = (task: { purgedAt: string | null }) => task.purgedAt && process.stderr.write(`[cogo] task ${id}: its output was deleted on ${task.purgedAt} (retention)\n`);
  if (values.follow) {
    const result = await handle.result();
    purged(result.task);
    return exitCodeOf(result);
  }
  for (const c of await handle.replay()) write(c);
  purged(await sandbox.getTask(id));
  await handle.close();
  return 0;
}

/** The command being run, for the pointer to its help in a usage error. */
let command: string | undefined;

async function main(): Promise<number> {
  const [cmd, ...rest] = takeConnectionOptions(process.argv.slice(2));
  command = cmd;
  const json = (v: unknown) => (console.log(JSON.stringify(v, null, 2)), 0);
  const help = cmd === undefined ? undefined : COMMAND_HELP[cmd];
  if (help && wantsHelp(rest)) return (console.log(help), 0);
  switch (cmd) {
    case "run":
      return await run(rest);
    case "logs":
      return await logs(rest);
    case "status":
      return json(await (await connect()).sandbox.getTask(rest[0] ?? fail("status needs a task id")));
    case "cancel":
      return json(await (await connect()).sandbox.cancel(rest[0] ?? fail("cancel needs a task id")));
    case "workers":
      return json(await (await connect()).sandbox.listWorkers());
    case "health":
      return json(await (await connect()).sandbox.health());
    case "usage": {
      const report = await (await connect()).sandbox.usage();
      return rest.includes("--json") ? json(report) : (process.stdout.write(renderUsage(report)), 0);
    }
    case "plan":
      return await planCommand((await connect()).sandbox, rest, fail);
    case "plan-status":
      return json(await (await connect()).sandbox.getPlan(rest[0] ?? fail("plan-status needs a plan id")));
    case "plan-cancel":
      return json(await (await connect()).sandbox.cancelPlan(rest[0] ?? fail("plan-cancel needs a plan id")));
    case "sandbox":
      return await sandboxCommand((await connect()).sandbox, rest, fail);
    case "exec":
      return await execCommand((await connect()).sandbox, rest, fail);
    case "shell":
      return await shellCommand((await connect()).sandbox, rest, fail);
    case "files":
      return await filesCommand(async () => (await connect()).sandbox, rest, fail);
    case "watch":
      return await watchCommand((await connect()).sandbox, rest, fail);
    case undefined:
    case "-h":
    case "--help":
    case "help":
      console.log(USAGE);
      return 0;
    default:
      fail(`unknown command ${cmd}\n\n${USAGE}`);
  }
}

/** A usage mistake (a bad flag value, an option parseArgs does not know): exit 2 with a pointer to the help. */
function usageMistake(err: unknown): string | undefined {
  if (err instanceof FlagError) return err.message;
  const code = (err as { code?: unknown } | null)?.code;
  if (typeof code === "string" && code.startsWith("ERR_PARSE_ARGS_")) return (err as Error).message;
  return undefined;
}

main().then(
  (code) => process.exit(code),
  (err) => {
    const mistake = usageMistake(err);
    if (mistake) fail(`${mistake}\nSee cogo ${command && COMMAND_HELP[command] ? `${command} ` : ""}--help.`);
    fail(err instanceof SandboxError ? `${err.message} (${err.code})` : err instanceof Error ? err.message : String(err), 1);
  },
);
