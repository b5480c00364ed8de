// An analysis row as Postgres returns it (camelCased) and the JSON the API answers with.
import { analysisTopic } from "./schemas.ts";

export interface AnalysisRow {
  id: string;
  owner: string | null;
  repoId: string;
  source: string;
  ref: string;
  commitSha: string | null;
  include: string[];
  exclude: string[];
  options: Record<string, unknown>;
  phase: "queued" | "cloning" | "analyzing" | "finalizing" | "completed" | "failed";
  error: string | null;
  filesTotal: number | null;
  bytesTotal: string | null;
  filesSkipped: number | null;
  blobsToParse: number | null;
  blobsParsed: number;
  filesReused: number | null;
  filesDone?: number;
  batchesTotal: number | null;
  batchesDone: number;
  cloneTaskId: string | null;
  previousId: string | null;
  changes: Record<string, unknown> | null;
  createdAt: Date;
  startedAt: Date | null;
  finishedAt: Date | null;
  /** When retention deleted its files and imports (migration 20261206000300): its results are then empty. */
  purgedAt?: Date | null;
}

const iso = (d: Date | null) => (d ? d.toISOString() : null);

export function analysisView(a: AnalysisRow) {
  const percentage = a.phase === "completed" ? 100 : a.blobsToParse === null ? 0 : a.blobsToParse === 0 ? 100 : Math.round((1000 * a.blobsParsed) / a.blobsToParse) / 10;
  const elapsed = Date.now() - (a.startedAt ?? a.createdAt).getTime();
  const etaMs =
    a.phase === "completed" || a.phase === "failed"
      ? 0
      : a.blobsParsed > 0 && a.blobsToParse !== null
        ? Math.round((elapsed / a.blobsParsed) * Math.max(0, a.blobsToParse - a.blobsParsed))
        : null;
  return {
    analysisId: a.id,
    topic: analysisTopic(a.id),
    source: a.source,
    ref: a.ref,
    commit: a.commitSha,
    phase: a.phase,
    error: a.error,
    filesTotal: a.filesTotal,
    filesDone: a.filesDone ?? null,
    filesReused: a.filesReused,
    filesSkipped: a.filesSkipped,
    bytesTotal: a.bytesTotal === null ? null : Number(a.bytesTotal),
    blobsToParse: a.blobsToParse,
    blobsParsed: a.blobsParsed,
    batches: { total: a.batchesTotal, done: a.batchesDone },
    percentage,
    etaMs,
    changes: a.changes,
    previousAnalysisId: a.previousId,
    cloneTaskId: a.cloneTaskId,
    createdAt: iso(a.createdAt),
    startedAt: iso(a.startedAt),
    finishedAt: iso(a.finishedAt),
    /** Set once retention deleted this analysis's files and imports: results and search are empty from then on. */
    purgedAt: iso(a.purgedAt ?? null),
  };
}
export type AnalysisView = ReturnType<typeof analysisView>;
