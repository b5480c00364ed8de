// `cogo sandbox create|list|kill` and `cogo exec <id> -- <cmd>`: persistent sandboxes from a terminal.
import { parseArgs } from "node:util";
import type { SandboxClient } from "./client.ts";

export const SANDBOX_USAGE = `  sandbox create [--kind KIND] [--idle-timeout MS] [--lifetime MS]
                                  create a persistent sandbox; prints it as JSON once ready
  sandbox list                    your sandboxes as JSON
  sandbox kill <sandboxId>        stop it: every process killed, its workspace removed
  exec <sandboxId> [--cwd DIR] [--background] -- <cmd> [args…]
                                  run a command in a live sandbox, stream it, exit with its code`;

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
