// Caps of a workspace stored in Postgres; mirrored by cogo.workspace_limits() (a test compares them).
export const WORKSPACE_LIMITS = {
  /** Largest single file. */
  fileBytes: 8 * 1024 * 1024,
  /** All files of a workspace together. */
  totalBytes: 64 * 1024 * 1024,
  /** Number of files. */
  files: 5000,
} as const;

/** Priority of the runs a file change queues (cogo.rerun_priority(); higher runs first). */
export const RERUN_PRIORITY = 900;

/**
 * The priorities a user may give a task or plan step: below the system's own (re-runs at
 * RERUN_PRIORITY), so no user task jumps ahead of them. The table allows -1000…1000.
 */
export const USER_PRIORITY = { min: -1000, max: RERUN_PRIORITY - 1 } as const;

/** Worker kinds the product knows (always listed by /health); any other lower-case name works as a custom kind. */
export const WORKER_KINDS = ["basic", "flutter", "analysis"] as const;

/** Live workers per kind, the known kinds first (0 when none is live). */
export function workerKindCounts(live: { kind: string; n: number }[]): Record<string, number> {
  const counts: Record<string, number> = Object.fromEntries(WORKER_KINDS.map((k) => [k, 0]));
  for (const { kind, n } of live) counts[kind] = (counts[kind] ?? 0) + n;
  return counts;
}
