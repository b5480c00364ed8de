// The `sandbox` edge function's routes: parse → SQL function as the caller → JSON. Runs the same in
// Deno (served) and Node (tests call the handler directly).
import type { Sql, TransactionSql } from "postgres";
import type { z } from "zod";
import { callerFrom, corsHeaders, errorResponse, HttpError, json, requireRole, type Caller } from "./http.ts";
import {
  describeZodError,
  ExecuteRequestSchema,
  PageQuerySchema,
  RegisterWorkerSchema,
  StdinRequestSchema,
  taskTopic,
} from "./schemas.ts";
import { isFinal, type TaskStatus } from "./states.ts";
import { taskView, workerView, type TaskRow, type WorkerRow } from "./views.ts";

/** What the hosting runtime is, for /health (Deno passes its version and which platform env vars it got). */
export interface RuntimeInfo {
  runtime: string;
  env: Record<string, boolean>;
}

type Handler = (ctx: { req: Request; caller: Caller; params: string[]; url: URL; sql: Sql; runtime: RuntimeInfo }) => Promise<Response>;

const UUID = "([0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12})";

/** Runs `fn` in a transaction as the caller's role with its claims, so RLS and auth.uid() apply. */
async function asCaller<T>(sql: Sql, caller: Caller, fn: (tx: TransactionSql) => Promise<T>): Promise<T> {
  return (await sql.begin(async (tx) => {
    await tx`select set_config('role', ${caller.role}, true), set_config('request.jwt.claims', ${JSON.stringify(caller.claims)}, true)`;
    return await fn(tx);
  })) as T;
}

