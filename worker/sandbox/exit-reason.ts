// How a sandboxed command ended, as the task's status and one stable sentence. Pure: the facts
// (the exit, the limits in force, what the workspace tmpfs held at the end, what stderr said last)
// are gathered by the Sandbox (run.ts); this module only decides. A limit that ended the task is
// named with its value and its field, whatever the program printed or how it died: a writer past
// RLIMIT_FSIZE dies by SIGXFSZ or catches EFBIG and exits 1, a full workspace makes it exit on
// ENOSPC, and files in the workspace tmpfs are memory, so a full disk can end as an OOM kill.
import type { FinalStatus } from '../../functions/_shared/states.ts';
import { formatBytes } from '../../functions/_shared/quotas/usage.ts';
import type { SandboxLimits } from './options.ts';
import type { SandboxExit } from './types.ts';

/**
 * A workspace with less than this free counts as full: tmpfs hands out pages, so a writer that
 * met ENOSPC leaves under a page or two; a task that merely used most of its disk leaves more.
 */
export const DISK_FULL_SLACK_BYTES = 64 * 1024;

/** The memory reason names the workspace's share once its files hold at least this part of the limit. */
export const WORKSPACE_SHARE_NAMED = 0.25;

/** What the end of a sandboxed command left to look at (SandboxExit.evidence). */
export interface ExitEvidence {
  /** Bytes the workspace tmpfs held when the command ended; null when it is not a tmpfs (no root). */
  workspaceUsedBytes: number | null;
  /** Bytes of the workspace tmpfs free then; null when it is not a tmpfs. */
  workspaceFreeBytes: number | null;
  /**
   * A file in the workspace is exactly `fileSizeBytes` long. The kernel cuts a write that crosses
   * RLIMIT_FSIZE at the limit (and fails the next with EFBIG), so this is what a writer stopped by
   * the limit leaves behind, whether it died by SIGXFSZ or caught EFBIG and printed anything.
   */
  fileAtSizeLimit: boolean;
  /** The last stderr says EFBIG ("File too large"): the fallback for a file outside the workspace (/tmp) or removed. */
  stderrFileTooLarge: boolean;
  /** The last stderr says ENOSPC ("No space left on device"): /tmp or /dev/shm (same size as the workspace) filled, or a writer removed its file. */
  stderrNoSpace: boolean;
}

export const NO_EVIDENCE: ExitEvidence = Object.freeze({
  workspaceUsedBytes: null,
  workspaceFreeBytes: null,
  fileAtSizeLimit: false,
  stderrFileTooLarge: false,
  stderrNoSpace: false,
});

/** strerror(EFBIG) as glibc, musl, Python and Node print it, or the errno name. */
export const FILE_TOO_LARGE = /file too large|\bEFBIG\b/i;
/** strerror(ENOSPC), or the errno name. */
export const NO_SPACE = /no space left on device|\bENOSPC\b/i;

export interface ExitFacts {
  exit: Pick<SandboxExit, 'reason' | 'exitCode' | 'signal' | 'outputTruncated'> & { evidence?: ExitEvidence };
  limits: Pick<SandboxLimits, 'memoryBytes' | 'fileSizeBytes' | 'workspaceBytes'>;
  /** The task's wall-time limit as the API knows it (`timeoutMs`). */
  timeoutMs: number;
}

/** The final status and the reason sentence of an ended command. */
export function describeExit({ exit, limits, timeoutMs }: ExitFacts): { status: FinalStatus; reason: string } {
  const ev = exit.evidence ?? NO_EVIDENCE;
  switch (exit.reason) {
    case 'cancelled':
      return { status: 'cancelled', reason: 'cancelled while running' };
    case 'timeout':
      return { status: 'timed_out', reason: `wall time limit of ${timeoutMs} ms reached` };
    case 'cpu_limit':
      return { status: 'failed', reason: 'CPU time limit reached' };
    case 'memory_limit':
      return { status: 'failed', reason: memoryReason(limits.memoryBytes, ev.workspaceUsedBytes) };
    case 'output_limit':
      return { status: 'failed', reason: 'output byte limit reached; output after it was dropped' };
    case 'killed':
      return { status: 'failed', reason: 'killed by the worker' };
    case 'exited': {
      // Under onOutputLimit "truncate" the task ran on past the limit: its exit decides.
      const cut = exit.outputTruncated ? '; output past the byte limit was dropped' : '';
      if (exit.exitCode === 0) return { status: 'succeeded', reason: `exited with code 0${cut}` };
      const ended = exit.signal ? `killed by ${exit.signal}` : `exited with code ${exit.exitCode}`;
      const limit = limitHit(exit.signal, ev, limits);
      return { status: 'failed', reason: `${limit ? `${limit}; ` : ''}${ended}${cut}` };
    }
  }
}

/**
 * The limit a failed exit ran into, or null. SIGXFSZ is the kernel's own word; a file left at the
 * exact limit is as good; then a full workspace (its free space, not the program's words); the
 * errno texts on stderr last, for /tmp and /dev/shm, which end with the sandbox.
 */
function limitHit(signal: string | null, ev: ExitEvidence, limits: ExitFacts['limits']): string | null {
  const fileSize = `file size limit reached (${formatBytes(limits.fileSizeBytes)}): a file hit limits.fileSizeBytes`;
  const disk = `disk limit reached (${formatBytes(limits.workspaceBytes)}): the workspace is full (limits.workspaceBytes)`;
  if (signal === 'SIGXFSZ' || ev.fileAtSizeLimit) return fileSize;
  if (ev.workspaceFreeBytes !== null && ev.workspaceFreeBytes < DISK_FULL_SLACK_BYTES) return disk;
  if (ev.stderrFileTooLarge) return fileSize;
  if (ev.stderrNoSpace) return `disk limit reached (${formatBytes(limits.workspaceBytes)}): /workspace, /tmp or /dev/shm is full (limits.workspaceBytes)`;
  return null;
}

/** "memory limit reached (256 MiB)", naming the workspace's share when its files hold a large part of it. */
export function memoryReason(memoryBytes: number, workspaceUsedBytes: number | null): string {
  const base = `memory limit reached (${formatBytes(memoryBytes)})`;
  if (workspaceUsedBytes === null || workspaceUsedBytes < WORKSPACE_SHARE_NAMED * memoryBytes) return base;
  return `${base}; workspace files hold ${formatBytes(workspaceUsedBytes)} of it`;
}
