// Typed calls to the block and recovery SQL functions (migrations/*_block_detection_recovery.sql).
// All writes are fenced like the rest of the worker's: a lost lease is a LeaseLostError.
import type { Sql } from "postgres";
import type { BlockReason, RecoveryAction } from "../../functions/_shared/recovery/options.ts";
import type { PlanInput } from "../../functions/_shared/recovery/planner.ts";
import { fenced, type Lease } from "../db.ts";

export class BlockQueries {
  constructor(private readonly sql: Sql) {}

  async reportBlock(l: Lease, data: object): Promise<void> {
    await fenced(() => this.sql`select 1 from cogo.report_block(${l.taskId}, ${l.attempt}, ${l.workerId}, ${this.sql.json(data as never)})`, { retry: false });
  }

  async beginRecovery(l: Lease, data: object): Promise<void> {
    await fenced(() => this.sql`select cogo.begin_recovery(${l.taskId}, ${l.attempt}, ${l.workerId}, ${this.sql.json(data as never)})`, { retry: false });
  }

  async endRecovery(l: Lease, ok: boolean, data: object, resume: boolean): Promise<void> {
    await fenced(() => this.sql`select cogo.end_recovery(${l.taskId}, ${l.attempt}, ${l.workerId}, ${ok}, ${this.sql.json(data as never)}, ${resume})`, { retry: false });
  }

  /** What earlier blocks of this task and recoveries already tried (all attempts), for the planner. */
  async history(taskId: string): Promise<Pick<PlanInput, "previousBlocks" | "previousActions">> {
    const rows = await this.sql<{ type: string; data: { reason?: BlockReason; action?: RecoveryAction; stdin?: "answer" | "eof" } }[]>`
      select type, data from public.task_events
       where task_id = ${taskId} and type in ('block_detected', 'recovery_started') order by seq`;
    return {
      previousBlocks: rows.filter((r) => r.type === "block_detected").map((r) => r.data.reason!),
      previousActions: rows
        .filter((r) => r.type === "recovery_started")
        .map((r) => ({ action: r.data.action!, ...(r.data.stdin ? { stdin: r.data.stdin } : {}) })),
    };
  }

  /** Whether a live worker other than this one could run the task (the claim's own test). */
  async otherWorkers(taskId: string, workerId: string): Promise<boolean> {
    const [row] = await this.sql<{ ok: boolean }[]>`
      select cogo.another_worker_can_take(t, ${workerId}) as ok from public.tasks t where t.id = ${taskId}`;
    return row?.ok ?? false;
  }
}
