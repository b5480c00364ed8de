// The highest limits any task may ask for: the API refuses more (a 400 naming the field), and a
// worker's default maximum is the same value, so nothing asked for is cut silently. A worker
// started with lower maxima says so in the task's output when it lowers a limit.
//
// Memory is the exception to "one static maximum": a worker gives a task at most its memory
// budget (worker/budget.ts), so the API refuses more than the largest budget among the live
// workers of the task's kind, and MAX_MEMORY_BYTES only when none is live (functions/_shared/admission.ts).

const MiB = 1024 * 1024;
const GiB = 1024 * MiB;

/** One wall-time setting: a task's `timeoutMs` (there is no `limits.wallTimeMs` in the API). */
export const MAX_WALL_TIME_MS = 3_600_000;
/** `limits.cpuTimeMs` at most this; like wall time. */
export const MAX_CPU_TIME_MS = 3_600_000;
/** A task's wall time when it gives none. */
export const DEFAULT_WALL_TIME_MS = 600_000;

/** `limits.memoryBytes` when a task gives none; what the claim's host admission counts for it too (cogo.task_memory_bytes). */
export const DEFAULT_MEMORY_BYTES = 1 * GiB;
/**
 * `limits.memoryBytes` at most this while no worker of the task's kind is live (then the largest
 * live worker's budget decides), and a sandbox's maximum when started without a budget (tests,
 * benches). What workers gave before they had budgets, so a task queued for an absent kind asks
 * nothing an ordinary host cannot give.
 */
export const MAX_MEMORY_BYTES = 8 * GiB;
/** `limits.processes` at most this (threads count too). */
export const MAX_PROCESSES = 4096;
/** `limits.openFiles` at most this (RLIMIT_NOFILE). */
export const MAX_OPEN_FILES = 65_536;
/** `limits.fileSizeBytes` at most this (RLIMIT_FSIZE). */
export const MAX_FILE_SIZE_BYTES = 4 * GiB;
/** `limits.workspaceBytes` at most this (the tmpfs size; files written count against memory too). */
export const MAX_WORKSPACE_BYTES = 8 * GiB;
/** `limits.outputBytes` at most this (stdout + stderr kept, stored in task_output). */
export const MAX_OUTPUT_BYTES = 256 * MiB;
