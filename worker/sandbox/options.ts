import type { CgroupMode } from './cgroups.ts';
import { InvalidSandboxSpec } from './errors.ts';
import {
  DEFAULT_MEMORY_BYTES,
  DEFAULT_WALL_TIME_MS,
  MAX_CPU_TIME_MS,
  MAX_FILE_SIZE_BYTES,
  MAX_MEMORY_BYTES,
  MAX_OPEN_FILES,
  MAX_OUTPUT_BYTES,
  MAX_PROCESSES,
  MAX_WALL_TIME_MS,
  MAX_WORKSPACE_BYTES,
} from '../../functions/_shared/limits.ts';

const MiB = 1024 * 1024;
const GiB = 1024 * MiB;

/** Hard limits of one task. All are integers > 0. */
export interface SandboxLimits {
  /** Wall-clock time from start; past it the tree is killed with reason 'timeout'. */
  wallTimeMs: number;
  /** CPU time of the whole task (user + system, all processes); reason 'cpu_limit'. */
  cpuTimeMs: number;
  /** RAM of the whole task, including files it writes to /workspace, /tmp and /dev/shm (tmpfs is RAM). */
  memoryBytes: number;
  /** Processes + threads alive at once, not counting bwrap's two helper processes. */
  processes: number;
  /** Open file descriptors per process (RLIMIT_NOFILE). */
  openFiles: number;
  /** Largest file a process may write (RLIMIT_FSIZE; the writer gets SIGXFSZ/EFBIG). */
  fileSizeBytes: number;
  /** Size of /workspace; /tmp and /dev/shm are each capped at the same size. */
  workspaceBytes: number;
  /** stdout + stderr bytes forwarded; past it output is cut and (unless SandboxSpec.onOutputLimit is 'truncate') the tree killed with 'output_limit'. */
  outputBytes: number;
}

/** Worker-level settings of startSandbox; every default lives in SANDBOX_DEFAULTS. */
export interface SandboxOptions {
  /** Directory holding workspaces (created 0711 if missing; must not be group/world writable). */
  root: string;
  /**
   * First host uid of the slot range (slot i runs as uid + i). Only used when the worker is root;
   * otherwise the sandbox runs as the worker's own uid.
   * @default 200000
   */
  uid?: number;
  /** First host gid of the slot range. @default the uid base */
  gid?: number;
  /** Number of uid slots, i.e. sandboxes that may run at once on this machine (all its workers). @default 1024 */
  slots?: number;
  /** How long a start waits for a free slot before failing with SandboxBusy. @default 30_000 */
  slotWaitMs?: number;
  /** Directory of slot lock files shared by all workers of the machine. @default '/run/cogo-sandbox/slots' */
  slotDir?: string;
  /**
   * Highest limits a task may ask for; a task asking more gets these (the worker notes it in the
   * task's output). A worker sets memoryBytes to its memory budget. @default SANDBOX_DEFAULTS.maxLimits
   */
  maxLimits?: Partial<SandboxLimits>;
  /** Whether a task's `network: true` is honoured. @default false */
  allowNetwork?: boolean;
  /** Hostname inside the sandbox. @default 'sandbox' */
  hostname?: string;
  /**
   * Cgroups for limits and accounting where the machine lets us create them: `true`/'auto' uses
   * v1 controllers when mounted (hybrid machines) and v2 otherwise; 'v1'/'v2' insist on one;
   * false forces the rlimit fallback. @default true
   */
  cgroups?: CgroupMode;
  /** How often CPU time (and, without cgroups, memory) is sampled. @default 100 */
  pollIntervalMs?: number;
  /**
   * Root worker only: emptied workspace tmpfs mounts kept per root for the next task (each saves
   * a `mount` and an `umount` process). Pooled mounts outlive cleanup(); `drainWorkspacePool(root)`
   * unmounts them, and a crashed worker's are reaped like its workspaces. 0 mounts and unmounts
   * one tmpfs per task. @default 0
   */
  workspacePool?: number;
}

