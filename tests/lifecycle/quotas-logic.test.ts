// The pure parts of tenant quotas: how a quota or rate-limit error becomes a response (status,
// Retry-After, the body naming the limit), the SDK's error classes, /metrics' tenant lines and the
// table `cogo usage` prints.
import { describe, expect, it } from "vitest";
import { detailJsonOf, errorResponse, retryAfterSeconds } from "../../functions/_shared/http.ts";
import { renderMetrics } from "../../functions/_shared/monitoring/metrics.ts";
import { formatBytes, renderUsage, type UsageReport } from "../../functions/_shared/quotas/usage.ts";
import { SQLSTATES } from "../../functions/_shared/sqlstate.ts";
import { apiErrorFor, InvalidRequestError, QuotaExceededError, RateLimitError } from "../../sdk/errors.ts";

const pgError = (code: string, message: string, detail?: string) => Object.assign(new Error(message), { code, detail });

describe("quota errors as responses", () => {
  it("CG429 is a 429 with Retry-After and the limit in the body", async () => {
    const detail = JSON.stringify({ limit: "executePerSecond", route: "/execute", perSecond: 20, burst: 200, retryAfterSeconds: 2 });
    const res = errorResponse(pgError("CG429", "rate limit for /execute: 20 requests per second (burst 200) exceeded; retry after 2 s", detail));
    expect(res.status).toBe(429);
    expect(res.headers.get("retry-after")).toBe("2");
    expect(res.headers.get("access-control-expose-headers")).toContain("retry-after");
    const body = await res.json();
    expect(body.error).toMatchObject({ code: "rate_limited", limit: "executePerSecond", route: "/execute", burst: 200, retryAfterSeconds: 2 });
    expect(body.error.message).toContain("retry after 2 s");
  });

  it("the queued and stored-bytes quotas are 429 and 413 with their own codes, no Retry-After", async () => {
    const q = errorResponse(pgError("CGQ29", "queued-task quota", JSON.stringify({ quota: "maxQueuedTasks", limit: 3 })));
    expect(q.status).toBe(429);
    expect(q.headers.get("retry-after")).toBeNull();
    expect((await q.json()).error).toMatchObject({ code: "queued_quota_exceeded", quota: "maxQueuedTasks", limit: 3 });
    const b = errorResponse(pgError("CGQ13", "stored-bytes quota", JSON.stringify({ quota: "maxStoredBytes", storedBytes: 10 })));
    expect(b.status).toBe(413);
    expect((await b.json()).error).toMatchObject({ code: "storage_quota_exceeded", quota: "maxStoredBytes", storedBytes: 10 });
  });

  it("a DETAIL cannot override the code or message, and other codes' DETAIL stays out", async () => {
    const res = errorResponse(pgError("CG429", "m", JSON.stringify({ code: "x", message: "y", retryAfterSeconds: 0.2 })));
    const body = await res.json();
    expect(body.error.code).toBe("rate_limited");
    expect(body.error.message).toBe("m");
    expect(res.headers.get("retry-after")).toBe("1");
    const other = await errorResponse(pgError("CG404", "gone", JSON.stringify({ secret: 1 }))).json();
    expect(other.error).toEqual({ code: "not_found", message: "gone" });
  });

  it("detailJsonOf and retryAfterSeconds", () => {
    expect(detailJsonOf({ detail: '{"a":1}' })).toEqual({ a: 1 });
    expect(detailJsonOf({ detail: "plain words" })).toBeUndefined();
    expect(detailJsonOf({ detail: "[1]" })).toBeUndefined();
    expect(detailJsonOf(null)).toBeUndefined();
    expect(retryAfterSeconds(0)).toBe(1);
    expect(retryAfterSeconds(2.1)).toBe(3);
    expect(retryAfterSeconds("2")).toBeUndefined();
    expect(retryAfterSeconds(Number.NaN)).toBeUndefined();
  });

  it("every quota SQLSTATE is in the table", () => {
    expect(SQLSTATES.CG429).toMatchObject({ http: 429, code: "rate_limited" });
    expect(SQLSTATES.CGQ29).toMatchObject({ http: 429, code: "queued_quota_exceeded" });
    expect(SQLSTATES.CGQ13).toMatchObject({ http: 413, code: "storage_quota_exceeded" });
  });
});

