// createSandboxClient(supabase): the SDK's entry point. Works with any supabase-js client — the
// embedded default or a real project — using that client's auth for HTTP and Realtime.
import type { SupabaseClient } from "@supabase/supabase-js";
import type { RecoverRequest } from "../functions/_shared/recovery/options.ts";
import type { ExecuteRequest, RegisterWorker } from "../functions/_shared/schemas.ts";
import type { ArtifactList } from "../functions/_shared/artifacts/views.ts";
import type { TaskView, WorkerView } from "../functions/_shared/views.ts";
import type { Fleet, TaskPage, WorkerSummary } from "../functions/_shared/monitoring/lists.ts";
import type { TenantLimits, TenantLimitsView, UsageReport } from "../functions/_shared/quotas/usage.ts";
import { call } from "./api.ts";
import { TaskHandle, type HandleOptions, type TaskCallbacks } from "./handle.ts";
import { analysisCalls, type AnalysisCalls } from "./analysis.ts";
import { planCalls, type PlanCalls } from "./plans.ts";
import { sandboxCalls, type SandboxCalls } from "./sandboxes.ts";

export interface Health {
  status: "ok" | "degraded";
  db: { ok: boolean; latencyMs: number };
  liveWorkers: number;
  queueDepth: number;
  running: number;
  oldestQueuedAgeMs: number;
  /**
   * The caller's own queued tasks whose kind (and labels) no live worker serves (every tenant's for
   * the service role, none for anon); they make `status` "degraded" for that user only.
   */
  queuedWithoutWorker: { kind: string; labels: string[]; count: number }[];
  /** Such a task fails (reason `no_worker_for_kind: …`) after no live worker served its kind this long. */
  noWorkerFailAfterMs: number;
  /** Live workers per kind; basic, flutter and analysis are always listed. */
  workerKinds: Record<string, number>;
  /** Blocked and recovering tasks, workers gone silent, the last hour's detections and recoveries. */
  blocks: {
    blocked: number;
    recovering: number;
    /** `name` for the service key only. */
    silentWorkers: { id: string; name?: string; status: string; lastHeartbeatAt: string; activeTasks: number }[];
    lastHour: { detected: Record<string, number>; workerLost: number; recoverySucceeded: number; recoveryFailed: number; recoveryGaveUp: number };
  };
  function: { runtime: string; env: Record<string, boolean> };
}

/** Tasks, workers and health here; plans and workspace files from ./plans.ts; repository analysis from ./analysis.ts. */
export interface SandboxClient extends PlanCalls, AnalysisCalls, SandboxCalls {
  /** Submits a task and follows it live; `await handle.result()` for the outcome. */
  execute(spec: ExecuteRequest, callbacks?: TaskCallbacks, options?: HandleOptions): Promise<TaskHandle>;
  /** Follows an existing task (e.g. after a restart): replays its output, then streams live. */
  attach(taskId: string, callbacks?: TaskCallbacks, options?: HandleOptions): Promise<TaskHandle>;
  getTask(taskId: string): Promise<TaskView>;
  cancel(taskId: string): Promise<TaskView>;
  /** Every worker; name, version and host are there for the service key only. */
  listWorkers(): Promise<WorkerSummary[]>;
  /** Registers a worker record (service key only); worker processes do this themselves. */
  createWorker(worker: RegisterWorker): Promise<WorkerView>;
  /** Drains a worker: no new claims; running tasks finish. Service key only. */
  drainWorker(workerId: string): Promise<WorkerView>;
  health(): Promise<Health>;
  /** The caller's tasks, newest first: `{status: "running,queued", q, kind, planId, limit, cursor}`. */
  listTasks(filter?: TaskListFilter): Promise<TaskPage>;
  /** Workers with their load, queue depth by priority, health. */
  fleet(): Promise<Fleet>;
  /** Recovers a task now: the planner's next step, or the one `request.action` names. */
  recover(taskId: string, request?: RecoverRequest): Promise<{ taskId: string; applied: string; workerId: string | null }>;
  /** Re-queues a silent worker's tasks now, or asks a live one to recover its blocked tasks. Service key only. */
  recoverWorker(workerId: string): Promise<{ workerId: string; silent: boolean; requeued: number; signalled: number }>;
  /** Artifacts the task named (`artifacts` in execute), collected after it exited. */
  listArtifacts(taskId: string): Promise<ArtifactList>;
  /** One artifact's bytes; a refused one (e.g. a symlink) throws a 409 ApiError saying why. */
  getArtifact(taskId: string, path: string): Promise<Uint8Array>;
  /**
   * The caller's consumption against its quotas and rate limits (GET /usage). With the service
   * key, name the tenant.
   */
  usage(tenant?: string): Promise<UsageReport>;
  /** A tenant's limits in force, its overrides and the defaults. Service key only. */
  getTenantLimits(tenant: string): Promise<TenantLimitsView>;
  /** Changes a tenant's limits: keys left out keep their value, null restores the default. Service key only. */
  setTenantLimits(tenant: string, limits: { [K in keyof TenantLimits]?: TenantLimits[K] | null }): Promise<TenantLimitsView>;
}

