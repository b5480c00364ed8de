// Files of a live sandbox (issue 19; docs/design/persistent-sandboxes.md §3.6):
//   GET    /sandboxes/:id/files?path=DIR              list DIR (E2B's EntryInfo fields)
//   GET    /sandboxes/:id/files?path=DIR&format=tar   DIR as a tar archive
//   PUT    /sandboxes/:id/files?path=DIR&format=tar   extract the body (a tar) into DIR
//   GET    /sandboxes/:id/files/<path>                a file's bytes
//   PUT    /sandboxes/:id/files/<path>                write the body (parent directories made): 201 new, 200 replaced
//   DELETE /sandboxes/:id/files/<path>[?recursive=true]   204; a directory only with recursive=true (else 409)
// Each is one op row (cogo.request_sandbox_op, as the caller: another tenant's sandbox is 404, one
// not ready 409, a 9th op in flight 429) served by the holding worker inside the sandbox; the
// function waits for it in SQL (cogo.await_sandbox_op). At most MAX_SANDBOX_FILE_BYTES either way
// (413 naming the cap); a full disk is 507 sandbox_disk_full.
import { z } from "zod";
import type { Sql } from "postgres";
import { corsHeaders, HttpError, json, requireRole, type Caller } from "../http.ts";
import { validateWorkspacePath } from "../paths.ts";
import { asCaller, query, UUID, type Route } from "../routing.ts";
import { pathParam } from "./files.ts";
import { MAX_SANDBOX_FILE_BYTES, SANDBOX_OP_HTTP, sandboxOpErrorCode, type EntryInfo, type SandboxFileOp, type SandboxOpError } from "../sandbox-files.ts";

/** How long the function waits for the worker; then 504 (the op may still finish). */
const OP_WAIT_MS = 60_000;
/** Bytes per row of cogo.sandbox_op_chunks. */
const CHUNK_BYTES = 1024 * 1024;

const DirQuerySchema = z.object({ path: z.string().max(4096).optional(), format: z.literal("tar").optional() }).strict();
const FileQuerySchema = z.object({ recursive: z.enum(["true", "false"]).optional() }).strict();

const tooLarge = (what: string) =>
  new HttpError(
    413,
    "too_large",
    `${what} is over ${MAX_SANDBOX_FILE_BYTES} bytes (32 MiB), the cap of one file operation; split it, or move a directory as several tar archives`,
    {
      maxBytes: MAX_SANDBOX_FILE_BYTES,
    },
  );

/** `?path=DIR`: relative to /workspace; absent, '' or '.' is the workspace itself. */
function dirPath(raw: string | undefined): string {
  if (raw === undefined || raw === "" || raw === ".") return "";
  try {
    return validateWorkspacePath(raw);
  } catch (e) {
    throw new HttpError(400, "invalid_path", `path: ${(e as Error).message}`);
  }
}

/** The request body, at most MAX_SANDBOX_FILE_BYTES (413 as soon as it is known to be more). */
async function readBody(req: Request): Promise<Uint8Array> {
  const declared = Number(req.headers.get("content-length") ?? "0");
  if (declared > MAX_SANDBOX_FILE_BYTES) throw tooLarge(`the body (${declared} bytes)`);
  if (!req.body) return new Uint8Array(0);
  const parts: Uint8Array[] = [];
  let size = 0;
  const reader = req.body.getReader();
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    size += value.length;
    if (size > MAX_SANDBOX_FILE_BYTES) {
      await reader.cancel().catch(() => {});
      throw tooLarge("the body");
    }
    parts.push(value);
  }
  return concat(parts, size);
}