/** Limits a task gets for every field it does not set. */
export const DEFAULT_LIMITS: Readonly<SandboxLimits> = Object.freeze({
  /** @default 600_000 (10 min) */
  wallTimeMs: DEFAULT_WALL_TIME_MS,
  /** @default 600_000 (10 min) */
  cpuTimeMs: 600_000,
  /** @default 1 GiB (DEFAULT_MEMORY_BYTES: what host admission counts for a task that gives none) */
  memoryBytes: DEFAULT_MEMORY_BYTES,
  /** @default 256 */
  processes: 256,
  /** @default 1024 */
  openFiles: 1024,
  /**
   * @default 1 GiB, and never below the task's workspaceBytes when the task gives no fileSizeBytes
   * (resolveLimits): any file that fits the disk may be written, so an ordinary big write ends at
   * the disk limit, not at a smaller file limit.
   */
  fileSizeBytes: 1 * GiB,
  /** @default 1 GiB */
  workspaceBytes: 1 * GiB,
  /** @default 16 MiB */
  outputBytes: 16 * MiB,
});

export const SANDBOX_DEFAULTS = Object.freeze({
  limits: DEFAULT_LIMITS,
  // The API's maxima (functions/_shared/limits.ts), so a task the API accepted is never cut; a
  // worker replaces memoryBytes with its memory budget.
  maxLimits: Object.freeze<SandboxLimits>({
    wallTimeMs: MAX_WALL_TIME_MS,
    cpuTimeMs: MAX_CPU_TIME_MS,
    memoryBytes: MAX_MEMORY_BYTES,
    processes: MAX_PROCESSES,
    openFiles: MAX_OPEN_FILES,
    fileSizeBytes: MAX_FILE_SIZE_BYTES,
    workspaceBytes: MAX_WORKSPACE_BYTES,
    outputBytes: MAX_OUTPUT_BYTES,
  }),
  /**
   * Below these bwrap itself cannot start, so requests are raised to them (it writes the
   * generated /etc files, a few hundred bytes, under the task's RLIMIT_FSIZE).
   */
  floors: Object.freeze<Partial<SandboxLimits>>({ openFiles: 32, memoryBytes: 16 * MiB, workspaceBytes: MiB, fileSizeBytes: 4096 }),
  uid: 200_000,
  slots: 1024,
  slotWaitMs: 30_000,
  slotDir: '/run/cogo-sandbox/slots',
  allowNetwork: false,
  hostname: 'sandbox',
  cgroups: true,
  pollIntervalMs: 100,
  workspacePool: 0,
});

/** bwrap's monitor process and the PID-namespace init count against the process limits too. */
export const HELPER_PROCESSES = 2;

const LIMIT_KEYS = Object.keys(DEFAULT_LIMITS) as (keyof SandboxLimits)[];

/** Task request + defaults, clamped into [floor, worker maximum]. */
export function resolveLimits(requested: Partial<SandboxLimits> | undefined, maxLimits?: Partial<SandboxLimits>): SandboxLimits {
  const out = {} as SandboxLimits;
  for (const key of LIMIT_KEYS) {
    const max = checked(`maxLimits.${key}`, maxLimits?.[key]) ?? SANDBOX_DEFAULTS.maxLimits[key];
    const want = checked(`limits.${key}`, requested?.[key]) ?? DEFAULT_LIMITS[key];
    out[key] = Math.max(Math.min(want, max), SANDBOX_DEFAULTS.floors[key] ?? 1);
  }
  // The default file size follows the disk (up to the file-size maximum): a task asking for a big
  // workspace may write a file that fills it.
  if (requested?.fileSizeBytes === undefined) {
    const max = maxLimits?.fileSizeBytes ?? SANDBOX_DEFAULTS.maxLimits.fileSizeBytes;
    out.fileSizeBytes = Math.max(out.fileSizeBytes, Math.min(out.workspaceBytes, max));
  }
  return out;
}

function checked(field: string, value: unknown): number | undefined {
  if (value === undefined) return undefined;
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value <= 0) {
    throw new InvalidSandboxSpec(field, 'must be a positive integer');
  }
  return value;
}
