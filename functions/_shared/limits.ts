// The highest time limits any task may ask for: the API refuses more (a 400 naming the field),
// and a worker's default maximum is the same value, so nothing asked for is cut silently. A
// worker started with lower maxima says so in the task's output when it lowers a limit.

/** One wall-time setting: a task's `timeoutMs` (there is no `limits.wallTimeMs` in the API). */
export const MAX_WALL_TIME_MS = 3_600_000;
/** `limits.cpuTimeMs` at most this; like wall time. */
export const MAX_CPU_TIME_MS = 3_600_000;
/** A task's wall time when it gives none. */
export const DEFAULT_WALL_TIME_MS = 600_000;
