// Rows as Postgres returns them (camelCased columns) and the JSON the API answers with.
import type { BlockDetectionOptions, RecoveryOptions } from "./recovery/options.ts";
import type { Limits } from "./schemas.ts";
import type { SandboxStatus, TaskStatus } from "./states.ts";

export interface TaskRow {
  id: string;
  owner: string | null;
  planId: string | null;
  step: string | null;
  command: string | null;
  argv: string[] | null;
  files: { path: string; content: string; encoding: "utf8" | "base64"; executable: boolean }[];
  env: Record<string, string>;
  stdinMode: "closed" | "pipe";
  priority: number;
  requiredKind: string;
  requiredLabels: string[];
  /** LimitsSchema's fields: numbers, and `onOutputLimit`. */
  limits: Limits;
  timeoutMs: number;
  status: TaskStatus;
  attempt: number;
  maxAttempts: number;
  workerId: string | null;
  leaseExpiresAt: Date | null;
  cancelRequestedAt: Date | null;
  exitCode: number | null;
  signal: string | null;
  reason: string | null;
  usage: Record<string, unknown> | null;
  result: Record<string, unknown> | null;
  outputSeq: string;
  eventSeq: string;
  stdinSeq: string;
  idempotencyKey: string | null;
  blockDetection: Partial<BlockDetectionOptions>;
  recovery: RecoveryOptions;
  excludedWorkers: string[];
  /** Paths/globs collected from the workspace after exit (migration 20261125000700). */
  artifactPatterns: string[];
  /** Asked for network (granted only by a worker with --allow-network). */
  network: boolean;
  /** The system job this task is (migration 20261125001300); null for every user task. */
  internal: "analysis-clone" | "analysis-batch" | "sandbox-init" | null;
  /** A command: the persistent sandbox it runs in (migration 20261207000100); null for a task. */
  sandboxId: string | null;
  /** A command that keeps running in the background (a dev server). */
  background: boolean;
  /** A command's working directory inside its sandbox. */
  cwd: string | null;
  /** A command run on a terminal: its size, the latest resize (migration 20261207000300); null otherwise. */
  pty: { cols: number; rows: number } | null;
  createdAt: Date;
  claimedAt: Date | null;
  startedAt: Date | null;
  finishedAt: Date | null;
  /** When retention deleted its output, events, stdin, artifacts, files and env (migration 20261206000300). */
  purgedAt: Date | null;
}

/** A row of public.sandboxes (migration 20261207000100), camelCased. */
export interface SandboxRow {
  id: string;
  owner: string | null;
  status: SandboxStatus;
  initTaskId: string;
  workerId: string | null;
  requiredKind: string;
  requiredLabels: string[];
  limits: Limits;
  network: boolean;
  env: Record<string, string>;
  metadata: Record<string, unknown>;
  idleTimeoutMs: number;
  maxLifetimeMs: number;
  lastActivityAt: Date;
  expiresAt: Date;
  readyAt: Date | null;
  stoppedAt: Date | null;
  reason: string | null;
  topic: string;
  createdAt: Date;
  updatedAt: Date;
}

export interface WorkerRow {
  id: string;
  name: string;
  kind: string;
  labels: string[];
  capacity: number;
  status: "online" | "draining" | "offline";
  leaseMs: number;
  version: string | null;
  host: Record<string, unknown>;
  /** Host admission (worker/budget.ts); null: registered without one, claims without admission. bigint/numeric: strings from postgres.js. */
  memoryBudgetBytes: string | null;
  cpuBudget: string | null;
  lastHeartbeatAt: Date;
  createdAt: Date;
}

const iso = (d: Date | null) => (d ? d.toISOString() : null);

/**
 * What the output, events and artifacts routes say about a task whose data retention deleted:
 * the time and a sentence, instead of an empty list that reads as "it printed nothing".
 */
export function purgedNotice(t: Pick<TaskRow, "id" | "finishedAt" | "purgedAt">): { at: string; message: string } | null {
  if (!t.purgedAt) return null;
  const days = t.finishedAt ? Math.round((t.purgedAt.getTime() - t.finishedAt.getTime()) / 86_400_000) : null;
  return {
    at: t.purgedAt.toISOString(),
    message: `task ${t.id}'s output, events, stdin and artifacts were deleted ${days === null ? "" : `${days} day${days === 1 ? "" : "s"} after it finished `}(retention); its status, exit code, reason and usage are kept`,
  };
}

