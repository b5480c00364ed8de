export { createSandboxClient, type SandboxClient, type Health } from "./client.ts";
export { TaskHandle, type TaskCallbacks, type TaskResult, type HandleOptions } from "./handle.ts";
export * from "./errors.ts";
export type { ExecuteRequest, OutputChunk, OutputMessage, TaskEventMessage, Limits } from "../functions/_shared/schemas.ts";
export type { TaskView, WorkerView } from "../functions/_shared/views.ts";
export type { ArtifactList, ArtifactView } from "../functions/_shared/artifacts/views.ts";
export { TASK_STATES, FINAL_STATES, type TaskStatus } from "../functions/_shared/states.ts";
export type { Diagnostic, TestResults, ProgressUpdate, Severity, Stage } from "../functions/_shared/diagnostics/index.ts";
