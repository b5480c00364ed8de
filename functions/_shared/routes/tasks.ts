// Tasks: execute, status, output and event replay by seq, stdin, cancel.
import { checkTaskMemory } from "../admission.ts";
import { HttpError, json, requireRole } from "../http.ts";
import { setBlockOptions } from "./recovery.ts";
import { asCaller, body, findTask, query, UUID, type Route } from "../routing.ts";
import { ExecuteRequestSchema, PageQuerySchema, StdinRequestSchema, taskTopic } from "../schemas.ts";
import { isFinal, type TaskStatus } from "../states.ts";
import { purgedNotice, taskStatusView, taskView, type TaskRow } from "../views.ts";

export const taskRoutes: Route[] = [
  [
    "POST",
    /^\/execute$/,
    async ({ req, sql, caller }) => {
      requireRole(caller, "authenticated", "service_role");
      const spec = await body(req, ExecuteRequestSchema);
      const headerKey = req.headers.get("idempotency-key");
      const withKey = headerKey && !spec.idempotencyKey ? { ...spec, idempotencyKey: headerKey } : spec;
      const [row] = await asCaller(sql, caller, async (tx) => {
        // Memory is checked against the live fleet, never cut to fit (functions/_shared/admission.ts).
        await checkTaskMemory(tx, [{ field: "limits.memoryBytes", kind: spec.requirements.kind, memoryBytes: spec.limits.memoryBytes }]);
        const rows = await tx<TaskRow[]>`select * from cogo.enqueue_task(${tx.json(withKey as never)})`;
        if (spec.blockDetection || spec.recovery) await setBlockOptions(tx, rows[0]!.id, spec);
        if (spec.artifacts.length > 0 || spec.network) {
          await tx`select cogo.request_sandbox_options(${rows[0]!.id}, ${spec.artifacts}::text[], ${spec.network})`;
        }
        return rows;
      });
      return json(202, { taskId: row!.id, topic: taskTopic(row!.id), status: row!.status });
    },
  ],
  [
    "GET",
    new RegExp(`^/tasks/${UUID}$`),
    async ({ sql, caller, params }) => {
      const row = await asCaller(sql, caller, (tx) => findTask(tx, params[0]!));
      return json(200, taskView(row));
    },
  ],
  // The seed API's `tasks/{id}/status` (docs/seed-api.md): status, exit code, attempt and times only.
  [
    "GET",
    new RegExp(`^/tasks/${UUID}/status$`),
    async ({ sql, caller, params }) => {
      const row = await asCaller(sql, caller, (tx) => findTask(tx, params[0]!));
      return json(200, taskStatusView(row));
    },
  ],
  [
    "GET",
    new RegExp(`^/tasks/${UUID}/output$`),
    async ({ sql, caller, params, url }) => {
      const { after, limit } = query(url, PageQuerySchema);
      return await asCaller(sql, caller, async (tx) => {
        const task = await findTask(tx, params[0]!);
        const rows = await tx<{ seq: string; stream: string; data: string; createdAt: Date; attempt: number }[]>`
        select seq, stream, data, created_at, attempt from public.task_output
         where task_id = ${task.id} and seq > ${after} order by seq limit ${limit}`;
        const chunks = rows.map((r) => ({ sequence: Number(r.seq), stream: r.stream, data: r.data, timestamp: r.createdAt.toISOString(), attempt: r.attempt }));
        const last = chunks.at(-1)?.sequence ?? after;
        const purged = purgedNotice(task);
        return json(200, {
          taskId: task.id,
          status: task.status,
          chunks,
          next: last,
          // A purged task has no more output to come: complete, and `purged` says why it is empty.
          complete: purged !== null || (isFinal(task.status as TaskStatus) && last >= Number(task.outputSeq)),
          purged,
        });
      });
    },
  ],
  [
    "GET",
    new RegExp(`^/tasks/${UUID}/events$`),
    async ({ sql, caller, params, url }) => {
      const { after, limit } = query(url, PageQuerySchema);
      return await asCaller(sql, caller, async (tx) => {
        const task = await findTask(tx, params[0]!);
        const rows = await tx<{ seq: string; attempt: number; type: string; data: unknown; createdAt: Date }[]>`
        select seq, attempt, type, data, created_at from public.task_events
         where task_id = ${task.id} and seq > ${after} order by seq limit ${limit}`;
        const events = rows.map((r) => ({ taskId: task.id, seq: Number(r.seq), attempt: r.attempt, type: r.type, data: r.data, timestamp: r.createdAt.toISOString() }));
        return json(200, { taskId: task.id, events, next: events.at(-1)?.seq ?? after, purged: purgedNotice(task) });
      });
    },
  ],
  [
    "POST",
    new RegExp(`^/tasks/${UUID}/stdin$`),
    async ({ req, sql, caller, params }) => {
      const input = await body(req, StdinRequestSchema);
      const [row] = await asCaller(sql, caller, (tx) => tx<{ seq: string }[]>`select cogo.write_stdin(${params[0]!}, ${input.data}, ${input.eof}) as seq`);
      return json(202, { taskId: params[0], seq: Number(row!.seq) });
    },
  ],
  [
    "DELETE",
    new RegExp(`^/tasks/${UUID}$`),
    async ({ sql, caller, params }) => {
      const [row] = await asCaller(sql, caller, (tx) => tx<TaskRow[]>`select * from cogo.cancel_task(${params[0]!})`);
      if (!row?.id) throw new HttpError(404, "task_not_found", `no task ${params[0]} (or it belongs to someone else)`);
      return json(202, taskView(row));
    },
  ],
];
