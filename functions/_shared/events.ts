// The event contract: every event a task (`public.task_events`, topic `task:<id>`) or a plan
// (`public.plan_events`, topic `plan:<id>`) carries, as one zod discriminated union on `type`.
// Writers: SQL (task_status; worker_lost blocks and their recovery; a plan's step_status,
// plan_status, progress_update and forwarded diagnostics/test results), the worker (diagnostic,
// test_results, progress_update from output lines; resource_sample, block_detected and
// recovery_* from the block supervisor). Readers: the SDK, the dashboard, the CLI.
//
// Two readings of the same shapes:
//   * strict (TaskEventSchema, PlanEventSchema, checkTaskEvent): no field missing, none extra. The
//     test of the contract (tests/diagnostics/event-union.test.ts) holds every stored row to it,
//     so an event written without a schema here fails it.
//   * tolerant (parseTaskEvent, parsePlanEvent): what clients use. Extra fields are kept, and an
//     event this build does not know (a newer server's type, or a shape it cannot read) becomes
//     `{ type: "unknown", rawType, data, error }` instead of an exception.
// Named imports, not `z`: the dashboard's bundle then carries only the parts used (~70 KB, not ~450 KB).
import {
  array,
  boolean,
  discriminatedUnion,
  enum as enumOf,
  literal,
  looseObject,
  number,
  string,
  strictObject,
  type core,
  type output,
  type ZodError,
  type ZodObject,
  type ZodOptional,
  type ZodType,
} from "zod";
import { SEVERITIES, STAGES, type Diagnostic, type ProgressUpdate, type TestResults } from "./diagnostics/types.ts";
import type { BlockReason, RecoveryAction } from "./recovery/options.ts";
import { SANDBOX_STATES, TASK_STATES } from "./states.ts";

/** Mirrors STEP_STATES (plans/view.ts) and PlanStatus; kept here so clients need no plan code. */
const STEP_STATES = ["waiting", "queued", "running", "succeeded", "failed", "stopped", "cancelled"] as const;
const PLAN_STATES = ["running", "succeeded", "failed", "cancelled"] as const;

/**
 * Mirrors BLOCK_REASONS and RECOVERY_ACTIONS (recovery/options.ts; the compiler checks below that
 * they stay equal). Not imported: that module pulls all of zod into the dashboard's bundle.
 */
const BLOCK_REASONS = ["timeout", "infinite_loop", "waiting_for_input", "idle_stall", "deadlock", "memory_exhausted", "fork_bomb", "output_flood", "worker_lost"] as const;
const RECOVERY_ACTIONS = ["terminate", "retry", "reassign", "feed_stdin", "raise_limit", "alternative_command", "give_up"] as const;

/** Block reasons the worker's monitor (or a sandbox limit) finds; `worker_lost` is found in SQL. */
const MONITOR_BLOCK_REASONS = BLOCK_REASONS.filter((r): r is Exclude<(typeof BLOCK_REASONS)[number], "worker_lost"> => r !== "worker_lost");

// ── shapes, built once per reading ───────────────────────────────────────────────────────────
type Mode = "strict" | "loose";

