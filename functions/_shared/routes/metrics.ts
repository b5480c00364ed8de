// GET /metrics for operators, in the Prometheus text format. Service key only: the figures span
// every tenant. Scrape with `authorization: { credentials: <service_role key> }` (docs/dashboard.md).
import { corsHeaders, requireRole } from "../http.ts";
import { CLAIM_LATENCY_BUCKETS, METRICS_CONTENT_TYPE, renderMetrics, TOP_TENANTS, type MetricsSnapshot, type TenantMetrics } from "../monitoring/metrics.ts";
import { asCaller, type Route } from "../routing.ts";

export const metricsRoutes: Route[] = [
  [
    "GET",
    /^\/metrics$/,
    async ({ sql, caller }) => {
      requireRole(caller, "service_role");
      const [row] = await asCaller(
        sql,
        caller,
        (tx) => tx<{ metrics: MetricsSnapshot; tenants: TenantMetrics }[]>`
      select cogo.metrics(${[...CLAIM_LATENCY_BUCKETS]}::double precision[]) as metrics, cogo.tenant_metrics(${TOP_TENANTS}) as tenants`,
      );
      return new Response(renderMetrics({ ...row!.metrics, tenants: row!.tenants }), { status: 200, headers: { ...corsHeaders, "content-type": METRICS_CONTENT_TYPE } });
    },
  ],
];
