// What GET /tasks/:id/artifacts returns (the SDK's types).
export interface ArtifactView {
  path: string;
  attempt: number;
  /** null when the file was refused. */
  sizeBytes: number | null;
  sha256: string | null;
  /** Why the file was not collected (a symlink, not a regular file, too large, ...), else null. */
  error: string | null;
  createdAt: string;
}

export interface ArtifactList {
  taskId: string;
  status: string;
  patterns: string[];
  /** The task is final, so no more artifacts will appear. */
  complete: boolean;
  artifacts: ArtifactView[];
}