function shapes(mode: Mode) {
  // Both readings have the strict one's output type; the tolerant one only keeps extra keys.
  const obj = <S extends core.$ZodLooseShape>(shape: S) => (mode === "strict" ? strictObject(shape) : looseObject(shape)) as unknown as ZodObject<S, core.$strict>;
  const int = () => number().int();
  const count = () => number().int().nonnegative();
  const text = () => string();

  const taskStatus = obj({
    status: enumOf(TASK_STATES),
    previous: enumOf(TASK_STATES),
    attempt: count(),
    workerId: text().optional(),
    exitCode: int().optional(),
    signal: text().optional(),
    reason: text().optional(),
  });

  const progress = obj({
    percentage: number().min(0).max(100).nullable(),
    stage: enumOf(STAGES),
    message: text(),
    etaMs: number().nonnegative().nullable(),
    source: enumOf(["plan", "tool", "protocol"]),
  });

  const diagnosticShape = {
    tool: text(),
    file: text().nullable(),
    line: int().nullable(),
    column: int().nullable(),
    severity: enumOf(SEVERITIES),
    code: text().nullable(),
    message: text(),
  };
  const testResultsShape = { tool: text(), passed: count(), failed: count(), skipped: count(), failures: array(text()) };

  const resourceShape = {
    cpuPercent: number().nonnegative(),
    cpuMs: count(),
    rssBytes: count(),
    processes: count(),
    threads: count(),
    outputBytes: count(),
    wallMs: count(),
    memoryLimitBytes: count().nullable(),
    processLimit: count().nullable(),
  };
  const resourceSample = obj(resourceShape);

  const threadWait = obj({
    pid: count(),
    tid: count(),
    comm: text(),
    state: text(),
    wchan: text(),
    syscall: int().nullable(),
    kind: enumOf(["stdin", "output", "lock", "child", "other", "running"]),
  });

  const blockDetected = discriminatedUnion("reason", [
    // The worker's monitor, or a limit the sandbox enforced (then `processes` is empty).
    obj({
      reason: enumOf(MONITOR_BLOCK_REASONS),
      durationMs: count(),
      usage: resourceSample,
      recoverable: boolean(),
      evidence: obj({ summary: text(), lastOutput: array(text()), processes: array(threadWait) }),
      /** The recovery actions the planner chose, in order. */
      plan: array(enumOf(RECOVERY_ACTIONS)),
    }),
    // cogo.publish_worker_lost: the lease ran out; usage is what the task row had (usually none).
    obj({
      reason: literal("worker_lost"),
      durationMs: count(),
      usage: obj(
        Object.fromEntries(Object.entries(resourceShape).map(([k, v]) => [k, v.optional()])) as { [K in keyof typeof resourceShape]: ZodOptional<(typeof resourceShape)[K]> },
      ),
      recoverable: boolean(),
      evidence: obj({
        workerId: text(),
        workerName: text().nullable(),
        lastHeartbeatAt: text().nullable(),
        leaseExpiredAt: text(),
      }),
    }),
  ]);

  const recoveryReason = enumOf([...BLOCK_REASONS, "manual"]);
  const raised = obj({ wallTimeMs: count().optional(), memoryBytes: count().optional() });
  const stdinKind = enumOf(["answer", "eof"]);
  const recoveryStarted = obj({
    action: enumOf(RECOVERY_ACTIONS),
    attempt: count(),
    reason: recoveryReason,
    stdin: stdinKind.optional(),
    delayMs: count().optional(),
    limits: raised.optional(),
  });
  const recoverySucceeded = obj({
    action: enumOf(RECOVERY_ACTIONS),
    attempt: count(),
    reason: recoveryReason,
    message: text(),
    stdin: stdinKind.optional(),
    limits: raised.optional(),
  });
  const recoveryFailed = obj({
    /** Absent when a recover request without an action was refused. */
    action: enumOf(RECOVERY_ACTIONS).optional(),
    attempt: count(),
    reason: recoveryReason,
    message: text().optional(),
    /** give_up: why the task ends (null when a lost worker's task had no reason). */
    diagnosis: text().nullable().optional(),
    stdin: stdinKind.optional(),
    limits: raised.optional(),
  });

  /** A recovery that stops trying (the give_up step): why the task ends, and what was tried before. */
  const recoveryGaveUp = obj({
    action: literal("give_up"),
    attempt: count(),
    reason: recoveryReason,
    /** Why the task ends (null when a lost worker's task had no reason). */
    diagnosis: text().nullable(),
    /** Actions this task's recoveries started before, all attempts, first use first. */
    tried: array(enumOf(RECOVERY_ACTIONS)),
  });

  const stepStatus = obj({
    step: text(),
    status: enumOf(STEP_STATES),
    previous: enumOf(STEP_STATES),
    taskId: text().optional(),
    run: count().optional(),
    priority: int().optional(),
    exitCode: int().optional(),
    reason: text().optional(),
  });
  const planStatus = obj({
    status: enumOf(PLAN_STATES),
    previous: enumOf(PLAN_STATES).optional(),
    reason: text().optional(),
    steps: count().optional(),
  });
  const fromStep = { step: text(), taskId: text() };
  /** A persistent sandbox's status, on its init task and on `sandbox:<id>` (cogo.sandbox_status_event). */
  const sandboxStatus = obj({
    sandboxId: text(),
    status: enumOf(SANDBOX_STATES),
    /** Absent on the first event (the sandbox was created `starting`). */
    previous: enumOf(SANDBOX_STATES).optional(),
    reason: text().optional(),
    workerId: text().optional(),
    expiresAt: text(),
    idleTimeoutMs: count(),
  });

  const ev = <T extends string, D extends ZodType>(type: T, data: D) => strictObject({ type: literal(type), data });
  return {
    task: discriminatedUnion("type", [
      ev("task_status", taskStatus),
      ev("progress_update", progress),
      ev("diagnostic", obj(diagnosticShape)),
      ev("test_results", obj(testResultsShape)),
      ev("resource_sample", resourceSample),
      ev("block_detected", blockDetected),
      ev("recovery_started", recoveryStarted),
      ev("recovery_succeeded", recoverySucceeded),
      ev("recovery_failed", recoveryFailed),
      ev("recovery_gave_up", recoveryGaveUp),
      ev("sandbox_status", sandboxStatus),
    ]),
    plan: discriminatedUnion("type", [
      ev("plan_status", planStatus),
      ev("step_status", stepStatus),
      ev("progress_update", progress),
      ev("diagnostic", obj({ ...diagnosticShape, ...fromStep })),
      ev("test_results", obj({ ...testResultsShape, ...fromStep })),
    ]),
  };
}

