// Persistent sandboxes in the SDK, named as E2B's (docs/design/persistent-sandboxes.md §2):
//   const sbx = await sandbox.sandboxes.create({ idleTimeoutMs: 60_000 });
//   const r = await sbx.commands.run("npm test", { onStdout: (d) => process.stdout.write(d) });
//   const server = await sbx.commands.start("npm run dev");   // background: a TaskHandle
//   await sbx.files.write("a.txt", "hi");                       // files: ./sandbox-files.ts
//   await sbx.setTimeout(10 * 60_000);                          // idle timeout, counted from now
//   const term = await sbx.pty.create({ cols: 80, rows: 24, onData }); // a terminal (sdk/pty.ts)
//   await sbx.kill();
// A command is a task: `commands.start` returns the same TaskHandle as `execute` (output, events,
// stdin, cancel, result), and `sandbox.attach(taskId)` follows one after a disconnect.
import type { SupabaseClient } from "@supabase/supabase-js";
import type { CommandRequest, CreateSandboxRequest } from "../functions/_shared/schemas.ts";
import type { SandboxView } from "../functions/_shared/views.ts";
import { call } from "./api.ts";
import { SandboxError } from "./errors.ts";
import { SandboxFiles } from "./sandbox-files.ts";
import { TaskHandle, type HandleOptions, type TaskCallbacks, type TaskResult } from "./handle.ts";
import { ptyCalls } from "./pty.ts";

export interface CommandOptions extends TaskCallbacks {
  /** Absolute, inside the sandbox. @default "/workspace" */
  cwd?: string;
  /** Over the sandbox's env. */
  envs?: Record<string, string>;
  /** The command's wall time. @default 600000 */
  timeoutMs?: number;
  stdin?: "pipe" | "closed";
  blockDetection?: CommandRequest["blockDetection"];
  recovery?: CommandRequest["recovery"];
  handle?: HandleOptions;
}

/** What `commands.run` resolves to (E2B's CommandResult, plus the task). */
export interface CommandResult {
  taskId: string;
  exitCode: number | null;
  stdout: string;
  stderr: string;
  /** Why it did not succeed (null when it did). */
  error: string | null;
  result: TaskResult;
}

/** `commands.run` of a command that did not succeed (non-zero exit, cancel, timeout). */
export class CommandExitError extends SandboxError {
  constructor(readonly result: CommandResult) {
    super("command_exit", `command ${result.taskId} ${result.result.status}: ${result.error ?? ""}`, { exitCode: result.exitCode, status: result.result.status });
  }
}

export class LiveSandbox {
  readonly sandboxId: string;
  readonly topic: string;
  /** The sandbox's files (under /workspace): list, read, write, remove, tar upload and download. */
  readonly files: SandboxFiles;

  constructor(
    private readonly supabase: SupabaseClient,
    /** As the API last returned it (refresh with getInfo()). */
    public info: SandboxView,
  ) {
    this.sandboxId = info.sandboxId;
    this.topic = info.topic;
    this.pty = ptyCalls(supabase, this.sandboxId);
    this.files = new SandboxFiles(supabase, info.sandboxId);
  }

  /** Terminals: `create({cols, rows, onData})` → a PtyHandle (sendInput, resize, kill, wait). */
  readonly pty: ReturnType<typeof ptyCalls>;

  readonly commands = {
    /** Runs a command and waits for its end; a failure throws CommandExitError unless `throwOnFailure: false`. */
    run: async (cmd: string | string[], opts: CommandOptions & { throwOnFailure?: boolean } = {}): Promise<CommandResult> => {
      const handle = await this.commands.start(cmd, opts, false);
      const result = await handle.result();
      const out: CommandResult = {
        taskId: result.taskId,
        exitCode: result.exitCode,
        stdout: result.stdout,
        stderr: result.stderr,
        error: result.status === "succeeded" ? null : (result.reason ?? result.status),
        result,
      };
      if (out.error !== null && opts.throwOnFailure !== false) throw new CommandExitError(out);
      return out;
    },
    /** Starts a command and returns its task handle at once (background by default: a dev server). */
    start: async (cmd: string | string[], opts: CommandOptions = {}, background = true): Promise<TaskHandle> => {
      const spec: CommandRequest = {
        ...(typeof cmd === "string" ? { command: cmd } : { argv: cmd }),
        cwd: opts.cwd,
        env: opts.envs,
        timeoutMs: opts.timeoutMs,
        stdin: opts.stdin,
        background,
        blockDetection: opts.blockDetection,
        recovery: opts.recovery,
      };
      const { taskId } = await call<{ taskId: string }>(this.supabase, "POST", `/sandboxes/${this.sandboxId}/commands`, spec);
      return await new TaskHandle(this.supabase, taskId, opts, opts.handle).start();
    },
  };

  /** A new idle timeout, counted from now (keeps the sandbox alive). */
  async setTimeout(idleTimeoutMs: number): Promise<SandboxView> {
    this.info = await call<SandboxView>(this.supabase, "PATCH", `/sandboxes/${this.sandboxId}`, { idleTimeoutMs });
    return this.info;
  }

  async getInfo(): Promise<SandboxView> {
    this.info = await call<SandboxView>(this.supabase, "GET", `/sandboxes/${this.sandboxId}`);
    return this.info;
  }

  /** Stops it: every process killed, the workspace removed, its slot freed. */
  async kill(): Promise<SandboxView> {
    this.info = await call<SandboxView>(this.supabase, "DELETE", `/sandboxes/${this.sandboxId}`);
    return this.info;
  }
}

export interface SandboxCalls {
  sandboxes: {
    /** Creates a sandbox; resolves once it is ready (or still `starting` after 10 s: see `info.status`). */
    create(opts?: CreateSandboxRequest): Promise<LiveSandbox>;
    /** A sandbox created earlier (by id). */
    connect(sandboxId: string): Promise<LiveSandbox>;
    list(): Promise<SandboxView[]>;
  };
}

export function sandboxCalls(supabase: SupabaseClient): SandboxCalls {
  return {
    sandboxes: {
      create: async (opts = {}) => new LiveSandbox(supabase, await call<SandboxView>(supabase, "POST", "/sandboxes", opts)),
      connect: async (id) => new LiveSandbox(supabase, await call<SandboxView>(supabase, "GET", `/sandboxes/${id}`)),
      list: async () => (await call<{ sandboxes: SandboxView[] }>(supabase, "GET", "/sandboxes")).sandboxes,
    },
  };
}
