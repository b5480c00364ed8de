// The `sandbox` edge function: one handler over the route modules in ./routes. Runs the same in
// Deno (served) and Node (tests call the handler directly).
import type { Sql } from "postgres";
import { GATEWAY_HEADER, SecretSet, type Authenticator } from "./auth.ts";
import { callerFrom, corsHeaders, errorResponse, HttpError } from "./http.ts";
import { UUID, type Route, type RuntimeInfo } from "./routing.ts";
import { seedHint } from "./seed-routes.ts";
import { analysisRoutes } from "./routes/analysis.ts";
import { dashboardRoutes } from "./routes/dashboard.ts";
import { fileRoutes } from "./routes/files.ts";
import { artifactRoutes } from "./routes/artifacts.ts";
import { healthRoutes } from "./routes/health.ts";
import { metricsRoutes } from "./routes/metrics.ts";
import { planRoutes } from "./routes/plans.ts";
import { recoveryRoutes } from "./routes/recovery.ts";
import { tenantRoutes } from "./routes/tenants.ts";
import { taskRoutes } from "./routes/tasks.ts";
import { sandboxRoutes } from "./routes/sandboxes.ts";
import { sandboxFileRoutes } from "./routes/sandbox-files.ts";
import { workerRoutes } from "./routes/workers.ts";

export type { RuntimeInfo } from "./routing.ts";

const routes: Route[] = [
  ...healthRoutes,
  ...workerRoutes,
  ...planRoutes, // before taskRoutes: its POST /execute sends bodies with `steps` to the planner
  ...taskRoutes,
  ...sandboxRoutes,
  ...sandboxFileRoutes,
  ...dashboardRoutes,
  ...metricsRoutes,
  ...fileRoutes,
  ...analysisRoutes,
  ...recoveryRoutes,
  ...artifactRoutes,
  ...tenantRoutes,
];

export interface ApiOptions {
  runtime: RuntimeInfo;
  /** Proves every caller (functions/_shared/auth.ts). */
  auth: Authenticator;
  /**
   * When set, only requests carrying it in GATEWAY_HEADER are served: the embedded default gives
   * the function a per-start secret so a local process (or a sandbox on a host network) that
   * reaches the function's own port cannot skip the gateway. Hosted Supabase reaches functions
   * only through its gateway and sets none. @default undefined
   */
  gatewaySecret?: string;
}

const WHOLE_UUID = new RegExp(`^${UUID}$`);

/** The function's fetch handler. `req.url`'s path is `/<function-name>/<route>`, as on Supabase. */
export function createApi(sql: Sql, options: ApiOptions): (req: Request) => Promise<Response> {
  const { runtime, auth } = options;
  const gateway = options.gatewaySecret === undefined ? undefined : new SecretSet([options.gatewaySecret]);
  return async (req) => {
    try {
      if (gateway && !(await gateway.has(req.headers.get(GATEWAY_HEADER) ?? ""))) {
        throw new HttpError(401, "gateway_required", "this port answers only the API gateway; call <SUPABASE_URL>/functions/v1/<function>");
      }
      if (req.method === "OPTIONS") return new Response("ok", { headers: corsHeaders });
      const url = new URL(req.url);
      const route = "/" + url.pathname.split("/").slice(2).join("/");
      let pathMatched = false;
      for (const [method, pattern, handler] of routes) {
        const m = pattern.exec(route);
        if (!m) continue;
        pathMatched = true;
        if (method !== req.method) continue;
        return await handler({ req, caller: await callerFrom(req, auth), params: m.slice(1), url, sql, runtime });
      }
      // A seed API name (docs/seed-api.md) says where it went, before "not allowed" or "ids are UUIDs"
      // (POST /workers/create would otherwise read as a bad worker id).
      const seed = seedHint(req.method, route);
      if (seed) throw new HttpError(404, "no_route", seed.message);
      if (pathMatched) throw new HttpError(405, "method_not_allowed", `${req.method} is not allowed on ${route}`);
      // Only an id that is not a UUID is the caller's mistake; an unknown route under a good id is a 404.
      const id = /^\/(?:tasks|workers|analysis|recover|tenants)\/([^/]+)/.exec(route)?.[1];
      if (id !== undefined && !WHOLE_UUID.test(id)) throw new HttpError(400, "invalid_id", `${route}: ids are UUIDs`);
      throw new HttpError(404, "no_route", `no route ${req.method} ${route}`);
    } catch (err) {
      return errorResponse(err);
    }
  };
}