describe("SDK errors", () => {
  it("maps 429 and quota codes to their classes, keeping the details", () => {
    const rate = apiErrorFor(429, "rate_limited", "slow down", { retryAfterSeconds: 3, limit: "plansPerSecond" });
    expect(rate).toBeInstanceOf(RateLimitError);
    expect((rate as RateLimitError).retryAfterSeconds).toBe(3);
    expect(rate.details).toMatchObject({ limit: "plansPerSecond", status: 429 });
    expect(apiErrorFor(429, "queued_quota_exceeded", "full")).toBeInstanceOf(QuotaExceededError);
    expect(apiErrorFor(413, "storage_quota_exceeded", "full")).toBeInstanceOf(QuotaExceededError);
    expect(apiErrorFor(413, "too_large", "big")).toBeInstanceOf(InvalidRequestError);
  });
});

const report: UsageReport = {
  tenant: "00000000-0000-4000-8000-000000000001",
  limits: {
    maxRunning: null,
    executePerSecond: 20,
    executeBurst: 200,
    plansPerSecond: 5,
    plansBurst: 50,
    analysesPerSecond: 2,
    analysesBurst: 20,
    filesPerSecond: 20,
    filesBurst: 200,
    maxQueuedTasks: 1000,
    maxStoredBytes: 10 * 1024 ** 3,
  },
  running: [{ kind: "basic", running: 3, cap: 3 }],
  queued: { count: 250, max: 1000 },
  storedBytes: { total: 1536, max: 10 * 1024 ** 3, byClass: { taskInputs: 512, stdin: 0, output: 1024, artifacts: 0, workspaces: 0, analysis: 0 } },
  rateLimits: [{ class: "execute", route: "/execute", perSecond: 20, burst: 200, tokens: 150 }],
};

describe("cogo usage", () => {
  it("formats bytes", () => {
    expect(formatBytes(0)).toBe("0 B");
    expect(formatBytes(1023)).toBe("1023 B");
    expect(formatBytes(1536)).toBe("1.5 KiB");
    expect(formatBytes(10 * 1024 ** 3)).toBe("10 GiB");
  });

  it("prints one aligned row per quota and rate limit", () => {
    const text = renderUsage(report);
    const lines = text.trimEnd().split("\n");
    expect(lines[0]).toBe(`usage of tenant ${report.tenant}`);
    expect(text).toMatch(/running \(basic\)\s+3\s+3\s+100%/);
    expect(text).toMatch(/queued tasks\s+250\s+1000\s+25%/);
    expect(text).toMatch(/stored bytes\s+1\.5 KiB\s+10 GiB\s+0%/);
    expect(text).toMatch(/ {2}output\s+1 KiB/);
    expect(text).toMatch(/rate \/execute\s+150 tokens\s+20\/s, burst 200\s+25%/);
    // Columns line up: every "used" cell ends at the same place.
    const header = lines[1]!;
    expect(lines.slice(2).every((l) => l.length <= header.length + 40)).toBe(true);
  });

  it("a tenant with nothing running says so", () => {
    expect(renderUsage({ ...report, running: [] })).toMatch(/running tasks\s+0\s+share of fleet/);
  });
});

describe("/metrics tenant lines", () => {
  it("prints the top tenants as gauges labelled by tenant", () => {
    const text = renderMetrics({
      tasksByState: {},
      claimLatency: { buckets: [], count: 0, sum: 0 },
      outputRowsTotal: 0,
      outputRowsLastMinute: 0,
      blocksByReason: {},
      recoveries: [],
      workersByStatus: {},
      liveWorkers: 0,
      queue: [],
      oldestQueuedAgeMs: 0,
      tenants: { byRunning: [{ tenant: "a", running: 4 }], byStoredBytes: [{ tenant: "b", bytes: 2048 }] },
    });
    expect(text).toContain("# TYPE cogo_tenant_active_tasks gauge\n");
    expect(text).toContain('cogo_tenant_active_tasks{tenant="a"} 4\n');
    expect(text).toContain('cogo_tenant_stored_bytes{tenant="b"} 2048\n');
  });
});
