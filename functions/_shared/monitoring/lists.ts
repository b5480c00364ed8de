// Live lists for dashboards: the paging cursor and the shapes that GET /tasks,
// GET /fleet and the `user:<uid>` / `fleet` topics carry (built in SQL by cogo.task_summary and
// cogo.worker_summary, migrations/20261126000700_dashboard_and_fleet.sql).
import type { TaskStatus } from "../states.ts";
import type { WorkerRow } from "../views.ts";

export const USER_TOPIC_PREFIX = "user:";
/** Private topic of one user's tasks: event `task_changed` on creation and every status change. */
export const userTopic = (userId: string) => USER_TOPIC_PREFIX + userId;
/** Private topic of the fleet, readable by any signed-in user: event `worker_changed` (no host details). */
export const FLEET_TOPIC = "fleet";

export interface TaskSummary {
  id: string;
  status: TaskStatus;
  /** The command, or argv joined by spaces; at most 500 characters. */
  command: string;
  priority: number;
  kind: string;
  labels: string[];
  stdin: "closed" | "pipe";
  attempt: number;
  maxAttempts: number;
  workerId: string | null;
  planId: string | null;
  step: string | null;
  /** A command: the persistent sandbox it runs in; null for a task. */
  sandboxId: string | null;
  exitCode: number | null;
  signal: string | null;
  reason: string | null;
  cancelRequested: boolean;
  outputSeq: number;
  /** The task's event seq: of two copies of a task, the higher version is newer. */
  version: number;
  createdAt: string;
  startedAt: string | null;
  finishedAt: string | null;
  updatedAt: string;
}

/** Payload of `task_changed` on `user:<uid>`. */
export interface TaskChangedMessage {
  task: TaskSummary;
  previous: TaskStatus | null;
}

export interface QueueDepth {
  kind: string;
  priority: number;
  count: number;
}

/**
 * A worker with its load (GET /workers, GET /fleet, the `fleet` topic), as every signed-in user
 * sees it: cogo.worker_public_summary(), migrations/20261126000700_dashboard_and_fleet.sql.
 */
export interface WorkerSummary {
  id: string;
  kind: string;
  labels: string[];
  capacity: number;
  /** Tasks the worker holds now (claimed, running, blocked, recovering). */
  running: number;
  /** Memory its tasks' limits may add up to (host admission); null: registered without a budget. */
  memoryBudgetBytes: number | null;
  /** Cores its tasks share; null when not registered. */
  cpuBudget: number | null;
  status: WorkerRow["status"];
  leaseMs: number;
  lastHeartbeatAt: string;
  createdAt: string;
  /** Service role only, as the rest below (cogo.worker_summary): by default `<hostname>-<pid>`. */
  name?: string;
  version?: string | null;
  /** hostname, pid, cpus, memoryBytes, sandbox (limits, cgroups, toolchain with versions). */
  host?: Record<string, unknown>;
}

/** Payload of `worker_changed` on `fleet`: the worker after the change and the queue at that moment. */
export interface WorkerChangedMessage {
  worker: WorkerSummary;
  queue: QueueDepth[];
  /** Database clock when sent: clients measure heartbeat age against it, not their own clock. */
  now: string;
}

export interface Fleet {
  now: string;
  workers: WorkerSummary[];
  queue: QueueDepth[];
  health: {
    liveWorkers: number;
    queueDepth: number;
    running: number;
    oldestQueuedAgeMs: number;
    /** The caller's own (the service role: every tenant's) queued tasks no live worker serves. */
    queuedWithoutWorker: { kind: string; labels: string[]; count: number }[];
    noWorkerFailAfterMs: number;
  };
  db: { ok: boolean; latencyMs: number };
  function: { runtime: string };
}

export interface TaskPage {
  tasks: TaskSummary[];
  /** Pass as `cursor` for the next (older) page; null on the last page. */
  next: string | null;
}

/** Where a page ends: the last task's creation time as Postgres prints it (µs kept) and its id. */
export interface Cursor {
  createdAt: string;
  id: string;
}

export function encodeCursor(c: Cursor): string {
  return btoa(JSON.stringify([c.createdAt, c.id]))
    .replace(/\+/g, "-")
    .replace(/\//g, "_")
    .replace(/=+$/, "");
}

/** timestamptz as Postgres prints it: `2026-11-25 06:44:46.123456+00`. */
const TIMESTAMP_RE = /^\d{4}-\d{2}-\d{2}[ T]\d{2}:\d{2}:\d{2}(\.\d{1,6})?([+-]\d{2}(:?\d{2})?|Z)$/;
export const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

export function decodeCursor(s: string): Cursor | null {
  try {
    const [createdAt, id] = JSON.parse(atob(s.replace(/-/g, "+").replace(/_/g, "/"))) as unknown[];
    if (typeof createdAt !== "string" || typeof id !== "string" || !UUID_RE.test(id)) return null;
    if (!TIMESTAMP_RE.test(createdAt)) return null;
    return { createdAt, id };
  } catch {
    return null;
  }
}
