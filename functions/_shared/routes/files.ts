// Files of a plan's workspace: write/delete (re-running the steps a change affects), read, list.
import type { Sql, TransactionSql } from "postgres";
import { HttpError, json, requireRole, type Caller } from "../http.ts";
import { validateWorkspacePath } from "../paths.ts";
import { toBase64, WorkspaceQuerySchema, WriteFilesSchema } from "../plans/spec.ts";
import type { ChangeResult } from "../plans/view.ts";
import { asCaller, body, query, type Route } from "../routing.ts";

const utf8 = new TextDecoder("utf-8", { fatal: true });

/** A workspace path from the URL (percent-decoded per component), checked by validateWorkspacePath; 400 `invalid_path` else. */
export function pathParam(raw: string): string {
  let decoded: string;
  try {
    decoded = raw.split("/").map(decodeURIComponent).join("/");
  } catch {
    throw new HttpError(400, "invalid_path", "path: not valid percent-encoding");
  }
  try {
    return validateWorkspacePath(decoded);
  } catch (e) {
    throw new HttpError(400, "invalid_path", `path: ${(e as Error).message}`);
  }
}

/** One change in one transaction (as the caller): `check` may refuse it before anything is written. */
async function change(sql: Sql, caller: Caller, workspaceId: string, files: unknown[], deletes: string[], check?: (tx: TransactionSql) => Promise<void>) {
  const row = await asCaller(sql, caller, async (tx) => {
    await check?.(tx);
    const [r] = await tx<{ result: ChangeResult }[]>`select cogo.write_files(${workspaceId}, ${tx.json(files as never)}, ${deletes}) as result`;
    return r!;
  });
  return json(200, row.result);
}

export const fileRoutes: Route[] = [
  [
    "POST",
    /^\/files$/,
    async ({ req, sql, caller }) => {
      requireRole(caller, "authenticated", "service_role");
      const r = await body(req, WriteFilesSchema);
      const files = r.files.map((f) => ({ path: f.path, content: f.encoding === "base64" ? f.content : toBase64(f.content), executable: f.executable }));
      return await change(sql, caller, r.workspaceId, files, r.delete);
    },
  ],
  [
    "GET",
    /^\/files$/,
    async ({ sql, caller, url }) => {
      requireRole(caller, "authenticated", "service_role");
      const { workspace } = query(url, WorkspaceQuerySchema);
      return await asCaller(sql, caller, async (tx) => {
        const [ws] = await tx<{ id: string; revision: string }[]>`select id, revision from public.workspaces where id = ${workspace}`;
        if (!ws) throw new HttpError(404, "workspace_not_found", `no workspace ${workspace} (or it belongs to someone else)`);
        const rows = await tx<{ path: string; size: number; executable: boolean; version: string }[]>`
        select path, size, executable, version from public.workspace_files where workspace_id = ${workspace} order by path`;
        return json(200, { workspaceId: ws.id, revision: Number(ws.revision), files: rows.map((r) => ({ ...r, version: Number(r.version) })) });
      });
    },
  ],
  [
    "GET",
    /^\/files\/(.+)$/,
    async ({ sql, caller, url, params }) => {
      requireRole(caller, "authenticated", "service_role");
      const path = pathParam(params[0]!);
      const { workspace } = query(url, WorkspaceQuerySchema);
      const [row] = await asCaller(
        sql,
        caller,
        (tx) => tx<{ content: string; executable: boolean; size: number; version: string }[]>`
      select translate(encode(content, 'base64'), E'\n', '') as content, executable, size, version
        from public.workspace_files where workspace_id = ${workspace} and path = ${path}`,
      );
      if (!row) throw new HttpError(404, "file_not_found", `no file ${path} in workspace ${workspace} (or it belongs to someone else)`);
      const bytes = Uint8Array.from(atob(row.content), (c) => c.charCodeAt(0));
      let text: string | null = null;
      try {
        text = utf8.decode(bytes);
      } catch {
        // binary: stays base64
      }
      return json(200, {
        workspaceId: workspace,
        path,
        size: row.size,
        executable: row.executable,
        version: Number(row.version),
        ...(text !== null ? { encoding: "utf8", content: text } : { encoding: "base64", content: row.content }),
      });
    },
  ],
  [
    "DELETE",
    /^\/files\/(.+)$/,
    async ({ sql, caller, url, params }) => {
      requireRole(caller, "authenticated", "service_role");
      const path = pathParam(params[0]!);
      const { workspace } = query(url, WorkspaceQuerySchema);
      return await change(sql, caller, workspace, [], [path], async (tx) => {
        const [hit] = await tx`select 1 from public.workspace_files where workspace_id = ${workspace} and path = ${path}`;
        if (!hit) throw new HttpError(404, "file_not_found", `no file ${path} in workspace ${workspace} (or it belongs to someone else)`);
      });
    },
  ],
];
