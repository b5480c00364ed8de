// Plan rows as Postgres returns them and the JSON GET /plans/:id answers with. Pure.
import { planTopic } from "./spec.ts";

export const STEP_STATES = ["waiting", "queued", "running", "succeeded", "failed", "stopped", "cancelled"] as const;
export type StepStatus = (typeof STEP_STATES)[number];
export type PlanStatus = "running" | "succeeded" | "failed" | "cancelled";

export interface PlanRow {
  id: string;
  owner: string | null;
  name: string | null;
  workspaceId: string;
  status: PlanStatus;
  reason: string | null;
  stepCount: number;
  createdAt: Date;
  finishedAt: Date | null;
}

/** A step joined with its current run (task) and that run's diagnostics and test results. */
export interface StepRow {
  name: string;
  position: number;
  dependsOn: string[];
  spec: { command?: string; argv?: string[]; requirements?: { kind: string; labels: string[] } };
  stage: string | null;
  priority: number;
  status: StepStatus;
  taskId: string | null;
  runs: number;
  reason: string | null;
  taskStatus: string | null;
  taskPriority: number | null;
  exitCode: number | null;
  attempt: number | null;
  startedAt: Date | null;
  finishedAt: Date | null;
  diagnosticCount: number | null;
  diagnostics: Record<string, unknown>[] | null;
  testResults: Record<string, unknown> | null;
}

const iso = (d: Date | null) => (d ? d.toISOString() : null);

export function stepView(s: StepRow) {
  return {
    name: s.name,
    status: s.status,
    dependsOn: s.dependsOn,
    command: s.spec.command ?? null,
    argv: s.spec.argv ?? null,
    requirements: s.spec.requirements ?? { kind: "basic", labels: [] },
    stage: s.stage,
    priority: s.priority,
    reason: s.reason,
    runs: s.runs,
    taskId: s.taskId,
    task: s.taskId
      ? {
          status: s.taskStatus,
          priority: s.taskPriority,
          exitCode: s.exitCode,
          attempt: s.attempt,
          startedAt: iso(s.startedAt),
          finishedAt: iso(s.finishedAt),
          durationMs: s.startedAt && s.finishedAt ? s.finishedAt.getTime() - s.startedAt.getTime() : null,
        }
      : null,
    diagnostics: { count: s.diagnosticCount ?? 0, first: s.diagnostics ?? [] },
    testResults: s.testResults,
  };
}
export type StepView = ReturnType<typeof stepView>;

/** What passed, what failed and why, what never ran: counts, names and one line of text. */
export function planSummary(steps: StepView[]) {
  const named = (status: StepStatus) => steps.filter((s) => s.status === status).map((s) => s.name);
  const counts = Object.fromEntries(["waiting", "queued", "running", "succeeded", "failed", "stopped", "cancelled"].map((k) => [k, 0])) as Record<StepStatus, number>;
  for (const s of steps) counts[s.status]++;
  const failed = steps.filter((s) => s.status === "failed").map((s) => ({ step: s.name, reason: s.reason, diagnostics: s.diagnostics.count }));
  const parts = [`${counts.succeeded} of ${steps.length} steps passed`];
  for (const f of failed) parts.push(`${f.step} failed (${f.reason ?? "no reason"}${f.diagnostics ? `; ${f.diagnostics} diagnostic(s)` : ""})`);
  const stopped = named("stopped");
  if (stopped.length) parts.push(`not run: ${stopped.join(", ")}`);
  const cancelled = named("cancelled");
  if (cancelled.length) parts.push(`cancelled: ${cancelled.join(", ")}`);
  const pending = [...named("waiting"), ...named("queued"), ...named("running")];
  if (pending.length) parts.push(`pending: ${pending.join(", ")}`);
  return { total: steps.length, counts, passed: named("succeeded"), failed, stopped, cancelled, text: parts.join("; ") };
}

export function planView(p: PlanRow, steps: StepRow[]) {
  const views = steps.map(stepView);
  return {
    id: p.id,
    name: p.name,
    status: p.status,
    reason: p.reason,
    workspaceId: p.workspaceId,
    topic: planTopic(p.id),
    createdAt: iso(p.createdAt),
    finishedAt: iso(p.finishedAt),
    steps: views,
    summary: planSummary(views),
  };
}
export type PlanView = ReturnType<typeof planView>;

/** What POST /files (and DELETE /files/<path>) answer. */
export interface ChangeResult {
  workspaceId: string;
  revision: number;
  bytes: number;
  files: number;
  changed: string[];
  /**
   * Every step the change re-armed: `queued` (taskId of its new run), `waiting` for a re-armed
   * dependency, or `stopped` behind a dependency that failed and was not re-armed.
   */
  reruns: { planId: string; step: string; status: "queued" | "waiting" | "stopped"; taskId: string | null }[];
}
