// After a task exits: collect the artifacts it named and store them under its attempt.
import type { Lease } from "./db.ts";
import type { Queue } from "./queue.ts";
import { collectArtifacts } from "./sandbox/index.ts";

/** Never throws for what the task left behind; a lost lease still surfaces (the caller stops). */
export async function storeArtifacts(queue: Queue, lease: Lease, workspace: string, patterns: string[], log: (l: string) => void): Promise<void> {
  let artifacts;
  try {
    artifacts = await collectArtifacts(workspace, patterns);
  } catch (err) {
    log(`task ${lease.taskId}: collecting artifacts: ${err instanceof Error ? err.message : err}`);
    artifacts = [{ path: ".cogo-artifacts-failed", error: `artifacts could not be collected: ${err instanceof Error ? err.message : err}` }];
  }
  for (const a of artifacts) await queue.storeArtifact(lease, a.path, a.content ?? null, a.error ?? null);
}
