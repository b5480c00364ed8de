// GET /health: database, workers, queue, and the runtime serving the function.
import { json } from "../http.ts";
import { workerKindCounts } from "../plans/limits.ts";
import { asCaller, type Route } from "../routing.ts";

export const healthRoutes: Route[] = [
  [
    "GET",
    /^\/health$/,
    async ({ sql, caller, runtime }) => {
      const started = performance.now();
      const [row] = await asCaller(
        sql,
        caller,
        (tx) => tx<{ health: Record<string, unknown>; kinds: { kind: string; n: number }[]; blocks: Record<string, unknown> }[]>`
      select cogo.health() as health, cogo.live_worker_kinds() as kinds, cogo.block_health() as blocks`,
      );
      const health: Record<string, unknown> = { ...row!.health, blocks: row!.blocks };
      // cogo.health() lists the caller's own tasks waiting for a kind no live worker serves (all
      // of them for the service role, none for anon). They make the status "degraded" for that
      // user only: one tenant's task for an unserved kind is not everyone's outage.
      const ownUnserved = caller.role === "authenticated" ? (health.queuedWithoutWorker as unknown[]).length : 0;
      return json(200, {
        status: (health.liveWorkers as number) > 0 && ownUnserved === 0 ? "ok" : "degraded",
        db: { ok: true, latencyMs: Math.round((performance.now() - started) * 10) / 10 },
        ...health,
        workerKinds: workerKindCounts(row!.kinds),
        function: runtime,
      });
    },
  ],
];
