// GET /metrics: the snapshot cogo.metrics() returns, printed in the Prometheus text format
// (version 0.0.4). Pure, so it is unit-tested without a database.
import { TASK_STATES } from "../states.ts";
import type { QueueDepth } from "./lists.ts";

/** Upper bounds (seconds) of the claim latency histogram: enqueue → first claim. */
export const CLAIM_LATENCY_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60] as const;

/** What cogo.metrics(buckets) returns. Counts arrive as JSON numbers. */
export interface MetricsSnapshot {
  tasksByState: Record<string, number>;
  claimLatency: { buckets: { le: number; count: number }[] | null; count: number; sum: number };
  outputRowsTotal: number;
  outputRowsLastMinute: number;
  blocksByReason: Record<string, number>;
  recoveries: { outcome: string; action: string; count: number }[];
  workersByStatus: Record<string, number>;
  liveWorkers: number;
  queue: QueueDepth[];
  oldestQueuedAgeMs: number;
  /** The top tenants (cogo.tenant_metrics(TOP_TENANTS)); absent: not printed. */
  tenants?: TenantMetrics;
}

/** How many tenants /metrics lists by running tasks and by stored bytes. */
export const TOP_TENANTS = 10;

/** What cogo.tenant_metrics(top) returns. */
export interface TenantMetrics {
  byRunning: { tenant: string; running: number }[];
  byStoredBytes: { tenant: string; bytes: number }[];
}

export const METRICS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8";

const escapeLabel = (v: string) => v.replace(/\\/g, "\\\\").replace(/\n/g, "\\n").replace(/"/g, '\\"');

function num(v: number): string {
  if (v === Infinity) return "+Inf";
  if (v === -Infinity) return "-Inf";
  if (Number.isNaN(v)) return "NaN";
  return String(v);
}

class Exposition {
  private lines: string[] = [];
  family(name: string, type: "counter" | "gauge" | "histogram", help: string): this {
    this.lines.push(`# HELP ${name} ${help}`, `# TYPE ${name} ${type}`);
    return this;
  }
  sample(name: string, value: number, labels: Record<string, string> = {}): this {
    const ls = Object.entries(labels)
      .map(([k, v]) => `${k}="${escapeLabel(v)}"`)
      .join(",");
    this.lines.push(`${name}${ls ? `{${ls}}` : ""} ${num(value)}`);
    return this;
  }
  toString(): string {
    return this.lines.join("\n") + "\n";
  }
}

export function renderMetrics(m: MetricsSnapshot): string {
  const out = new Exposition();

  out.family("cogo_tasks", "gauge", "Tasks by state.");
  for (const state of TASK_STATES) out.sample("cogo_tasks", m.tasksByState[state] ?? 0, { state });

  out.family("cogo_queue_depth", "gauge", "Queued tasks by required worker kind and priority.");
  for (const q of m.queue) out.sample("cogo_queue_depth", q.count, { kind: q.kind, priority: String(q.priority) });
  out.family("cogo_oldest_queued_age_seconds", "gauge", "Age of the oldest queued task.");
  out.sample("cogo_oldest_queued_age_seconds", m.oldestQueuedAgeMs / 1000);

  out.family("cogo_claim_latency_seconds", "histogram", "Enqueue (or run_after) to first claim, over all tasks claimed so far.");
  for (const b of m.claimLatency.buckets ?? []) out.sample("cogo_claim_latency_seconds_bucket", b.count, { le: num(b.le) });
  out.sample("cogo_claim_latency_seconds_bucket", m.claimLatency.count, { le: "+Inf" });
  out.sample("cogo_claim_latency_seconds_sum", m.claimLatency.sum);
  out.sample("cogo_claim_latency_seconds_count", m.claimLatency.count);

  out.family("cogo_output_rows_total", "counter", "Output rows (stdout, stderr, system) written by all tasks.");
  out.sample("cogo_output_rows_total", m.outputRowsTotal);
  out.family("cogo_output_rows_per_second", "gauge", "Output rows written per second over the last minute.");
  out.sample("cogo_output_rows_per_second", Math.round((m.outputRowsLastMinute / 60) * 1000) / 1000);

  out.family("cogo_blocks_total", "counter", "block_detected events by reason.");
  for (const [reason, n] of Object.entries(m.blocksByReason)) out.sample("cogo_blocks_total", n, { reason });

  out.family("cogo_recoveries_total", "counter", "Recovery events by outcome (started, succeeded, failed) and action.");
  for (const r of m.recoveries) out.sample("cogo_recoveries_total", r.count, { outcome: r.outcome, action: r.action });

  out.family("cogo_workers", "gauge", "Registered workers by status.");
  for (const status of ["online", "draining", "offline"]) out.sample("cogo_workers", m.workersByStatus[status] ?? 0, { status });
  out.family("cogo_workers_live", "gauge", "Online workers that heartbeated within two leases.");
  out.sample("cogo_workers_live", m.liveWorkers);

  if (m.tenants) {
    out.family("cogo_tenant_active_tasks", "gauge", `Active tasks of the ${TOP_TENANTS} tenants with the most.`);
    for (const t of m.tenants.byRunning) out.sample("cogo_tenant_active_tasks", t.running, { tenant: t.tenant });
    out.family("cogo_tenant_stored_bytes", "gauge", `Stored bytes (tenant quota) of the ${TOP_TENANTS} tenants with the most.`);
    for (const t of m.tenants.byStoredBytes) out.sample("cogo_tenant_stored_bytes", t.bytes, { tenant: t.tenant });
  }

  return out.toString();
}
