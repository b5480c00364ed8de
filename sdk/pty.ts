// Terminals in a persistent sandbox, shaped as E2B's `sandbox.pty` (commands/pty.ts there):
//   const term = await sbx.pty.create({ cols: 80, rows: 24, onData: (d) => process.stdout.write(d) });
//   await term.sendInput("ls -la\r");
//   await term.resize({ cols: 120, rows: 40 });
//   const { exitCode } = await term.wait();
// A terminal is a task (`taskId`): its bytes are the task's stdout, keystrokes its stdin, and
// `sandbox.attach(taskId)` replays and follows it after a disconnect.
import type { SupabaseClient } from "@supabase/supabase-js";
import type { PtyRequest } from "../functions/_shared/schemas.ts";
import type { TaskView } from "../functions/_shared/views.ts";
import { call } from "./api.ts";
import { TaskHandle, type HandleOptions, type TaskCallbacks, type TaskResult } from "./handle.ts";

export interface PtySize {
  /** Characters per line, 1 to 1000. */
  cols: number;
  /** Lines, 1 to 1000. */
  rows: number;
}

export interface PtyCreateOptions extends PtySize {
  /** The terminal's bytes as they come (E2B's `onData`), in order, once. */
  onData?: (data: Uint8Array) => void;
  /** What runs on the terminal (by /bin/sh -c). @default bash -i (sh -i where bash is missing) */
  command?: string;
  /** Absolute, inside the sandbox. @default "/workspace" */
  cwd?: string;
  /** Over the sandbox's env. `TERM` is xterm-256color unless given here. */
  envs?: Record<string, string>;
  /** The terminal is closed after this long. @default 3600000 (the most a sandbox lives) */
  timeoutMs?: number;
  /** Other task callbacks (events, system lines). */
  callbacks?: Omit<TaskCallbacks, "onStdout">;
  handle?: HandleOptions;
}

/** How a terminal ended. */
export interface PtyResult {
  taskId: string;
  exitCode: number | null;
  /** Why it did not succeed (null when it exited 0). */
  error: string | null;
  result: TaskResult;
}

/** One terminal: input, size, kill, end. */
export class PtyHandle {
  private queued = "";
  private sending: Promise<void> = Promise.resolve();

  constructor(
    private readonly supabase: SupabaseClient,
    /** The terminal's task (output, events, status). */
    readonly task: TaskHandle,
  ) {}

  get taskId(): string {
    return this.task.taskId;
  }

  /**
   * Types `data` into the terminal ("\r" is Enter, "\x03" Ctrl-C). Input sent while an earlier
   * send is on its way goes in one request after it, so keystrokes arrive in the order typed.
   */
  sendInput(data: string | Uint8Array): Promise<void> {
    this.queued += typeof data === "string" ? data : new TextDecoder().decode(data);
    this.sending = this.sending.then(async () => {
      const batch = this.queued;
      this.queued = "";
      if (batch) await this.task.write(batch);
    });
    return this.sending;
  }

  /** The terminal's new size; the program on it gets SIGWINCH. */
  async resize(size: PtySize): Promise<void> {
    await resizePty(this.supabase, this.taskId, size);
  }

  /** Kills every process of the terminal. Resolves false if it had already ended. */
  async kill(): Promise<boolean> {
    const task = await this.task.cancel();
    return task.cancelRequested || task.status === "cancelled";
  }

  /** Resolves once the terminal's program has exited and all its output was delivered. Never throws for an exit code. */
  async wait(): Promise<PtyResult> {
    const result = await this.task.result();
    await this.task.close();
    return {
      taskId: result.taskId,
      exitCode: result.exitCode,
      error: result.status === "succeeded" ? null : (result.reason ?? result.status),
      result,
    };
  }

  /** Stops receiving output; the terminal goes on (reattach with `sandbox.attach(taskId)`). */
  async disconnect(): Promise<void> {
    await this.task.close();
  }
}

export async function resizePty(supabase: SupabaseClient, taskId: string, size: PtySize): Promise<TaskView> {
  return await call<TaskView>(supabase, "POST", `/tasks/${taskId}/resize`, { cols: size.cols, rows: size.rows });
}

/** `sbx.pty`: terminals in the sandbox `sandboxId`. */
export function ptyCalls(supabase: SupabaseClient, sandboxId: string) {
  return {
    /** Opens a terminal (a command on a pty of the sandbox's own devpts) and follows its output. */
    create: async (opts: PtyCreateOptions): Promise<PtyHandle> => {
      const spec: PtyRequest = { cols: opts.cols, rows: opts.rows, command: opts.command, cwd: opts.cwd, env: opts.envs, timeoutMs: opts.timeoutMs };
      const { taskId } = await call<{ taskId: string }>(supabase, "POST", `/sandboxes/${sandboxId}/pty`, spec);
      const encoder = new TextEncoder();
      const onData = opts.onData;
      const task = new TaskHandle(
        supabase,
        taskId,
        { ...opts.callbacks, ...(onData ? { onStdout: (d: string) => onData(encoder.encode(d)) } : {}) },
        { collectOutput: false, ...opts.handle },
      );
      return new PtyHandle(supabase, await task.start());
    },
    /** Types into a terminal by its task id (E2B's `pty.sendInput(pid, data)`). */
    sendInput: async (taskId: string, data: string | Uint8Array): Promise<void> => {
      await call(supabase, "POST", `/tasks/${taskId}/stdin`, { data: typeof data === "string" ? data : new TextDecoder().decode(data) });
    },
    resize: (taskId: string, size: PtySize): Promise<TaskView> => resizePty(supabase, taskId, size),
    kill: async (taskId: string): Promise<TaskView> => await call<TaskView>(supabase, "DELETE", `/tasks/${taskId}`),
  };
}
