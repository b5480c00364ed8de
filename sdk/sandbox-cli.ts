// `cogo sandbox create|list|kill`, `cogo exec <id> -- <cmd>`, `cogo shell <id>` and
// `cogo files ls|get|put|rm`: persistent sandboxes from a terminal.
import { readFile, writeFile } from "node:fs/promises";
import { parseArgs } from "node:util";
import { FLAG_RANGES, parseIntFlag } from "./cli-args.ts";
import type { SandboxClient } from "./client.ts";

export const SANDBOX_USAGE = `  sandbox create [--kind KIND] [--idle-timeout MS] [--lifetime MS]
                                  create a persistent sandbox; prints it as JSON once ready
  sandbox list                    your sandboxes as JSON
  sandbox kill <sandboxId>        stop it: every process killed, its workspace removed
  exec <sandboxId> [--cwd DIR] [--background] -- <cmd> [args…]
                                  run a command in a live sandbox, stream it, exit with its code
  shell <sandboxId> [--command CMD] [--cwd DIR]
                                  an interactive terminal in a live sandbox (bash -i, or CMD): your
                                  terminal goes raw, keys and window size are forwarded, and it is
                                  restored on exit; exits with the shell's code
  files ls|get|put|rm <sandboxId> …
                                  files of a live sandbox (cogo files --help)`;

export const SHELL_HELP = `Usage: cogo shell <sandboxId> [--command CMD] [--cwd DIR]

Opens a terminal in the live sandbox <sandboxId> (POST /sandboxes/:id/pty): a pseudo-terminal of
the sandbox's own, running bash -i (sh -i where bash is missing) or CMD by /bin/sh -c. Your
terminal is put in raw mode, so every key (Ctrl-C, Ctrl-D, arrows) goes to the sandbox; a window
resize is forwarded (SIGWINCH). The terminal is restored when the shell exits, and the exit code
is the shell's. Ctrl-] ends the session from this side (the shell is killed).

Options:
  --command CMD   what to run on the terminal instead of the shell
  --cwd DIR       working directory inside the sandbox (default /workspace)
  -h, --help      this text`;

/** Ctrl-]: ends the session from the local side (telnet's escape). */
const ESCAPE = 0x1d;

export const FILES_USAGE = `cogo files: the files of a live sandbox (paths relative to /workspace)
  files ls <sandboxId> [DIR]                  entries of DIR as JSON (default: the workspace)
  files get <sandboxId> <path> [--out FILE]   a file's bytes to stdout (or FILE)
  files put <sandboxId> <path> [FILE]         write FILE (or stdin) to path; parent directories made
  files rm <sandboxId> <path> [--recursive]   remove a file; a directory only with --recursive
At most 32 MiB per call; symlinks are never followed.`;

type Fail = (message: string) => never;
const json = (v: unknown) => (console.log(JSON.stringify(v, null, 2)), 0);

export async function sandboxCommand(client: SandboxClient, argv: string[], fail: Fail): Promise<number> {
  const [sub, ...rest] = argv;
  switch (sub) {
    case "create": {
      const { values } = parseArgs({
        args: rest,
        options: { kind: { type: "string" }, "idle-timeout": { type: "string" }, lifetime: { type: "string" } },
      });
      const idleTimeoutMs = parseIntFlag("--idle-timeout", values["idle-timeout"], FLAG_RANGES.sandboxClock);
      const maxLifetimeMs = parseIntFlag("--lifetime", values.lifetime, FLAG_RANGES.sandboxClock);
      const sbx = await client.sandboxes.create({
        ...(values.kind ? { requirements: { kind: values.kind } } : {}),
        ...(idleTimeoutMs !== undefined ? { idleTimeoutMs } : {}),
        ...(maxLifetimeMs !== undefined ? { maxLifetimeMs } : {}),
      });
      return json(sbx.info);
    }
    case "list":
      return json(await client.sandboxes.list());
    case "kill":
      return json(await (await client.sandboxes.connect(rest[0] ?? fail("sandbox kill needs a sandbox id"))).kill());
    default:
      return fail(`sandbox: unknown subcommand ${sub ?? "(none)"}; try create, list or kill`);
  }
}

