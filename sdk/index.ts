export { createSandboxClient, type SandboxClient, type Health, type TaskListFilter } from "./client.ts";
export { TaskHandle, type TaskCallbacks, type TaskResult, type HandleOptions } from "./handle.ts";
export * from "./errors.ts";
export type { ExecuteRequest, OutputChunk, OutputMessage, TaskEventMessage, Limits } from "../functions/_shared/schemas.ts";
export type { TaskView, WorkerView } from "../functions/_shared/views.ts";
export { TASK_STATES, FINAL_STATES, type TaskStatus } from "../functions/_shared/states.ts";
export type { Diagnostic, TestResults, ProgressUpdate, Severity, Stage } from "../functions/_shared/diagnostics/index.ts";
export type { Fleet, TaskPage, TaskSummary, WorkerSummary, QueueDepth, TaskChangedMessage, WorkerChangedMessage } from "../functions/_shared/monitoring/lists.ts";
export { userTopic, FLEET_TOPIC } from "../functions/_shared/monitoring/lists.ts";
