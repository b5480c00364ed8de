// Typed calls to the queue's SQL functions (migrations/*_lifecycle.sql; the net schema is schema.sql). Every write a
// worker makes about a task passes the attempt fence (worker/db.ts); a lost lease surfaces as
// LeaseLostError. Only an Attempt (worker/attempt.ts) ends a task: finish, release, re-queue.
import type { Sql, TransactionSql } from "postgres";
import type { RecoverySucceeded, TaskEvent } from "../functions/_shared/events.ts";
import type { FinalStatus } from "../functions/_shared/states.ts";
import type { SandboxRow, TaskRow, WorkerRow } from "../functions/_shared/views.ts";
import type { SandboxFileOp } from "../functions/_shared/sandbox-files.ts";
import { fenced, type Lease } from "./db.ts";
import type { Chunk } from "./stream/output-batcher.ts";

/** Bytes per row of cogo.sandbox_op_chunks: one large bytea value is about twice as slow through postgres.js. */
const OP_CHUNK_BYTES = 1024 * 1024;

/** A claimed file op of a held sandbox (cogo.sandbox_ops). */
export interface SandboxOpRow {
  id: string;
  sandboxId: string;
  op: SandboxFileOp;
  path: string;
  args: { recursive?: boolean };
}

export class Queue {
  constructor(readonly sql: Sql) {}

  /** Registers the worker; with a memory budget its claims are admitted against it (host admission). */
  async register(w: {
    name: string;
    kind: string;
    labels: string[];
    capacity: number;
    leaseMs: number;
    version: string;
    host: object;
    memoryBudgetBytes?: number;
    cpuBudget?: number;
  }): Promise<WorkerRow> {
    const [row] = await this.sql<WorkerRow[]>`
      select * from cogo.register_worker(${w.name}, ${w.kind}, ${w.labels}, ${w.capacity}, ${w.leaseMs}, ${w.version},
        ${this.sql.json(w.host as never)}, ${w.memoryBudgetBytes ?? null}, ${w.cpuBudget ?? null})`;
    return row!;
  }

  claim(workerId: string, max: number): Promise<TaskRow[]> {
    return this.sql<TaskRow[]>`select * from cogo.claim_tasks(${workerId}, ${max})`;
  }

  /** Commands of the ready sandboxes this worker holds (cogo.claim_sandbox_commands); never plain tasks. */
  claimSandboxCommands(workerId: string, max: number): Promise<TaskRow[]> {
    return this.sql<TaskRow[]>`select * from cogo.claim_sandbox_commands(${workerId}, ${max})`;
  }

  /** File ops on the ready sandboxes this worker holds (cogo.claim_sandbox_ops): pending → running. */
  claimSandboxOps(workerId: string, max: number): Promise<SandboxOpRow[]> {
    return this.sql<SandboxOpRow[]>`select id::text, sandbox_id, op, path, args from cogo.claim_sandbox_ops(${workerId}, ${max})`;
  }

  /** A claimed op's input bytes (a write's body, a tar to extract), read as its 1 MiB chunks. */
  async sandboxOpInput(workerId: string, opId: string): Promise<Buffer> {
    const rows = await this.sql<{ data: Buffer }[]>`select data from cogo.sandbox_op_input(${workerId}, ${opId}::bigint) as data`;
    return Buffer.concat(rows.map((r) => r.data));
  }

  /**
   * Ends a claimed op with its outcome and output (written as 1 MiB chunks, in one transaction
   * with the outcome); false when it is no longer this worker's.
   */
  async finishSandboxOp(workerId: string, opId: string, o: { ok: boolean; result: unknown; error: unknown; output: Buffer | null }): Promise<boolean> {
    const output = o.ok && o.output && o.output.length > 0 ? o.output : null;
    const finish = async (tx: Sql | TransactionSql) => {
      const [row] = await tx<{ ok: boolean }[]>`
        select cogo.finish_sandbox_op(${workerId}, ${opId}::bigint, ${o.ok}, ${o.result === null ? null : tx.json(o.result as never)},
          ${o.error === null ? null : tx.json(o.error as never)}) as ok`;
      return row!.ok;
    };
    // Without output one call does it; with output, its chunks and the outcome commit together.
    if (!output) return finish(this.sql);
    return (await this.sql.begin(async (tx) => {
      for (let seq = 0; seq * OP_CHUNK_BYTES < output.length; seq++) {
        const [put] = await tx<{ ok: boolean }[]>`
          select cogo.put_sandbox_op_output(${workerId}, ${opId}::bigint, ${seq}, ${output.subarray(seq * OP_CHUNK_BYTES, (seq + 1) * OP_CHUNK_BYTES)}) as ok`;
        if (!put!.ok) return false;
      }
      return finish(tx);
    })) as boolean;
  }

  /** The sandbox an init task holds the slot of. */
  async sandboxOfInit(initTaskId: string): Promise<SandboxRow | undefined> {
    const [row] = await this.sql<SandboxRow[]>`select * from public.sandboxes where init_task_id = ${initTaskId}`;
    return row;
  }

