export { createSandboxClient, type SandboxClient, type Health, type TaskListFilter } from "./client.ts";
export { TaskHandle, type TaskCallbacks, type TaskResult, type HandleOptions } from "./handle.ts";
export * from "./errors.ts";
export type { ExecuteRequest, OutputChunk, OutputMessage, Limits } from "../functions/_shared/schemas.ts";
export {
  parseTaskEvent,
  parsePlanEvent,
  parseTaskEventMessage,
  parsePlanEventMessage,
  TASK_EVENT_TYPES,
  PLAN_EVENT_TYPES,
  type TaskEvent,
  type TaskEventType,
  type TaskEventOf,
  type TaskEventData,
  type TaskEventMessage,
  type RawTaskEventMessage,
  type PlanEvent,
  type PlanEventType,
  type PlanEventOf,
  type PlanEventData,
  type PlanEventMessage,
  type RawPlanEventMessage,
  type UnknownEvent,
  type TaskStatusEvent,
  type ResourceSample,
  type BlockDetected,
  type RecoveryStarted,
  type RecoverySucceeded,
  type RecoveryFailed,
  type RecoveryGaveUp,
  type StepStatusEvent,
  type PlanStatusEvent,
} from "../functions/_shared/events.ts";
export type { TaskView, WorkerView } from "../functions/_shared/views.ts";
export type { ArtifactList, ArtifactView } from "../functions/_shared/artifacts/views.ts";
export { TASK_STATES, FINAL_STATES, type TaskStatus } from "../functions/_shared/states.ts";
export type { Diagnostic, TestResults, ProgressUpdate, Severity, Stage } from "../functions/_shared/diagnostics/index.ts";
export type { Fleet, TaskPage, TaskSummary, WorkerSummary, QueueDepth, TaskChangedMessage, WorkerChangedMessage } from "../functions/_shared/monitoring/lists.ts";
export { userTopic, FLEET_TOPIC } from "../functions/_shared/monitoring/lists.ts";
export { LiveSandbox, CommandExitError, type CommandOptions, type CommandResult } from "./sandboxes.ts";
export { PtyHandle, type PtyCreateOptions, type PtyResult, type PtySize } from "./pty.ts";
export type { CreateSandboxRequest, CommandRequest } from "../functions/_shared/schemas.ts";
export type { SandboxView } from "../functions/_shared/views.ts";
export { SANDBOX_STATES, type SandboxStatus } from "../functions/_shared/states.ts";
export { PlanHandle, PlanWaitTimeout, type WorkspaceFile } from "./plans.ts";
export type { PlanRequest, WriteFilesRequest } from "../functions/_shared/plans/spec.ts";
export type { ChangeResult, PlanView, StepView } from "../functions/_shared/plans/view.ts";
export { AnalysisFailedError, type AnalysisProgress, type ResultsQuery } from "./analysis.ts";
export type { AnalyzeRequest } from "../functions/_shared/analysis/schemas.ts";
export type { AnalysisView } from "../functions/_shared/analysis/views.ts";
export { formatBytes, renderUsage, type RateClass, type TenantLimits, type TenantLimitsView, type UsageReport } from "../functions/_shared/quotas/usage.ts";
