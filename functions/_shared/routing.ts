// What every route module shares: the handler type, the caller's transaction, body/query parsing.
import type { Sql, TransactionSql } from "postgres";
import type { z } from "zod";
import { HttpError, type Caller } from "./http.ts";
import { describeZodError } from "./schemas.ts";
import type { TaskRow } from "./views.ts";

/** What the hosting runtime is, for /health (Deno passes its version and which platform env vars it got). */
export interface RuntimeInfo {
  runtime: string;
  env: Record<string, boolean>;
}

export type Handler = (ctx: { req: Request; caller: Caller; params: string[]; url: URL; sql: Sql; runtime: RuntimeInfo }) => Promise<Response>;

export const UUID = "([0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12})";

/** Runs `fn` in a transaction as the caller's role with its claims, so RLS and auth.uid() apply. */
export async function asCaller<T>(sql: Sql, caller: Caller, fn: (tx: TransactionSql) => Promise<T>): Promise<T> {
  return (await sql.begin(async (tx) => {
    await tx`select set_config('role', ${caller.role}, true), set_config('request.jwt.claims', ${JSON.stringify(caller.claims)}, true)`;
    return await fn(tx);
  })) as T;
}

export async function body<S extends z.ZodType>(req: Request, schema: S): Promise<z.output<S>> {
  let raw: unknown;
  const text = await req.text();
  try {
    raw = text === "" ? {} : JSON.parse(text);
  } catch {
    throw new HttpError(400, "invalid_json", "the body is not valid JSON");
  }
  const parsed = schema.safeParse(raw);
  if (!parsed.success) throw new HttpError(400, "invalid_request", describeZodError(parsed.error));
  return parsed.data;
}

export function query<S extends z.ZodType>(url: URL, schema: S): z.output<S> {
  const parsed = schema.safeParse(Object.fromEntries(url.searchParams));
  if (!parsed.success) throw new HttpError(400, "invalid_query", describeZodError(parsed.error));
  return parsed.data;
}

export async function findTask(tx: TransactionSql, id: string): Promise<TaskRow> {
  const [row] = await tx<TaskRow[]>`select * from public.tasks where id = ${id}`;
  if (!row) throw new HttpError(404, "task_not_found", `no task ${id} (or it belongs to someone else)`);
  return row;
}

/** A route: method, pattern over the path after the function name (groups become `params`), handler. */
export type Route = [method: string, pattern: RegExp, handler: Handler];