  /** The current rows of these sandboxes (timeouts a PATCH changed, activity, status). */
  sandboxes(ids: string[]): Promise<SandboxRow[]> {
    return this.sql<SandboxRow[]>`select * from public.sandboxes where id = any(${ids}::uuid[])`;
  }

  /** The SQL backstop of the holders' idle and lifetime timers (cogo.expire_sandboxes). */
  async expireSandboxes(): Promise<number> {
    const [row] = await this.sql<{ n: number }[]>`select cogo.expire_sandboxes() as n`;
    return row!.n;
  }

  /** Marks the task running; returns its last output seq (earlier attempts' output stays). */
  async start(l: Lease): Promise<number> {
    const [row] = await fenced(() => this.sql<{ seq: string }[]>`select cogo.start_task(${l.taskId}, ${l.attempt}, ${l.workerId}) as seq`);
    return Number(row!.seq);
  }

  /** Writes chunks as seqs firstSeq.. ; safe to retry. */
  appendOutput(l: Lease, firstSeq: number, chunks: Chunk[]): Promise<unknown> {
    return fenced(
      () => this.sql`
      select cogo.append_output(${l.taskId}, ${l.attempt}, ${l.workerId}, ${firstSeq},
        ${chunks.map((c) => c.stream)}::public.output_stream[], ${chunks.map((c) => c.data)}::text[],
        ${chunks.map((c) => c.at.toISOString())}::timestamptz[])`,
    );
  }

  appendEvent(l: Lease, e: TaskEvent): Promise<unknown> {
    // Not retried: an event whose reply was lost may have been written.
    return fenced(() => this.sql`select cogo.append_event(${l.taskId}, ${l.attempt}, ${l.workerId}, ${e.type}, ${this.sql.json(e.data as never)})`, { retry: false });
  }

  /** Appends events in order in one round trip (cogo.append_events); not retried, like appendEvent. */
  appendEvents(l: Lease, events: TaskEvent[]): Promise<unknown> {
    return fenced(
      () => this.sql`
      select cogo.append_events(${l.taskId}, ${l.attempt}, ${l.workerId}, ${events.map((e) => e.type)}::text[],
        array(select e from jsonb_array_elements(${this.sql.json(events.map((e) => e.data) as never)}) with ordinality t(e, i) order by i))`,
      { retry: false },
    );
  }

  /** Median ms of earlier successful runs of the same step (cogo.estimate_duration_ms), or null. */
  async estimateDurationMs(taskId: string): Promise<number | null> {
    const [row] = await this.sql<{ ms: string | null }[]>`select cogo.estimate_duration_ms(${taskId}) as ms`;
    return row?.ms == null ? null : Number(row.ms);
  }

  finish(l: Lease, r: { status: FinalStatus; exitCode: number | null; signal: string | null; reason: string; usage: object; result?: object }): Promise<unknown> {
    return fenced(
      () => this.sql`
      select cogo.finish_task(${l.taskId}, ${l.attempt}, ${l.workerId}, ${r.status}::public.task_status, ${r.exitCode},
        ${r.signal}, ${r.reason}, ${this.sql.json(r.usage as never)}, ${r.result ? this.sql.json(r.result as never) : null})`,
    );
  }

  /** Stores one artifact (bytes, or why it was refused); safe to retry. */
  storeArtifact(l: Lease, path: string, content: Buffer | null, error: string | null): Promise<unknown> {
    return fenced(() => this.sql`select cogo.store_artifact(${l.taskId}, ${l.attempt}, ${l.workerId}, ${path}, ${content}, ${error})`);
  }

  /** A recovery step's re-queue (cogo.requeue_for_recovery); CG422 when no attempt is left. Not retried. */
  requeueForRecovery(l: Lease, step: object, event: RecoverySucceeded): Promise<unknown> {
    return fenced(
      () => this.sql`
      select 1 from cogo.requeue_for_recovery(${l.taskId}, ${l.attempt}, ${l.workerId}, ${this.sql.json(step as never)}, ${this.sql.json(event as never)})`,
      { retry: false },
    );
  }

  release(l: Lease, reason: string): Promise<unknown> {
    return fenced(() => this.sql`select cogo.release_task(${l.taskId}, ${l.attempt}, ${l.workerId}, ${reason})`);
  }

  stdinAfter(taskId: string, afterSeq: number): Promise<{ seq: string; data: string; eof: boolean }[]> {
    return this.sql<{ seq: string; data: string; eof: boolean }[]>`
      select seq, data, eof from public.task_stdin where task_id = ${taskId} and seq > ${afterSeq} order by seq`;
  }

  async requeueExpired(): Promise<number> {
    const [row] = await this.sql<{ n: number }[]>`select cogo.requeue_expired() as n`;
    return row!.n;
  }

  async markLostWorkers(): Promise<number> {
    const [row] = await this.sql<{ n: number }[]>`select cogo.mark_lost_workers() as n`;
    return row!.n;
  }

  async setOffline(workerId: string): Promise<void> {
    await this.sql`select cogo.set_worker_offline(${workerId})`;
  }
}