const strict = shapes("strict");
const loose = shapes("loose");

/** `{type, data}` of every task event, strictly (no field missing, none extra). */
export const TaskEventSchema = strict.task;
/** `{type, data}` of every plan event, strictly. */
export const PlanEventSchema = strict.plan;

// ── types ────────────────────────────────────────────────────────────────────────────────────
export type TaskEvent = output<typeof TaskEventSchema>;
export type TaskEventType = TaskEvent["type"];
export type TaskEventOf<T extends TaskEventType> = Extract<TaskEvent, { type: T }>;
export type TaskEventData<T extends TaskEventType> = TaskEventOf<T>["data"];

export type PlanEvent = output<typeof PlanEventSchema>;
export type PlanEventType = PlanEvent["type"];
export type PlanEventOf<T extends PlanEventType> = Extract<PlanEvent, { type: T }>;
export type PlanEventData<T extends PlanEventType> = PlanEventOf<T>["data"];

export const TASK_EVENT_TYPES = TaskEventSchema.options.map((o) => o.shape.type.value) as readonly TaskEventType[];
export const PLAN_EVENT_TYPES = PlanEventSchema.options.map((o) => o.shape.type.value) as readonly PlanEventType[];

/** Named data shapes, for code that builds or reads one kind. */
export type TaskStatusEvent = TaskEventData<"task_status">;
export type ResourceSample = TaskEventData<"resource_sample">;
export type BlockDetected = TaskEventData<"block_detected">;
export type RecoveryStarted = TaskEventData<"recovery_started">;
export type RecoverySucceeded = TaskEventData<"recovery_succeeded">;
export type RecoveryFailed = TaskEventData<"recovery_failed">;
export type RecoveryGaveUp = TaskEventData<"recovery_gave_up">;
export type SandboxStatusEvent = TaskEventData<"sandbox_status">;
export type StepStatusEvent = PlanEventData<"step_status">;
export type PlanStatusEvent = PlanEventData<"plan_status">;

/**
 * An event this build cannot read: a type it does not know (a newer server's) or a known type
 * whose data does not fit. Clients skip or log it; `error` says why.
 */
export interface UnknownEvent {
  type: "unknown";
  rawType: string;
  data: unknown;
  error: string;
}

/** What every task event message carries besides `type` and `data`. */
export interface TaskEventEnvelope {
  taskId: string;
  seq: number;
  attempt: number;
  timestamp: string;
}
/** A task event as stored and broadcast, before it is read. */
export type RawTaskEventMessage = TaskEventEnvelope & { type: string; data: unknown };
/** A task event as clients get it: narrow on `type` (`e.type === "block_detected"` types `e.data`). */
export type TaskEventMessage = TaskEventEnvelope & (TaskEvent | UnknownEvent);

export interface PlanEventEnvelope {
  planId: string;
  seq: number;
  timestamp: string;
}
export type RawPlanEventMessage = PlanEventEnvelope & { type: string; data: unknown };
export type PlanEventMessage = PlanEventEnvelope & (PlanEvent | UnknownEvent);