function concat(parts: Uint8Array[], size = parts.reduce((n, p) => n + p.length, 0)): Uint8Array {
  if (parts.length === 1) return parts[0]!;
  const out = new Uint8Array(size);
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

interface OpDone {
  result: Record<string, unknown>;
  output: Uint8Array | null;
}

/** One op, requested as the caller and awaited; its result, and its output when `wantOutput`. */
async function runOp(
  sql: Sql,
  caller: Caller,
  sandboxId: string,
  op: SandboxFileOp,
  path: string,
  opts: { args?: Record<string, unknown>; data?: Uint8Array; wantOutput?: boolean } = {},
): Promise<OpDone> {
  const data = opts.data ?? null;
  const id = await asCaller(sql, caller, async (tx) => {
    const [req] = await tx<{ id: string }[]>`
      select cogo.request_sandbox_op(${sandboxId}, ${op}, ${path}, ${tx.json((opts.args ?? {}) as never)}, ${data?.length ?? null})::text as id`;
    // One 1 MiB chunk per call: a single large bytea value is about twice as slow through postgres.js.
    for (let seq = 0; data && seq * CHUNK_BYTES < data.length; seq++) {
      await tx`select cogo.put_sandbox_op_input(${req!.id}::bigint, ${seq}, ${data.subarray(seq * CHUNK_BYTES, (seq + 1) * CHUNK_BYTES)})`;
    }
    return req!.id;
  });
  const [r] = await asCaller(
    sql,
    caller,
    (tx) => tx<{ status: string; result: Record<string, unknown> | null; error: SandboxOpError | null }[]>`
    select * from cogo.await_sandbox_op(${id}::bigint, ${OP_WAIT_MS})`,
  );
  if (r!.status === "pending" || r!.status === "running") {
    throw new HttpError(504, "sandbox_op_timeout", `the sandbox's worker did not finish file operation ${id} within ${OP_WAIT_MS} ms`);
  }
  if (r!.status === "failed") {
    const err = r!.error ?? { code: "op_failed", message: "the file operation failed" };
    if (err.code === "too_large") throw tooLarge(path || "the directory");
    throw new HttpError(SANDBOX_OP_HTTP[err.code] ?? 500, sandboxOpErrorCode(err.code), err.message, { path });
  }
  let output: Uint8Array | null = null;
  if (opts.wantOutput) {
    const rows = await asCaller(sql, caller, (tx) => tx<{ data: Uint8Array }[]>`select cogo.take_sandbox_op_output(${id}::bigint) as data`);
    output = concat(rows.map((row) => row.data));
  }
  return { result: r!.result ?? {}, output };
}

function bytes(status: number, data: Uint8Array, headers: Record<string, string> = {}): Response {
  return new Response(data as Uint8Array<ArrayBuffer>, {
    status,
    headers: { ...corsHeaders, "content-type": "application/octet-stream", "content-length": String(data.length), ...headers },
  });
}

const FILES = `^/sandboxes/${UUID}/files`;

export const sandboxFileRoutes: Route[] = [
  [
    "GET",
    new RegExp(`${FILES}$`),
    async ({ sql, caller, params, url }) => {
      requireRole(caller, "authenticated", "service_role");
      const q = query(url, DirQuerySchema);
      const dir = dirPath(q.path);
      if (q.format === "tar") {
        const { output } = await runOp(sql, caller, params[0]!, "tar_get", dir, { wantOutput: true });
        const name = (dir.split("/").pop() || "workspace") + ".tar";
        return bytes(200, output!, { "content-disposition": `attachment; filename="${name.replace(/[^\w.-]/g, "_")}"` });
      }
      const { result } = await runOp(sql, caller, params[0]!, "list", dir);
      return json(200, { path: dir, entries: result.entries as EntryInfo[], truncated: result.truncated === true });
    },
  ],
  [
    "PUT",
    new RegExp(`${FILES}$`),
    async ({ req, sql, caller, params, url }) => {
      requireRole(caller, "authenticated", "service_role");
      const q = query(url, DirQuerySchema);
      if (q.format !== "tar") throw new HttpError(400, "invalid_query", "PUT /files uploads a tar archive: add ?format=tar (and ?path=DIR); PUT /files/<path> writes one file");
      const dir = dirPath(q.path);
      const data = await readBody(req);
      await runOp(sql, caller, params[0]!, "tar_put", dir, { data });
      return json(200, { path: dir, size: data.length });
    },
  ],
  [
    "GET",
    new RegExp(`${FILES}/(.+)$`),
    async ({ sql, caller, params, url }) => {
      requireRole(caller, "authenticated", "service_role");
      query(url, z.object({}).strict());
      const path = pathParam(params[1]!);
      const { output } = await runOp(sql, caller, params[0]!, "read", path, { wantOutput: true });
      return bytes(200, output!);
    },
  ],
  [
    "PUT",
    new RegExp(`${FILES}/(.+)$`),
    async ({ req, sql, caller, params, url }) => {
      requireRole(caller, "authenticated", "service_role");
      query(url, z.object({}).strict());
      const path = pathParam(params[1]!);
      const data = await readBody(req);
      const { result } = await runOp(sql, caller, params[0]!, "write", path, { data });
      return json(result.created ? 201 : 200, { path, size: data.length });
    },
  ],
  [
    "DELETE",
    new RegExp(`${FILES}/(.+)$`),
    async ({ sql, caller, params, url }) => {
      requireRole(caller, "authenticated", "service_role");
      const q = query(url, FileQuerySchema);
      const path = pathParam(params[1]!);
      await runOp(sql, caller, params[0]!, "remove", path, { args: { recursive: q.recursive === "true" } });
      return new Response(null, { status: 204, headers: corsHeaders });
    },
  ],
];