export interface TaskListFilter {
  /** Comma-separated states, or a list. */
  status?: string | string[];
  /** Matched anywhere in the id, command, step or reason (case-insensitive). */
  q?: string;
  kind?: string;
  planId?: string;
  /** Only the commands of this persistent sandbox. */
  sandboxId?: string;
  /** @default 50 (at most 200) */
  limit?: number;
  /** `next` of the previous page. */
  cursor?: string;
}

export function createSandboxClient(supabase: SupabaseClient): SandboxClient {
  return {
    ...planCalls(supabase),
    ...analysisCalls(supabase),
    ...sandboxCalls(supabase),
    async execute(spec, callbacks, options) {
      const { taskId } = await call<{ taskId: string }>(supabase, "POST", "/execute", spec);
      return await new TaskHandle(supabase, taskId, callbacks, options).start();
    },
    attach: (taskId, callbacks, options) => new TaskHandle(supabase, taskId, callbacks, options).start(),
    getTask: (taskId) => call<TaskView>(supabase, "GET", `/tasks/${taskId}`),
    cancel: (taskId) => call<TaskView>(supabase, "DELETE", `/tasks/${taskId}`),
    listWorkers: async () => (await call<{ workers: WorkerSummary[] }>(supabase, "GET", "/workers")).workers,
    createWorker: (worker) => call<WorkerView>(supabase, "POST", "/workers", worker),
    drainWorker: (workerId) => call<WorkerView>(supabase, "DELETE", `/workers/${workerId}`),
    health: () => call<Health>(supabase, "GET", "/health"),
    listTasks: (filter = {}) => {
      const params = new URLSearchParams();
      for (const [k, v] of Object.entries(filter)) {
        if (v !== undefined && v !== "") params.set(k, Array.isArray(v) ? v.join(",") : String(v));
      }
      const qs = params.toString();
      return call<TaskPage>(supabase, "GET", `/tasks${qs ? "?" + qs : ""}`);
    },
    fleet: () => call<Fleet>(supabase, "GET", "/fleet"),
    recover: (taskId, request = {}) => call(supabase, "POST", `/tasks/${taskId}/recover`, request),
    recoverWorker: (workerId) => call(supabase, "POST", `/recover/${workerId}`, {}),
    listArtifacts: (taskId) => call<ArtifactList>(supabase, "GET", `/tasks/${taskId}/artifacts`),
    async getArtifact(taskId, path) {
      const route = `/tasks/${taskId}/artifacts/${path.split("/").map(encodeURIComponent).join("/")}`;
      const blob = await call<Blob>(supabase, "GET", route);
      return new Uint8Array(await blob.arrayBuffer());
    },
    usage: (tenant) => call<UsageReport>(supabase, "GET", `/usage${tenant ? `?tenant=${encodeURIComponent(tenant)}` : ""}`),
    getTenantLimits: (tenant) => call<TenantLimitsView>(supabase, "GET", `/tenants/${tenant}/limits`),
    setTenantLimits: (tenant, limits) => call<TenantLimitsView>(supabase, "PUT", `/tenants/${tenant}/limits`, limits),
  };
}