async function body<S extends z.ZodType>(req: Request, schema: S): Promise<z.output<S>> {
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

function query<S extends z.ZodType>(url: URL, schema: S): z.output<S> {
  const parsed = schema.safeParse(Object.fromEntries(url.searchParams));
  if (!parsed.success) throw new HttpError(400, "invalid_query", describeZodError(parsed.error));
  return parsed.data;
}

async function findTask(tx: TransactionSql, id: string): Promise<TaskRow> {
  const [row] = await tx<TaskRow[]>`select * from public.tasks where id = ${id}`;
  if (!row) throw new HttpError(404, "task_not_found", `no task ${id} (or it belongs to someone else)`);
  return row;
}

const routes: [string, RegExp, Handler][] = [
  ["GET", /^\/health$/, async ({ sql, caller, runtime }) => {
    const started = performance.now();
    const [row] = await asCaller(sql, caller, (tx) => tx<{ health: Record<string, unknown> }[]>`select cogo.health() as health`);
    const health = row!.health;
    const queuedWithoutWorker = health.queuedWithoutWorker as unknown[];
    return json(200, {
      status: (health.liveWorkers as number) > 0 && queuedWithoutWorker.length === 0 ? "ok" : "degraded",
      db: { ok: true, latencyMs: Math.round((performance.now() - started) * 10) / 10 },
      ...health,
      function: runtime,
    });
  }],
  ["POST", /^\/workers$/, async ({ req, sql, caller }) => {
    requireRole(caller, "service_role");
    const w = await body(req, RegisterWorkerSchema);
    const [row] = await asCaller(sql, caller, (tx) => tx<WorkerRow[]>`
      select * from cogo.register_worker(${w.name}, ${w.kind}, ${w.labels}, ${w.capacity}, ${w.leaseMs},
                                         ${w.version ?? null}, ${tx.json(w.host as never)})`);
    return json(201, workerView(row!));
  }],
  ["GET", /^\/workers$/, async ({ sql, caller }) => {
    requireRole(caller, "authenticated", "service_role");
    const rows = await asCaller(sql, caller, (tx) => tx<WorkerRow[]>`select * from public.workers order by created_at`);
    return json(200, { workers: rows.map(workerView) });
  }],
  ["DELETE", new RegExp(`^/workers/${UUID}$`), async ({ sql, caller, params }) => {
    requireRole(caller, "service_role");
    const [row] = await asCaller(sql, caller, (tx) => tx<WorkerRow[]>`select * from cogo.drain_worker(${params[0]!})`);
    if (!row?.id) throw new HttpError(404, "worker_not_found", `no worker ${params[0]}`);
    return json(202, workerView(row));
  }],
  ["POST", /^\/execute$/, async ({ req, sql, caller }) => {
    requireRole(caller, "authenticated", "service_role");
    const spec = await body(req, ExecuteRequestSchema);
    const headerKey = req.headers.get("idempotency-key");
    const withKey = headerKey && !spec.idempotencyKey ? { ...spec, idempotencyKey: headerKey } : spec;
    const [row] = await asCaller(sql, caller, (tx) => tx<TaskRow[]>`select * from cogo.enqueue_task(${tx.json(withKey as never)})`);
    return json(202, { taskId: row!.id, topic: taskTopic(row!.id), status: row!.status });
  }],
  ["GET", new RegExp(`^/tasks/${UUID}$`), async ({ sql, caller, params }) => {
    const row = await asCaller(sql, caller, (tx) => findTask(tx, params[0]!));
    return json(200, taskView(row));
  }],
  ["GET", new RegExp(`^/tasks/${UUID}/output$`), async ({ sql, caller, params, url }) => {
    const { after, limit } = query(url, PageQuerySchema);
    return await asCaller(sql, caller, async (tx) => {
      const task = await findTask(tx, params[0]!);
      const rows = await tx<{ seq: string; stream: string; data: string; createdAt: Date; attempt: number }[]>`
        select seq, stream, data, created_at, attempt from public.task_output
         where task_id = ${task.id} and seq > ${after} order by seq limit ${limit}`;
      const chunks = rows.map((r) => ({ sequence: Number(r.seq), stream: r.stream, data: r.data, timestamp: r.createdAt.toISOString(), attempt: r.attempt }));
      const last = chunks.at(-1)?.sequence ?? after;
      return json(200, {
        taskId: task.id,
        status: task.status,
        chunks,
        next: last,
        complete: isFinal(task.status as TaskStatus) && last >= Number(task.outputSeq),
      });
    });
  }],
  ["GET", new RegExp(`^/tasks/${UUID}/events$`), async ({ sql, caller, params, url }) => {
    const { after, limit } = query(url, PageQuerySchema);
    return await asCaller(sql, caller, async (tx) => {
      const task = await findTask(tx, params[0]!);
      const rows = await tx<{ seq: string; attempt: number; type: string; data: unknown; createdAt: Date }[]>`
        select seq, attempt, type, data, created_at from public.task_events
         where task_id = ${task.id} and seq > ${after} order by seq limit ${limit}`;
      const events = rows.map((r) => ({ taskId: task.id, seq: Number(r.seq), attempt: r.attempt, type: r.type, data: r.data, timestamp: r.createdAt.toISOString() }));
      return json(200, { taskId: task.id, events, next: events.at(-1)?.seq ?? after });
    });
  }],
  ["POST", new RegExp(`^/tasks/${UUID}/stdin$`), async ({ req, sql, caller, params }) => {
    const input = await body(req, StdinRequestSchema);
    const [row] = await asCaller(sql, caller, (tx) => tx<{ seq: string }[]>`select cogo.write_stdin(${params[0]!}, ${input.data}, ${input.eof}) as seq`);
    return json(202, { taskId: params[0], seq: Number(row!.seq) });
  }],
  ["DELETE", new RegExp(`^/tasks/${UUID}$`), async ({ sql, caller, params }) => {
    const [row] = await asCaller(sql, caller, (tx) => tx<TaskRow[]>`select * from cogo.cancel_task(${params[0]!})`);
    if (!row?.id) throw new HttpError(404, "task_not_found", `no task ${params[0]} (or it belongs to someone else)`);
    return json(202, taskView(row));
  }],
];

/** The function's fetch handler. `req.url`'s path is `/<function-name>/<route>`, as on Supabase. */
export function createApi(sql: Sql, runtime: RuntimeInfo): (req: Request) => Promise<Response> {
  return async (req) => {
    if (req.method === "OPTIONS") return new Response("ok", { headers: corsHeaders });
    try {
      const url = new URL(req.url);
      const route = "/" + url.pathname.split("/").slice(2).join("/");
      let pathMatched = false;
      for (const [method, pattern, handler] of routes) {
        const m = pattern.exec(route);
        if (!m) continue;
        pathMatched = true;
        if (method !== req.method) continue;
        return await handler({ req, caller: callerFrom(req), params: m.slice(1), url, sql, runtime });
      }
      if (pathMatched) throw new HttpError(405, "method_not_allowed", `${req.method} is not allowed on ${route}`);
      if (/^\/(tasks|workers)\/[^/]+/.test(route)) throw new HttpError(400, "invalid_id", `${route}: ids are UUIDs`);
      throw new HttpError(404, "no_route", `no route ${req.method} ${route}`);
    } catch (err) {
      return errorResponse(err);
    }
  };
}
