import type { Readable, Writable } from 'node:stream';
import type { TaskCgroup } from './cgroups.ts';
import type { ExitEvidence } from './exit-reason.ts';
import type { SandboxLimits } from './options.ts';

export interface SandboxFile {
  /** Relative to /workspace; checked by validateWorkspacePath. */
  path: string;
  content: string;
  /** @default 'utf8' */
  encoding?: 'utf8' | 'base64';
  /** Permission bits only (& 0o777). @default 0o644 */
  mode?: number;
}

export interface SandboxSpec {
  /** A string runs as `/bin/sh -c <string>`; an argv is exec'd directly (PATH lookup inside). */
  command: string | string[];
  /** Written into the fresh workspace before the command starts, owned by the sandbox user. */
  files?: SandboxFile[];
  /** Added to (and may override) the safe base env; the worker's env never reaches the sandbox. */
  env?: Record<string, string>;
  /** Clamped to the worker's maxima. */
  limits?: Partial<SandboxLimits>;
  /** Only honoured if the worker allows it (SandboxOptions.allowNetwork); otherwise no network. */
  network?: boolean;
  /**
   * Host directories bound read-only at `target` (an absolute path under /mnt). Chosen by the
   * worker, never by a task: e.g. a local repository an analysis clones from. @default []
   */
  readOnlyBinds?: { source: string; target: string }[];
  /** 'pipe' gives the caller a writable stdin; 'closed' connects /dev/null. @default 'closed' */
  stdin?: 'pipe' | 'closed';
  /**
   * Past `limits.outputBytes`: 'stop' kills the tree (reason 'output_limit'); 'truncate' drops
   * the rest of the output and lets the task run to its end. @default 'stop'
   */
  onOutputLimit?: 'stop' | 'truncate';
}

export type SandboxExitReason = 'exited' | 'cancelled' | 'timeout' | 'cpu_limit' | 'memory_limit' | 'output_limit' | 'killed';

export interface SandboxUsage {
  wallMs: number;
  cpuUserMs: number;
  cpuSystemMs: number;
  /** With a memory cgroup: peak memory charged to the task (all processes + tmpfs it wrote). Else sampled peak RSS sum. */
  maxRssBytes: number;
}

export interface SandboxExit {
  /**
   * bwrap reports a command killed by signal n as status 128+n; such statuses are reported as
   * `signal` with `exitCode: null` (so a program calling exit(137) reads as SIGKILL).
   */
  exitCode: number | null;
  signal: string | null;
  reason: SandboxExitReason;
  usage: SandboxUsage;
  /** Output past `outputBytes` was dropped (either policy). */
  outputTruncated: boolean;
  /** What the end left to name a limit by (workspace use, a file at the size limit, stderr's errno text); see exit-reason.ts. */
  evidence?: ExitEvidence;
}

export interface SandboxProcess {
  /** Host pid of the outermost launcher process (same pid as the outer bwrap). */
  readonly pid: number;
  /** Host path of the workspace (bound at /workspace); readable after exit until cleanup(). */
  readonly workspace: string;
  /** The limits in force (the request clamped to the worker's maxima). */
  readonly limits: Readonly<SandboxLimits>;
  /** The task's cgroups (host directories and counters, read by the block monitor), or null without cgroups. */
  readonly cgroup: TaskCgroup | null;
  /** Read eagerly from the sandbox: a slow reader never stalls the task (buffer is capped by outputBytes). */
  stdout: Readable;
  stderr: Readable;
  stdin: Writable | null;
  /** Resolves when output is first dropped at `outputBytes`; never resolves if it is not. */
  readonly outputTruncated: Promise<void>;
  /**
   * A command run with a terminal (persistent sandboxes' `pty`): its new size. Rejects with
   * TerminalUnavailable if the process has no terminal or has ended.
   */
  resize(cols: number, rows: number): Promise<void>;
  /** Kills the whole tree; the first reason given wins. No-op after exit. */
  kill(reason: SandboxExitReason): void;
  /** Resolves once every process of the task is gone and stdout/stderr have ended. Never rejects. */
  exited: Promise<SandboxExit>;
  /** Removes the workspace; call after exit (it waits for exit itself). */
  cleanup(): Promise<void>;
}