// ── reading ──────────────────────────────────────────────────────────────────────────────────
/** "type: data.usage.rssBytes: expected number, received string; …" */
function describe(type: string, error: ZodError): string {
  return `${type}: ${error.issues.map((i) => `${i.path.length ? i.path.join(".") : "event"}: ${i.message}`).join("; ")}`;
}

function read<E>(schema: ZodType<unknown>, known: readonly string[], row: { type: string; data: unknown }): E | UnknownEvent {
  const rawType = String(row?.type);
  if (!known.includes(rawType)) return { type: "unknown", rawType, data: row?.data, error: `unknown event type ${JSON.stringify(rawType)}` };
  const r = schema.safeParse({ type: rawType, data: row.data });
  return r.success ? (r.data as E) : { type: "unknown", rawType, data: row.data, error: describe(rawType, r.error) };
}

/** Reads a task event tolerantly: a typed event, or an UnknownEvent (never throws). */
export function parseTaskEvent(row: { type: string; data: unknown }): TaskEvent | UnknownEvent {
  return read<TaskEvent>(loose.task, TASK_EVENT_TYPES, row);
}

/** Reads a plan event tolerantly: a typed event, or an UnknownEvent (never throws). */
export function parsePlanEvent(row: { type: string; data: unknown }): PlanEvent | UnknownEvent {
  return read<PlanEvent>(loose.plan, PLAN_EVENT_TYPES, row);
}

/** A stored or broadcast task event message with its `type`/`data` read (envelope kept). */
export function parseTaskEventMessage(msg: RawTaskEventMessage): TaskEventMessage {
  return { taskId: msg.taskId, seq: msg.seq, attempt: msg.attempt, timestamp: msg.timestamp, ...parseTaskEvent(msg) };
}

export function parsePlanEventMessage(msg: RawPlanEventMessage): PlanEventMessage {
  return { planId: msg.planId, seq: msg.seq, timestamp: msg.timestamp, ...parsePlanEvent(msg) };
}

export type CheckResult<E> = { ok: true; event: E } | { ok: false; error: string };

/** Holds a task event to the contract strictly (unknown type, missing or extra field: an error naming it). */
export function checkTaskEvent(row: { type: string; data: unknown }): CheckResult<TaskEvent> {
  const r = TaskEventSchema.safeParse({ type: row.type, data: row.data });
  return r.success ? { ok: true, event: r.data } : { ok: false, error: describe(String(row.type), r.error) };
}

export function checkPlanEvent(row: { type: string; data: unknown }): CheckResult<PlanEvent> {
  const r = PlanEventSchema.safeParse({ type: row.type, data: row.data });
  return r.success ? { ok: true, event: r.data } : { ok: false, error: describe(String(row.type), r.error) };
}

// ── writing ──────────────────────────────────────────────────────────────────────────────────
/**
 * A task event, checked by the compiler: `taskEvent("resource_sample", usage)`. What the worker
 * hands to cogo.append_event(s). (The block and recovery SQL functions take only the data: type
 * it as TaskEventData<"block_detected">, etc.)
 */
export function taskEvent<T extends TaskEventType>(type: T, data: TaskEventData<T>): TaskEventOf<T> {
  return { type, data } as TaskEventOf<T>;
}

/** Builders of the data the worker writes, one per type; each returns its argument, typed. */
export const eventData = {
  resourceSample: (d: ResourceSample) => d,
  blockDetected: (d: BlockDetected) => d,
  recoveryStarted: (d: RecoveryStarted) => d,
  recoverySucceeded: (d: RecoverySucceeded) => d,
  recoveryFailed: (d: RecoveryFailed) => d,
  recoveryGaveUp: (d: RecoveryGaveUp) => d,
} as const;

// The diagnostics module's interfaces and this contract must stay one shape.
type Same<A, B> = [A] extends [B] ? ([B] extends [A] ? true : false) : false;
const sameShapes: [
  Same<(typeof BLOCK_REASONS)[number], BlockReason>,
  Same<(typeof RECOVERY_ACTIONS)[number], RecoveryAction>,
  Same<TaskEventData<"diagnostic">, Diagnostic>,
  Same<TaskEventData<"test_results">, TestResults>,
  Same<TaskEventData<"progress_update">, ProgressUpdate>,
] = [true, true, true, true, true];
void sameShapes;
