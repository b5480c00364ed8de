// Typed calls to the block and recovery SQL functions (migrations/*_blocks_and_recovery.sql).
// All writes are fenced like the rest of the worker's: a lost lease is a LeaseLostError.
import type { Sql } from "postgres";
import { parseTaskEvent, type BlockDetected, type RecoveryFailed, type RecoveryGaveUp, type RecoveryStarted, type RecoverySucceeded } from "../../functions/_shared/events.ts";
import type { PlanInput } from "../../functions/_shared/recovery/planner.ts";
import { fenced, type Lease } from "../db.ts";
import type { CommandHistory } from "./history.ts";

export class BlockQueries {
  constructor(private readonly sql: Sql) {}

  async reportBlock(l: Lease, data: BlockDetected): Promise<void> {
    await fenced(() => this.sql`select 1 from cogo.report_block(${l.taskId}, ${l.attempt}, ${l.workerId}, ${this.sql.json(data as never)})`, { retry: false });
  }

  async beginRecovery(l: Lease, data: RecoveryStarted): Promise<void> {
    await fenced(() => this.sql`select cogo.begin_recovery(${l.taskId}, ${l.attempt}, ${l.workerId}, ${this.sql.json(data as never)})`, { retry: false });
  }

  /** recovery_succeeded (ok) or recovery_failed; `resume` puts a blocked task back to running. */
  async endRecovery(l: Lease, ...[ok, data, resume]: [true, RecoverySucceeded, boolean] | [false, RecoveryFailed, boolean]): Promise<void> {
    await fenced(() => this.sql`select cogo.end_recovery(${l.taskId}, ${l.attempt}, ${l.workerId}, ${ok}, ${this.sql.json(data as never)}, ${resume})`, { retry: false });
  }

  /** recovery_gave_up: the give_up step; the SQL adds what the task's recoveries tried before. */
  async giveUp(l: Lease, data: Omit<RecoveryGaveUp, "tried">): Promise<void> {
    await fenced(() => this.sql`select cogo.give_up_recovery(${l.taskId}, ${l.attempt}, ${l.workerId}, ${this.sql.json(data as never)})`, { retry: false });
  }

  /** What earlier blocks of this task and recoveries already tried (all attempts), for the planner. */
  async history(taskId: string): Promise<Pick<PlanInput, "previousBlocks" | "previousActions">> {
    const rows = await this.sql<{ type: string; data: unknown }[]>`
      select type, data from public.task_events
       where task_id = ${taskId} and type in ('block_detected', 'recovery_started') order by seq`;
    const out: Pick<PlanInput, "previousBlocks" | "previousActions"> = { previousBlocks: [], previousActions: [] };
    for (const e of rows.map(parseTaskEvent)) {
      if (e.type === "block_detected") out.previousBlocks.push(e.data.reason);
      else if (e.type === "recovery_started") out.previousActions.push({ action: e.data.action, ...(e.data.stdin ? { stdin: e.data.stdin } : {}) });
    }
    return out;
  }

  /** Whether a live worker other than this one could run the task (the claim's own test). */
  async otherWorkers(taskId: string, workerId: string): Promise<boolean> {
    const [row] = await this.sql<{ ok: boolean }[]>`
      select cogo.another_worker_can_take(t, ${workerId}) as ok from public.tasks t where t.id = ${taskId}`;
    return row?.ok ?? false;
  }

  /** The command's learned stretches (migration 20261208000200), or null when it never succeeded here. */
  async commandHistory(owner: string | null, key: string): Promise<CommandHistory | null> {
    const [row] = await this.sql<CommandHistory[]>`
      select runs, max_busy_ms, max_quiet_ms from cogo.command_history
       where owner is not distinct from ${owner}::uuid and command_key = ${key}`;
    return row ?? null;
  }

  /** A successful run's longest stretches, folded into the command's row. */
  async recordSuccess(owner: string | null, key: string, s: { maxBusyMs: number; maxQuietMs: number }): Promise<void> {
    await this.sql`select cogo.record_command_history(${owner}::uuid, ${key}, ${s.maxBusyMs}, ${s.maxQuietMs})`;
  }
}
