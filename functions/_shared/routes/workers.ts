// Workers: register (service role), list, drain.
import { HttpError, json, requireRole } from "../http.ts";
import type { WorkerSummary } from "../monitoring/lists.ts";
import { asCaller, body, UUID, type Route } from "../routing.ts";
import { RegisterWorkerSchema } from "../schemas.ts";
import { workerView, type WorkerRow } from "../views.ts";

export const workerRoutes: Route[] = [
  [
    "POST",
    /^\/workers$/,
    async ({ req, sql, caller }) => {
      requireRole(caller, "service_role");
      const w = await body(req, RegisterWorkerSchema);
      const [row] = await asCaller(
        sql,
        caller,
        (tx) => tx<WorkerRow[]>`
      select * from cogo.register_worker(${w.name}, ${w.kind}, ${w.labels}, ${w.capacity}, ${w.leaseMs},
                                         ${w.version ?? null}, ${tx.json(w.host as never)}, ${w.memoryBudgetBytes ?? null}, ${w.cpuBudget ?? null})`,
      );
      return json(201, workerView(row!));
    },
  ],
  [
    "GET",
    /^\/workers$/,
    async ({ sql, caller }) => {
      requireRole(caller, "authenticated", "service_role");
      // Users see kinds, labels, load and health; name, version and host only the service role.
      const [row] = await asCaller(sql, caller, (tx) => tx<{ workers: WorkerSummary[] }[]>`select cogo.fleet_workers(false) as workers`);
      return json(200, { workers: row!.workers });
    },
  ],
  [
    "DELETE",
    new RegExp(`^/workers/${UUID}$`),
    async ({ sql, caller, params }) => {
      requireRole(caller, "service_role");
      const [row] = await asCaller(sql, caller, (tx) => tx<WorkerRow[]>`select * from cogo.drain_worker(${params[0]!})`);
      if (!row?.id) throw new HttpError(404, "worker_not_found", `no worker ${params[0]}`);
      return json(202, workerView(row));
    },
  ],
];
