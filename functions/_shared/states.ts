// The one list of task states (docs/state-machine.md says who moves a task out of each).
// Mirrors the SQL enum public.task_status; tests/schema.test.ts keeps the two equal.
export const TASK_STATES = ["queued", "claimed", "running", "blocked", "recovering", "succeeded", "failed", "cancelled", "timed_out"] as const;
export type TaskStatus = (typeof TASK_STATES)[number];

/** A task in one of these belongs to a worker holding its lease. */
export const ACTIVE_STATES = ["claimed", "running", "blocked", "recovering"] as const satisfies readonly TaskStatus[];
/** A task in one of these never changes again. */
export const FINAL_STATES = ["succeeded", "failed", "cancelled", "timed_out"] as const satisfies readonly TaskStatus[];
export type FinalStatus = (typeof FINAL_STATES)[number];

export function isFinal(status: TaskStatus): status is FinalStatus {
  return (FINAL_STATES as readonly TaskStatus[]).includes(status);
}

/** A persistent sandbox's states (the SQL enum public.sandbox_status; tests/sandboxes keep them equal). */
export const SANDBOX_STATES = ["starting", "ready", "stopped", "lost"] as const;
export type SandboxStatus = (typeof SANDBOX_STATES)[number];

export const OUTPUT_STREAMS = ["stdout", "stderr", "system"] as const;
export type OutputStream = (typeof OUTPUT_STREAMS)[number];
