// A plan's steps share one workspace, stored in Postgres (workspace_files): restored into the
// sandbox before a step, and what the step changed saved back after it succeeds, so the next
// step sees it on whichever worker claims it (docs/plans.md). Both calls are fenced by the lease.
import { lstat, opendir } from "node:fs/promises";
import { join } from "node:path";
import type { Sql } from "postgres";
import { WORKSPACE_LIMITS } from "../functions/_shared/plans/limits.ts";
import { fenced, hasSqlState, type Lease } from "./db.ts";
import { collectFile, validateWorkspacePath, type SandboxFile } from "./sandbox/index.ts";

/** What a step started from: path → version and bytes, to tell its changes apart. */
export interface RestoredWorkspace {
  files: SandboxFile[];
  base: Map<string, { version: number; content: Buffer; executable: boolean }>;
  bytes: number;
}

export interface SaveOutcome {
  saved: string[];
  deleted: string[];
  /** Paths that could not be saved and why (symlinks, special files, files over the size cap). */
  skipped: { path: string; why: string }[];
  /** Set when nothing could be saved (the workspace would exceed its caps). */
  error?: string;
}

export async function restorePlanWorkspace(sql: Sql, lease: Lease): Promise<RestoredWorkspace> {
  const rows = await fenced(
    () => sql<{ path: string; content: Buffer; executable: boolean; version: string }[]>`
    select * from cogo.task_workspace_files(${lease.taskId}, ${lease.attempt}, ${lease.workerId})`,
  );
  const base = new Map(rows.map((r) => [r.path, { version: Number(r.version), content: r.content, executable: r.executable }]));
  return {
    files: rows.map((r) => ({ path: r.path, content: r.content.toString("base64"), encoding: "base64", mode: r.executable ? 0o755 : 0o644 })),
    base,
    bytes: rows.reduce((n, r) => n + r.content.length, 0),
  };
}

/** Entries of any kind a save looks at before giving up (a task may leave millions behind). */
const MAX_WALK_ENTRIES = 4 * WORKSPACE_LIMITS.files;

interface Walked {
  files: string[];
  other: { path: string; why: string }[];
  /** Why the walk stopped early: the workspace is over a cap and is not saved. */
  over?: string;
}

/**
 * Regular files under `dir` (relative paths); symlinks and special files are reported, never
 * followed. Directories are read a few entries at a time (opendir), never listed whole, and the
 * walk stops at the caps: a task that left 600,000 files costs the worker no more than the caps.
 */
export async function walkWorkspace(dir: string): Promise<Walked> {
  const out: Walked = { files: [], other: [] };
  let seen = 0;
  const visit = async (rel: string): Promise<void> => {
    for await (const e of await opendir(join(dir, rel), { bufferSize: 64 })) {
      if (++seen > MAX_WALK_ENTRIES) {
        out.over = `the workspace holds more than ${MAX_WALK_ENTRIES} entries`;
        return; // leaving the loop closes the directory
      }
      const path = rel ? `${rel}/${e.name}` : e.name;
      try {
        validateWorkspacePath(path); // a name the API would refuse would also fail the next restore
      } catch (err) {
        if (out.other.length < WORKSPACE_LIMITS.files) out.other.push({ path: JSON.stringify(path).slice(1, -1), why: (err as Error).message });
        continue;
      }
      if (e.isDirectory()) await visit(path);
      else if (e.isFile()) out.files.push(path);
      else if (out.other.length < WORKSPACE_LIMITS.files) out.other.push({ path, why: e.isSymbolicLink() ? "symlinks are not saved" : "not a regular file" });
      if (out.files.length > WORKSPACE_LIMITS.files) out.over = `the workspace holds more than ${WORKSPACE_LIMITS.files} files`;
      if (out.over) return;
    }
  };
  await visit("");
  return out;
}

/** Saves the step's changes (new, modified, deleted files) where nobody changed them meanwhile. */
export async function savePlanWorkspace(sql: Sql, lease: Lease, dir: string, restored: RestoredWorkspace): Promise<SaveOutcome> {
  const found = await walkWorkspace(dir);
  const skipped = [...found.other];
  if (found.over) return { saved: [], deleted: [], skipped, error: found.over };
  const changed: { path: string; content: string; executable: boolean }[] = [];
  const present = new Set<string>();
  for (const path of found.files) {
    present.add(path);
    let content: Buffer;
    try {
      content = await collectFile(dir, path, WORKSPACE_LIMITS.fileBytes);
    } catch (err) {
      skipped.push({ path, why: (err as Error).message });
      continue;
    }
    const executable = ((await lstat(join(dir, path))).mode & 0o100) !== 0;
    const before = restored.base.get(path);
    if (before && before.executable === executable && before.content.equals(content)) continue;
    changed.push({ path, content: content.toString("base64"), executable });
  }
  const deleted = [...restored.base.keys()].filter((p) => !present.has(p) && !skipped.some((s) => s.path === p));
  if (changed.length === 0 && deleted.length === 0) return { saved: [], deleted: [], skipped };
  const base = Object.fromEntries([...changed.map((c) => c.path), ...deleted].map((p) => [p, restored.base.get(p)?.version ?? 0]));
  try {
    const [row] = await fenced(
      () => sql<{ written: string[] }[]>`
      select cogo.save_task_files(${lease.taskId}, ${lease.attempt}, ${lease.workerId}, ${sql.json(changed as never)}, ${deleted},
                                  ${sql.json(base as never)}) as written`,
      { retry: false },
    );
    const written = new Set(row!.written);
    return { saved: changed.map((c) => c.path).filter((p) => written.has(p)), deleted: deleted.filter((p) => written.has(p)), skipped };
  } catch (err) {
    if (hasSqlState(err, "CG413")) return { saved: [], deleted: [], skipped, error: (err as Error).message };
    throw err;
  }
}

export function describeSave(s: SaveOutcome): string {
  const head = s.error ? `workspace not saved: ${s.error}` : `workspace saved: ${s.saved.length} file(s) written, ${s.deleted.length} deleted`;
  const notes = s.skipped
    .slice(0, 10)
    .map((k) => `; skipped ${k.path} (${k.why})`)
    .join("");
  return head + notes + (s.skipped.length > 10 ? `; and ${s.skipped.length - 10} more skipped` : "");
}
