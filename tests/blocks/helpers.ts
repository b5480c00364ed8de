// Shared by the block tests: run a task through the full stack and read back its block and
// recovery events.
import type { ExecuteRequest } from "../../functions/_shared/schemas.ts";
import type { TaskResult } from "../../sdk/index.ts";
import { newUser, sql } from "../helpers/env.ts";

/** Tight windows so a test sees a block in seconds; the healthy corpus must pass under the same ones. */
export const FAST_DETECTION = {
  sampleIntervalMs: 200,
  infiniteLoopMs: 2000,
  idleStallMs: 2000,
  waitingForInputMs: 1000,
  deadlockMs: 1500,
  memoryMs: 500,
  forkBombMs: 300,
};

export interface TaskEvent {
  seq: number;
  attempt: number;
  type: string;
  data: Record<string, any>;
  createdAt: Date;
}

export async function eventsOf(taskId: string): Promise<TaskEvent[]> {
  return (await sql<TaskEvent[]>`select seq::int, attempt, type, data, created_at from public.task_events where task_id = ${taskId} order by seq`).map((e) => ({
    ...e,
    seq: Number(e.seq),
  }));
}

/** Block-related events in order, as short strings: "block_detected:infinite_loop", "recovery_started:retry", … */
export function story(events: TaskEvent[]): string[] {
  return events.filter((e) => e.type === "block_detected" || e.type.startsWith("recovery_")).map((e) => `${e.type}:${e.type === "block_detected" ? e.data.reason : e.data.action}`);
}

export async function runTask(spec: ExecuteRequest, user?: Awaited<ReturnType<typeof newUser>>): Promise<{ result: TaskResult; events: TaskEvent[] }> {
  const u = user ?? (await newUser());
  const handle = await u.sandbox.execute(spec);
  const result = await handle.result();
  return { result, events: await eventsOf(handle.taskId) };
}
