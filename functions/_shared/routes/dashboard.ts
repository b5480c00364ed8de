// What live dashboards read: the caller's task list (filter, search, paging) and the fleet. A
// sandbox's init task is the sandbox's slot, not a task of the user's: it is never listed
// (migration 20261207000400 keeps it off `user:<id>` too).
// Live updates then come over Realtime (`user:<uid>` and `fleet`); these give the starting state.
import { json, requireRole } from "../http.ts";
import { likePattern, TaskListQuerySchema } from "../monitoring/list-query.ts";
import { encodeCursor, type Fleet, type TaskPage, type TaskSummary } from "../monitoring/lists.ts";
import { asCaller, query, type Route } from "../routing.ts";

export const dashboardRoutes: Route[] = [
  [
    "GET",
    /^\/tasks$/,
    async ({ sql, caller, url }) => {
      requireRole(caller, "authenticated", "service_role");
      const q = query(url, TaskListQuerySchema);
      const rows = await asCaller(
        sql,
        caller,
        (tx) => tx<{ task: TaskSummary; cursorAt: string }[]>`
      select cogo.task_summary(t) as task, t.created_at::text as cursor_at
        from public.tasks t
       where t.internal is distinct from 'sandbox-init'
         ${q.status ? tx`and t.status = any(${q.status}::public.task_status[])` : tx``}
         ${q.kind ? tx`and t.required_kind = ${q.kind}` : tx``}
         ${q.planId ? tx`and t.plan_id = ${q.planId}` : tx``}
         ${q.sandboxId ? tx`and t.sandbox_id = ${q.sandboxId}` : tx``}
         ${
           q.q
             ? tx`and (t.id::text ilike ${likePattern(q.q)} or coalesce(t.command, array_to_string(t.argv, ' ')) ilike ${likePattern(q.q)}
                     or t.step ilike ${likePattern(q.q)} or t.reason ilike ${likePattern(q.q)})`
             : tx``
         }
         ${q.cursor ? tx`and (t.created_at, t.id) < (${q.cursor.createdAt}::timestamptz, ${q.cursor.id}::uuid)` : tx``}
       order by t.created_at desc, t.id desc
       limit ${q.limit + 1}`,
      );
      const page = rows.slice(0, q.limit);
      const last = page.at(-1);
      const body: TaskPage = {
        tasks: page.map((r) => r.task),
        next: rows.length > q.limit && last ? encodeCursor({ createdAt: last.cursorAt, id: last.task.id }) : null,
      };
      return json(200, body);
    },
  ],
  [
    "GET",
    /^\/fleet$/,
    async ({ sql, caller, runtime }) => {
      requireRole(caller, "authenticated", "service_role");
      const started = performance.now();
      const [row] = await asCaller(
        sql,
        caller,
        (tx) => tx<Omit<Fleet, "db" | "function">[]>`
      select clock_timestamp() as now, cogo.health() as health, cogo.queue_depth() as queue,
             cogo.fleet_workers(true) as workers`,
      );
      const body: Fleet = {
        ...row!,
        db: { ok: true, latencyMs: Math.round((performance.now() - started) * 10) / 10 },
        function: { runtime: runtime.runtime },
      };
      return json(200, body);
    },
  ],
];