export async function shellCommand(client: SandboxClient, argv: string[], fail: Fail): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: { command: { type: "string" }, cwd: { type: "string" }, help: { type: "boolean", short: "h" } },
  });
  if (values.help) return (console.log(SHELL_HELP), 0);
  const [id, extra] = positionals;
  if (!id || extra !== undefined) fail(`shell needs exactly one sandbox id\n\n${SHELL_HELP}`);
  const stdin = process.stdin;
  const stdout = process.stdout;
  const size = () => ({ cols: clampSize(stdout.columns, 80), rows: clampSize(stdout.rows, 24) });
  const sbx = await client.sandboxes.connect(id!);
  const term = await sbx.pty.create({
    ...size(),
    command: values.command,
    cwd: values.cwd,
    onData: (d) => stdout.write(d),
    callbacks: { onOutput: (c) => c.stream === "system" && process.stderr.write(`\r\n[cogo] ${c.data.replace(/\n/g, "\r\n")}`) },
  });
  const raw = stdin.isTTY === true;
  const restore = () => {
    if (raw && stdin.isRaw) stdin.setRawMode(false);
  };
  // However this process ends (an error, process.exit), the local terminal is given back.
  process.once("exit", restore);
  if (raw) stdin.setRawMode(true);
  const onKeys = (b: Buffer) => {
    if (raw && b.includes(ESCAPE)) {
      void term.kill().catch(() => {});
      return;
    }
    void term.sendInput(new Uint8Array(b)).catch((err) => process.stderr.write(`\r\n[cogo] input not sent: ${err instanceof Error ? err.message : err}\r\n`));
  };
  // SIGWINCH: Node emits 'resize' on a TTY stdout.
  let resizeTimer: NodeJS.Timeout | undefined;
  const onResize = () => {
    // One request once the window has settled, not one per step of a drag.
    clearTimeout(resizeTimer);
    resizeTimer = setTimeout(() => void term.resize(size()).catch(() => {}), 100);
  };
  stdin.on("data", onKeys);
  stdout.on("resize", onResize);
  try {
    const r = await term.wait();
    restore();
    // A shell's own exit code says enough; anything else (cancelled, timed out, killed) is told.
    if (r.exitCode === null) process.stderr.write(`[cogo] terminal ${r.taskId} ${r.result.status}: ${r.error}\n`);
    return r.exitCode ?? 1;
  } finally {
    restore();
    stdin.off("data", onKeys);
    stdout.off("resize", onResize);
    clearTimeout(resizeTimer);
    stdin.pause();
  }
}

/** A window dimension the API takes (1..1000), or the fallback when there is no window. */
function clampSize(n: number | undefined, fallback: number): number {
  return n && Number.isFinite(n) ? Math.min(1000, Math.max(1, Math.floor(n))) : fallback;
}

export async function execCommand(client: SandboxClient, argv: string[], fail: Fail): Promise<number> {
  const { values, positionals } = parseArgs({ args: argv, allowPositionals: true, options: { cwd: { type: "string" }, background: { type: "boolean" } } });
  const [id, ...cmd] = positionals;
  if (!id || cmd.length === 0) fail("exec needs a sandbox id and a command: cogo exec <id> -- 'ls -la'");
  const sbx = await client.sandboxes.connect(id!);
  const handle = await sbx.commands.start(
    cmd.length === 1 ? cmd[0]! : cmd,
    {
      cwd: values.cwd,
      onStdout: (d) => process.stdout.write(d),
      onStderr: (d) => process.stderr.write(d),
      onOutput: (c) => c.stream === "system" && process.stderr.write(`[cogo] ${c.data}`),
      handle: { collectOutput: false },
    },
    values.background ?? false,
  );
  if (values.background) return json({ taskId: handle.taskId, topic: handle.topic });
  process.on("SIGINT", () => void handle.cancel());
  const r = await handle.result();
  if (r.status !== "succeeded") process.stderr.write(`[cogo] command ${r.taskId} ${r.status}: ${r.reason}\n`);
  return r.status === "succeeded" ? 0 : (r.exitCode ?? 1);
}

async function readStdin(): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const chunk of process.stdin) parts.push(chunk as Buffer);
  return Buffer.concat(parts);
}

export async function filesCommand(client: () => Promise<SandboxClient>, argv: string[], fail: Fail): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: { out: { type: "string" }, recursive: { type: "boolean", short: "r" }, help: { type: "boolean", short: "h" } },
  });
  const [sub, id, path, file] = positionals;
  if (values.help || sub === undefined || sub === "help") return (console.log(FILES_USAGE), 0);
  if (!id) fail(`files ${sub} needs a sandbox id; see cogo files --help`);
  const needPath = () => path ?? fail(`files ${sub} needs a path; see cogo files --help`);
  const files = (await (await client()).sandboxes.connect(id!)).files;
  switch (sub) {
    case "ls":
      return json(await files.list(path ?? ""));
    case "get": {
      const data = await files.read(needPath());
      if (values.out) await writeFile(values.out, data);
      else process.stdout.write(data);
      return 0;
    }
    case "put":
      return json(await files.write(needPath(), file && file !== "-" ? await readFile(file) : await readStdin()));
    case "rm":
      await files.remove(needPath(), { recursive: values.recursive });
      return 0;
    default:
      return fail(`files: unknown subcommand ${sub}; try ls, get, put or rm (cogo files --help)`);
  }
}
