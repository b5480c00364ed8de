// Recovery: recover one task now, or everything a worker holds. The function is stateless: a
// silent worker's tasks are re-queued in SQL at once; a live worker is told through cogo_control
// (the same Postgres NOTIFY path as cancel) and applies the request with the shared planner.
import type { TransactionSql } from "postgres";
import { HttpError, json, requireRole } from "../http.ts";
import { RecoverRequestSchema } from "../recovery/options.ts";
import { asCaller, body, UUID, type Route } from "../routing.ts";
import type { ExecuteSpec } from "../schemas.ts";

/** Stores a task's block thresholds and recovery options, in the transaction that enqueued it. */
export async function setBlockOptions(tx: TransactionSql, taskId: string, spec: Pick<ExecuteSpec, "blockDetection" | "recovery">): Promise<void> {
  await tx`select cogo.set_block_options(${taskId}, ${tx.json((spec.blockDetection ?? {}) as never)}, ${tx.json((spec.recovery ?? {}) as never)})`;
}

export const recoveryRoutes: Route[] = [
  [
    "POST",
    new RegExp(`^/tasks/${UUID}/recover$`),
    async ({ req, sql, caller, params }) => {
      requireRole(caller, "authenticated", "service_role");
      const request = await body(req, RecoverRequestSchema);
      const [row] = await asCaller(
        sql,
        caller,
        (tx) => tx<{ result: Record<string, unknown> }[]>`
      select cogo.request_recovery(${params[0]!}, ${tx.json(request as never)}) as result`,
      );
      return json(202, { ...row!.result, request });
    },
  ],
  [
    "POST",
    new RegExp(`^/recover/${UUID}$`),
    async ({ sql, caller, params }) => {
      requireRole(caller, "service_role");
      const [row] = await asCaller(
        sql,
        caller,
        (tx) => tx<{ result: Record<string, unknown> }[]>`
      select cogo.recover_worker(${params[0]!}) as result`,
      );
      if (!row) throw new HttpError(404, "worker_not_found", `no worker ${params[0]}`);
      return json(202, row.result);
    },
  ],
];
