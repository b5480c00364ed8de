// Files of a live sandbox (docs/design/persistent-sandboxes.md §3.6): what the API, the worker and
// the SDK share. An op travels as a row of cogo.sandbox_ops (migrations/20261207000200_sandbox_files.sql)
// and runs inside the sandbox as worker/sandbox/fileop.py; its outcome is one of these.

/** Bytes of one PUT or GET (a file, or a tar archive), as cogo.max_sandbox_op_bytes(). */
export const MAX_SANDBOX_FILE_BYTES = 32 * 1024 * 1024;

export const SANDBOX_FILE_OPS = ["list", "read", "write", "remove", "tar_get", "tar_put"] as const;
export type SandboxFileOp = (typeof SANDBOX_FILE_OPS)[number];

/** One entry of a directory listing: E2B's EntryInfo field names; `path` is relative to /workspace. */
export interface EntryInfo {
  name: string;
  path: string;
  type: "file" | "dir" | "symlink" | "other";
  size: number;
  /** Permission bits (e.g. 0o644 = 420). */
  mode: number;
  /** As `ls -l` shows them: "-rw-r--r--". */
  permissions: string;
  /** ISO 8601, UTC. */
  modifiedTime: string;
  /** Where a symlink points (never followed by the API). */
  symlinkTarget?: string;
}

/** What an op ended with when it failed: a stable code and a message naming the path. */
export interface SandboxOpError {
  code: string;
  message: string;
}

/** The HTTP status of each op error code (fileop.py's codes, plus the worker's own). */
export const SANDBOX_OP_HTTP: Record<string, number> = {
  invalid_path: 400,
  symlink: 400,
  not_a_directory: 400,
  not_regular: 400,
  invalid_op: 400,
  not_found: 404,
  is_directory: 409,
  not_empty: 409,
  permission_denied: 403,
  too_large: 413,
  disk_full: 507,
  sandbox_ended: 409,
  tar_failed: 422,
};

/** The API's error code for an op error code: `disk_full` is `sandbox_disk_full`, the others as they are. */
export const sandboxOpErrorCode = (code: string): string => (code === "disk_full" ? "sandbox_disk_full" : code);
