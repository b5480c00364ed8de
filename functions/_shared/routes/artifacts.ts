// Artifacts a task named, collected by the worker after it exited: the list, and one file's bytes.
import { validateWorkspacePath } from "../paths.ts";
import { corsHeaders, HttpError, json } from "../http.ts";
import { asCaller, findTask, UUID, type Route } from "../routing.ts";
import { isFinal, type TaskStatus } from "../states.ts";
import { purgedNotice } from "../views.ts";

interface ArtifactRow {
  path: string;
  attempt: number;
  sizeBytes: string | null;
  sha256: string | null;
  error: string | null;
  createdAt: Date;
}

export const artifactRoutes: Route[] = [
  [
    "GET",
    new RegExp(`^/tasks/${UUID}/artifacts$`),
    async ({ sql, caller, params }) => {
      return await asCaller(sql, caller, async (tx) => {
        const task = await findTask(tx, params[0]!);
        const rows = await tx<ArtifactRow[]>`
        select path, attempt, size_bytes, sha256, error, created_at from public.task_artifacts
         where task_id = ${task.id} and attempt = ${task.attempt} order by path`;
        return json(200, {
          taskId: task.id,
          status: task.status,
          patterns: task.artifactPatterns,
          // Only the last attempt's: an earlier attempt's files are not this outcome's. The worker
          // stores them before it marks the task finished, so a final task's list is whole (a task
          // ended without its worker, e.g. by the lease rescuer, has none).
          complete: isFinal(task.status as TaskStatus),
          purged: purgedNotice(task),
          artifacts: rows.map((r) => ({
            path: r.path,
            attempt: r.attempt,
            sizeBytes: r.sizeBytes === null ? null : Number(r.sizeBytes),
            sha256: r.sha256,
            error: r.error,
            createdAt: r.createdAt.toISOString(),
          })),
        });
      });
    },
  ],
  [
    "GET",
    new RegExp(`^/tasks/${UUID}/artifacts/(.+)$`),
    async ({ sql, caller, params }) => {
      let path: string;
      try {
        path = validateWorkspacePath(decodeURIComponent(params[1]!));
      } catch (err) {
        throw new HttpError(400, "invalid_path", err instanceof URIError ? "path: not valid percent-encoding" : `path: ${(err as Error).message}`);
      }
      return await asCaller(sql, caller, async (tx) => {
        const task = await findTask(tx, params[0]!);
        const [row] = await tx<{ content: Uint8Array | null; error: string | null; sha256: string | null }[]>`
        select content, error, sha256 from public.task_artifacts where task_id = ${task.id} and attempt = ${task.attempt} and path = ${path}`;
        const purged = purgedNotice(task);
        if (!row && purged) throw new HttpError(410, "artifact_purged", purged.message, { purgedAt: purged.at });
        if (!row) throw new HttpError(404, "artifact_not_found", `task ${task.id} has no artifact ${JSON.stringify(path)}; GET /tasks/${task.id}/artifacts lists them`);
        if (row.content === null) throw new HttpError(409, "artifact_rejected", `artifact ${JSON.stringify(path)} was not collected: ${row.error}`, { path, problem: row.error });
        return new Response(new Uint8Array(row.content), {
          status: 200,
          headers: {
            ...corsHeaders,
            "content-type": "application/octet-stream",
            "content-disposition": `attachment; filename="${path
              .split("/")
              .pop()!
              .replace(/[^\w.-]/g, "_")}"`,
            "x-artifact-sha256": row.sha256 ?? "",
          },
        });
      });
    },
  ],
];