export function taskView(t: TaskRow) {
  return {
    id: t.id,
    status: t.status,
    command: t.command,
    argv: t.argv,
    stdin: t.stdinMode,
    priority: t.priority,
    requirements: { kind: t.requiredKind, labels: t.requiredLabels },
    limits: t.limits,
    network: t.network,
    artifacts: t.artifactPatterns,
    timeoutMs: t.timeoutMs,
    planId: t.planId,
    step: t.step,
    /** A command: its persistent sandbox, working directory and whether it runs in the background. */
    sandboxId: t.sandboxId ?? null,
    cwd: t.cwd,
    background: t.background,
    attempt: t.attempt,
    maxAttempts: t.maxAttempts,
    workerId: t.workerId,
    exitCode: t.exitCode,
    signal: t.signal,
    reason: t.reason,
    usage: t.usage,
    result: t.result,
    outputSeq: Number(t.outputSeq),
    cancelRequested: t.cancelRequestedAt !== null,
    idempotencyKey: t.idempotencyKey,
    blockDetection: t.blockDetection,
    recovery: t.recovery,
    /** A command's terminal size if it runs on one (POST /sandboxes/:id/pty). */
    pty: t.pty ?? null,
    createdAt: iso(t.createdAt),
    claimedAt: iso(t.claimedAt),
    startedAt: iso(t.startedAt),
    finishedAt: iso(t.finishedAt),
    purgedAt: iso(t.purgedAt),
  };
}
export type TaskView = ReturnType<typeof taskView>;

/** GET /tasks/:id/status (the seed API's name): where the task is, without its spec. */
export function taskStatusView(t: TaskRow) {
  return {
    id: t.id,
    status: t.status,
    exitCode: t.exitCode,
    signal: t.signal,
    reason: t.reason,
    attempt: t.attempt,
    maxAttempts: t.maxAttempts,
    workerId: t.workerId,
    cancelRequested: t.cancelRequestedAt !== null,
    createdAt: iso(t.createdAt),
    claimedAt: iso(t.claimedAt),
    startedAt: iso(t.startedAt),
    finishedAt: iso(t.finishedAt),
  };
}
export type TaskStatusView = ReturnType<typeof taskStatusView>;

export function workerView(w: WorkerRow) {
  return {
    id: w.id,
    name: w.name,
    kind: w.kind,
    labels: w.labels,
    capacity: w.capacity,
    status: w.status,
    leaseMs: w.leaseMs,
    version: w.version,
    host: w.host,
    memoryBudgetBytes: w.memoryBudgetBytes === null ? null : Number(w.memoryBudgetBytes),
    cpuBudget: w.cpuBudget === null ? null : Number(w.cpuBudget),
    lastHeartbeatAt: iso(w.lastHeartbeatAt),
    createdAt: iso(w.createdAt),
  };
}
export type WorkerView = ReturnType<typeof workerView>;

/** A sandbox as the API returns it (GET /sandboxes/:id). */
export function sandboxView(s: SandboxRow) {
  const idleExpiresAt = new Date(s.lastActivityAt.getTime() + s.idleTimeoutMs);
  return {
    sandboxId: s.id,
    status: s.status,
    topic: s.topic,
    workerId: s.workerId,
    reason: s.reason,
    limits: s.limits,
    requirements: { kind: s.requiredKind, labels: s.requiredLabels },
    idleTimeoutMs: s.idleTimeoutMs,
    maxLifetimeMs: s.maxLifetimeMs,
    metadata: s.metadata,
    createdAt: s.createdAt,
    readyAt: s.readyAt,
    stoppedAt: s.stoppedAt,
    lastActivityAt: s.lastActivityAt,
    /** When it stops if no command runs until then (a running command moves it). */
    idleExpiresAt: idleExpiresAt < s.expiresAt ? idleExpiresAt : s.expiresAt,
    expiresAt: s.expiresAt,
  };
}
export type SandboxView = ReturnType<typeof sandboxView>;
