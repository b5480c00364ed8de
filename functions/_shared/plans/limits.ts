// Caps of a workspace stored in Postgres; mirrored by cogo.workspace_limits() (a test compares them).
export const WORKSPACE_LIMITS = {
  /** Largest single file. */
  fileBytes: 8 * 1024 * 1024,
  /** All files of a workspace together. */
  totalBytes: 64 * 1024 * 1024,
  /** Number of files. */
  files: 5000,
} as const;

/** Priority of the runs a file change queues (tasks go -1000…1000, higher first). */
export const RERUN_PRIORITY = 900;

/** Worker kinds the product knows; any other lower-case name works as a custom kind. */
export const WORKER_KINDS = ["basic", "flutter", "analysis"] as const;
