// A tenant's consumption against its quotas and rate limits: the shape cogo.tenant_usage_report()
// returns (GET /usage), and the readable table `cogo usage` prints. Pure, shared by the API, the
// SDK, the CLI and the dashboard.

/** Every limit a tenant has, by its key in cogo.set_tenant_limits / PUT /tenants/:id/limits. */
export interface TenantLimits {
  /** Tasks of one kind active at once; null: a share of the kind's live capacity. */
  maxRunning: number | null;
  executePerSecond: number;
  executeBurst: number;
  plansPerSecond: number;
  plansBurst: number;
  analysesPerSecond: number;
  analysesBurst: number;
  filesPerSecond: number;
  filesBurst: number;
  maxQueuedTasks: number;
  maxStoredBytes: number;
}

export type RateClass = "execute" | "plans" | "analyses" | "files";

export interface UsageReport {
  tenant: string;
  limits: TenantLimits;
  /** Kinds the tenant has active or queued tasks of, with its running cap there. */
  running: { kind: string; running: number; cap: number }[];
  queued: { count: number; max: number };
  storedBytes: {
    total: number;
    max: number;
    byClass: { taskInputs: number; stdin: number; output: number; artifacts: number; workspaces: number; analysis: number };
  };
  /** Tokens: requests that may be made at once now (refilled to the moment of the call). */
  rateLimits: { class: RateClass; route: string; perSecond: number; burst: number; tokens: number }[];
}

/** The view of PUT/GET /tenants/:id/limits. */
export interface TenantLimitsView {
  tenant: string;
  /** In force: the defaults with the operator's values over them. */
  limits: TenantLimits;
  /** Only what the operator set for this tenant. */
  overrides: Partial<TenantLimits>;
  defaults: TenantLimits;
}

const UNITS = ["B", "KiB", "MiB", "GiB", "TiB"] as const;

/** 1536 → "1.5 KiB"; whole bytes below 1 KiB. */
export function formatBytes(n: number): string {
  let v = n;
  let u = 0;
  while (Math.abs(v) >= 1024 && u < UNITS.length - 1) {
    v /= 1024;
    u++;
  }
  return u === 0 ? `${n} B` : `${Number(v.toFixed(1))} ${UNITS[u]}`;
}

/** "12%" of a limit; "-" for no limit. */
function share(used: number, max: number): string {
  return max > 0 ? `${Math.round((used / max) * 100)}%` : "-";
}

function table(rows: string[][]): string {
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  return rows
    .map((r) =>
      r
        .map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!)))
        .join("  ")
        .trimEnd(),
    )
    .join("\n");
}

/** The report as `cogo usage` prints it: one table, a row per quota and rate limit. */
export function renderUsage(r: UsageReport): string {
  const rows: string[][] = [["", "used", "limit", "share"]];
  if (r.running.length === 0) rows.push(["running tasks", "0", r.limits.maxRunning === null ? "share of fleet" : String(r.limits.maxRunning), "-"]);
  for (const k of r.running) rows.push([`running (${k.kind})`, String(k.running), String(k.cap), share(k.running, k.cap)]);
  rows.push(["queued tasks", String(r.queued.count), String(r.queued.max), share(r.queued.count, r.queued.max)]);
  rows.push(["stored bytes", formatBytes(r.storedBytes.total), formatBytes(r.storedBytes.max), share(r.storedBytes.total, r.storedBytes.max)]);
  for (const [name, bytes] of Object.entries(r.storedBytes.byClass)) rows.push([`  ${name}`, formatBytes(bytes), "", ""]);
  for (const l of r.rateLimits) {
    rows.push([`rate ${l.route}`, `${Math.floor(l.tokens)} tokens`, `${l.perSecond}/s, burst ${l.burst}`, share(l.burst - l.tokens, l.burst)]);
  }
  return `usage of tenant ${r.tenant}\n${table(rows)}\n`;
}
