// Plans: POST /plans (and POST /execute with `steps`), list, GET /plans/:id, its events, DELETE to cancel.
import type { TransactionSql } from "postgres";
import { z } from "zod";
import { checkTaskMemory } from "../admission.ts";
import { HttpError, json, requireRole } from "../http.ts";
import { PlanRequestSchema } from "../plans/spec.ts";
import { planView, type PlanRow, type StepRow } from "../plans/view.ts";
import { asCaller, body, query, UUID, type Handler, type Route } from "../routing.ts";
import { PageQuerySchema } from "../schemas.ts";
import { taskRoutes } from "./tasks.ts";

const PlanListQuerySchema = z.object({ limit: z.coerce.number().int().min(1).max(1000).default(100) });

const createPlan: Handler = async ({ req, sql, caller }) => {
  requireRole(caller, "authenticated", "service_role");
  const plan = await body(req, PlanRequestSchema);
  const headerKey = req.headers.get("idempotency-key");
  const spec = headerKey && !plan.idempotencyKey ? { ...plan, idempotencyKey: headerKey } : plan;
  return await asCaller(sql, caller, async (tx) => {
    // Every step's memory against the live fleet of its kind, before anything is written.
    await checkTaskMemory(
      tx,
      spec.steps.map((s, i) => ({ field: `steps.${i}.limits.memoryBytes`, kind: s.spec.requirements.kind, memoryBytes: s.spec.limits.memoryBytes })),
    );
    const [row] = await tx<PlanRow[]>`select * from cogo.create_plan(${tx.json(spec as never)})`;
    return json(202, { planId: row!.id, ...(await readPlan(tx, row!.id)) });
  });
};

const executeTask = taskRoutes.find(([method, pattern]) => method === "POST" && pattern.test("/execute"))![2];

async function readPlan(tx: TransactionSql, id: string) {
  const [plan] = await tx<PlanRow[]>`select * from public.plans where id = ${id}`;
  if (!plan) throw new HttpError(404, "plan_not_found", `no plan ${id} (or it belongs to someone else)`);
  const steps = await tx<StepRow[]>`
    select s.name, s.position, s.depends_on, s.spec, s.stage, s.priority, s.status, s.task_id, s.runs, s.reason,
           t.status as task_status, t.priority as task_priority, t.exit_code, t.attempt, t.started_at, t.finished_at,
           d.n as diagnostic_count, d.first as diagnostics, r.data as test_results
      from public.plan_steps s
      left join public.tasks t on t.id = s.task_id
      left join lateral (
        select count(*)::integer as n, (jsonb_agg(e.data order by e.seq) filter (where e.rn <= 5)) as first
          from (select data, seq, row_number() over (order by seq) rn from public.task_events
                 where task_id = s.task_id and type = 'diagnostic') e
      ) d on true
      left join lateral (
        select data from public.task_events where task_id = s.task_id and type = 'test_results' order by seq desc limit 1
      ) r on true
     where s.plan_id = ${id} order by s.position`;
  return planView(plan, steps);
}

export const planRoutes: Route[] = [
  ["POST", /^\/plans$/, createPlan],
  // One endpoint for both: a body with `steps` is a plan, anything else a single task.
  [
    "POST",
    /^\/execute$/,
    async (ctx) => {
      let raw: unknown;
      try {
        raw = JSON.parse(await ctx.req.clone().text());
      } catch {
        raw = null;
      }
      const isPlan = typeof raw === "object" && raw !== null && "steps" in raw;
      return await (isPlan ? createPlan : executeTask)(ctx);
    },
  ],
  [
    "GET",
    /^\/plans$/,
    async ({ sql, caller, url }) => {
      requireRole(caller, "authenticated", "service_role");
      const { limit } = query(url, PlanListQuerySchema);
      const rows = await asCaller(sql, caller, (tx) => tx<PlanRow[]>`select * from public.plans order by created_at desc limit ${limit}`);
      return json(200, {
        plans: rows.map((p) => ({
          id: p.id,
          name: p.name,
          status: p.status,
          reason: p.reason,
          workspaceId: p.workspaceId,
          steps: p.stepCount,
          createdAt: p.createdAt.toISOString(),
          finishedAt: p.finishedAt?.toISOString() ?? null,
        })),
      });
    },
  ],
  [
    "GET",
    new RegExp(`^/plans/${UUID}$`),
    async ({ sql, caller, params }) => {
      requireRole(caller, "authenticated", "service_role");
      return json(200, await asCaller(sql, caller, (tx) => readPlan(tx, params[0]!)));
    },
  ],
  [
    "GET",
    new RegExp(`^/plans/${UUID}/events$`),
    async ({ sql, caller, params, url }) => {
      requireRole(caller, "authenticated", "service_role");
      const { after, limit } = query(url, PageQuerySchema);
      return await asCaller(sql, caller, async (tx) => {
        const [plan] = await tx<{ id: string }[]>`select id from public.plans where id = ${params[0]!}`;
        if (!plan) throw new HttpError(404, "plan_not_found", `no plan ${params[0]} (or it belongs to someone else)`);
        const rows = await tx<{ seq: string; type: string; data: unknown; createdAt: Date }[]>`
        select seq, type, data, created_at from public.plan_events where plan_id = ${plan.id} and seq > ${after} order by seq limit ${limit}`;
        const events = rows.map((r) => ({ planId: plan.id, seq: Number(r.seq), type: r.type, data: r.data, timestamp: r.createdAt.toISOString() }));
        return json(200, { planId: plan.id, events, next: events.at(-1)?.seq ?? after });
      });
    },
  ],
  [
    "DELETE",
    new RegExp(`^/plans/${UUID}$`),
    async ({ sql, caller, params }) => {
      requireRole(caller, "authenticated", "service_role");
      return await asCaller(sql, caller, async (tx) => {
        const [row] = await tx<PlanRow[]>`select * from cogo.cancel_plan(${params[0]!})`;
        if (!row?.id) throw new HttpError(404, "plan_not_found", `no plan ${params[0]} (or it belongs to someone else)`);
        return json(202, await readPlan(tx, row.id));
      });
    },
  ],
  ...(["GET", "DELETE"] as const).map(
    (m): Route => [
      m,
      /^\/plans\/[^/]+(\/events)?$/,
      async ({ url }) => {
        throw new HttpError(400, "invalid_id", `${url.pathname.split("/").slice(2).join("/")}: plan ids are UUIDs`);
      },
    ],
  ),
];
