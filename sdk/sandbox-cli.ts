// `cogo sandbox create|list|kill`, `cogo exec <id> -- <cmd>` and `cogo files ls|get|put|rm`:
// persistent sandboxes from a terminal.
import { readFile, writeFile } from "node:fs/promises";
import { parseArgs } from "node:util";
import type { SandboxClient } from "./client.ts";

export const SANDBOX_USAGE = `  sandbox create [--kind KIND] [--idle-timeout MS] [--lifetime MS]
                                  create a persistent sandbox; prints it as JSON once ready
  sandbox list                    your sandboxes as JSON
  sandbox kill <sandboxId>        stop it: every process killed, its workspace removed
  exec <sandboxId> [--cwd DIR] [--background] -- <cmd> [args…]
                                  run a command in a live sandbox, stream it, exit with its code
  files ls|get|put|rm <sandboxId> …
                                  files of a live sandbox (cogo files --help)`;

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
      const sbx = await client.sandboxes.create({
        ...(values.kind ? { requirements: { kind: values.kind } } : {}),
        ...(values["idle-timeout"] ? { idleTimeoutMs: Number(values["idle-timeout"]) } : {}),
        ...(values.lifetime ? { maxLifetimeMs: Number(values.lifetime) } : {}),
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

export async function execCommand(client: SandboxClient, argv: string[], fail: Fail): Promise<number> {
  const { values, positionals } = parseArgs({ args: argv, allowPositionals: true, options: { cwd: { type: "string" }, background: { type: "boolean" } } });
  const [id, ...cmd] = positionals;
  if (!id || cmd.length === 0) fail("exec needs a sandbox id and a command: npm run cogo -- exec <id> -- 'ls -la'");
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
