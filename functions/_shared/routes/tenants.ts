// Tenant quotas and rate limits: GET /usage (the caller's consumption), and the operator's
// GET/PUT /tenants/:id/limits (service key only), over the SQL in
// migrations/20261206000200_tenant_quotas.sql.
import type { TransactionSql } from "postgres";
import { z } from "zod";
import { HttpError, json, requireRole } from "../http.ts";
import type { TenantLimits, TenantLimitsView, UsageReport } from "../quotas/usage.ts";
import { asCaller, body, query, UUID, type Route } from "../routing.ts";

const LimitsBodySchema = z.record(z.string(), z.unknown());
const UsageQuerySchema = z.object({ tenant: z.uuid().optional() });

async function limitsView(tx: TransactionSql, tenant: string): Promise<TenantLimitsView> {
  const [row] = await tx<{ limits: TenantLimits; defaults: TenantLimits; overrides: Partial<TenantLimits> }[]>`
    select cogo.tenant_limits_of(${tenant}) as limits, cogo.default_tenant_limits() as defaults,
           cogo.tenant_limit_overrides(${tenant}) as overrides`;
  return { tenant, limits: row!.limits, overrides: row!.overrides, defaults: row!.defaults };
}

export const tenantRoutes: Route[] = [
  [
    "GET",
    /^\/usage$/,
    async ({ sql, caller, url }) => {
      requireRole(caller, "authenticated", "service_role");
      const { tenant } = query(url, UsageQuerySchema);
      // A user sees its own figures only; the service key names the tenant.
      const owner = caller.role === "service_role" ? tenant : caller.userId;
      if (!owner) throw new HttpError(400, "tenant_required", "the service key reads a tenant's usage with ?tenant=<uuid>");
      if (caller.role !== "service_role" && tenant !== undefined && tenant !== owner) {
        throw new HttpError(403, "forbidden", "a user reads only its own usage (GET /usage without ?tenant)");
      }
      const [row] = await asCaller(sql, caller, (tx) => tx<{ report: UsageReport }[]>`select cogo.tenant_usage_report(${owner}) as report`);
      return json(200, row!.report);
    },
  ],
  [
    "GET",
    new RegExp(`^/tenants/${UUID}/limits$`),
    async ({ sql, caller, params }) => {
      requireRole(caller, "service_role");
      return json(200, await asCaller(sql, caller, (tx) => limitsView(tx, params[0]!.toLowerCase())));
    },
  ],
  [
    "PUT",
    new RegExp(`^/tenants/${UUID}/limits$`),
    async ({ req, sql, caller, params }) => {
      requireRole(caller, "service_role");
      const limits = await body(req, LimitsBodySchema);
      const tenant = params[0]!.toLowerCase();
      return json(
        200,
        await asCaller(sql, caller, async (tx) => {
          await tx`select cogo.set_tenant_limits(${tenant}, ${tx.json(limits as never)})`;
          return await limitsView(tx, tenant);
        }),
      );
    },
  ],
];
