// createSandboxClient(supabase): the SDK's entry point. Works with any supabase-js client — the
// embedded default or a real project — using that client's auth for HTTP and Realtime.
import type { SupabaseClient } from "@supabase/supabase-js";
import type { ExecuteRequest, RegisterWorker } from "../functions/_shared/schemas.ts";
import type { ArtifactList } from "../functions/_shared/artifacts/views.ts";
import type { TaskView, WorkerView } from "../functions/_shared/views.ts";
import { call } from "./api.ts";
import { TaskHandle, type HandleOptions, type TaskCallbacks } from "./handle.ts";

export interface Health {
  status: "ok" | "degraded";
  db: { ok: boolean; latencyMs: number };
  liveWorkers: number;
  queueDepth: number;
  running: number;
  oldestQueuedAgeMs: number;
  queuedWithoutWorker: { kind: string; labels: string[]; count: number }[];
  function: { runtime: string; env: Record<string, boolean> };
}

export interface SandboxClient {
  /** Submits a task and follows it live; `await handle.result()` for the outcome. */
  execute(spec: ExecuteRequest, callbacks?: TaskCallbacks, options?: HandleOptions): Promise<TaskHandle>;
  /** Follows an existing task (e.g. after a restart): replays its output, then streams live. */
  attach(taskId: string, callbacks?: TaskCallbacks, options?: HandleOptions): Promise<TaskHandle>;
  getTask(taskId: string): Promise<TaskView>;
  cancel(taskId: string): Promise<TaskView>;
  listWorkers(): Promise<WorkerView[]>;
  /** Registers a worker record (service key only); worker processes do this themselves. */
  createWorker(worker: RegisterWorker): Promise<WorkerView>;
  /** Drains a worker: no new claims; running tasks finish. Service key only. */
  drainWorker(workerId: string): Promise<WorkerView>;
  health(): Promise<Health>;
  /** Artifacts the task named (`artifacts` in execute), collected after it exited. */
  listArtifacts(taskId: string): Promise<ArtifactList>;
  /** One artifact's bytes; a refused one (e.g. a symlink) throws a 409 ApiError saying why. */
  getArtifact(taskId: string, path: string): Promise<Uint8Array>;
}

export function createSandboxClient(supabase: SupabaseClient): SandboxClient {
  return {
    async execute(spec, callbacks, options) {
      const { taskId } = await call<{ taskId: string }>(supabase, "POST", "/execute", spec);
      return await new TaskHandle(supabase, taskId, callbacks, options).start();
    },
    attach: (taskId, callbacks, options) => new TaskHandle(supabase, taskId, callbacks, options).start(),
    getTask: (taskId) => call<TaskView>(supabase, "GET", `/tasks/${taskId}`),
    cancel: (taskId) => call<TaskView>(supabase, "DELETE", `/tasks/${taskId}`),
    listWorkers: async () => (await call<{ workers: WorkerView[] }>(supabase, "GET", "/workers")).workers,
    createWorker: (worker) => call<WorkerView>(supabase, "POST", "/workers", worker),
    drainWorker: (workerId) => call<WorkerView>(supabase, "DELETE", `/workers/${workerId}`),
    health: () => call<Health>(supabase, "GET", "/health"),
    listArtifacts: (taskId) => call<ArtifactList>(supabase, "GET", `/tasks/${taskId}/artifacts`),
    async getArtifact(taskId, path) {
      const route = `/tasks/${taskId}/artifacts/${path.split("/").map(encodeURIComponent).join("/")}`;
      const blob = await call<Blob>(supabase, "GET", route);
      return new Uint8Array(await blob.arrayBuffer());
    },
  };
}
