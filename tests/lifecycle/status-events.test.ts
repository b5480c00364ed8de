// The task_status events of claim → start → finish, at the SQL level: one event per change with
// consecutive seqs and the documented payload, broadcast with the same seq, and each change
// writing the task row once (the transitions of migrations/20261126000100_task_queue.sql).
import type { TransactionSql } from "postgres";
import { describe, expect, it } from "vitest";
import { sql, uniqueKind } from "../helpers/env.ts";

/** Task rows this transaction has updated so far (its own statistics, not other sessions'). */
const taskUpdates = async (tx: TransactionSql) =>
  Number((await tx<{ n: string }[]>`select n_tup_upd as n from pg_stat_xact_user_tables where relid = 'public.tasks'::regclass`)[0]!.n);

describe("task_status events of the queue path", () => {
  it("claim, start and finish each write the task row once and append one event with the next seq", async () => {
    const kind = uniqueKind("ev");
    const [w] = await sql<{ id: string }[]>`select id from cogo.register_worker('ev-worker', ${kind}, '{}', 2, 30000, 'test', '{}')`;
    const [t] = await sql<{ id: string }[]>`select id from cogo.enqueue_task(${sql.json({ command: "true", requirements: { kind } })})`;
    const updates: number[] = [];
    await sql.begin(async (tx) => {
      const [claimed] = await tx<{ id: string; attempt: number }[]>`select id, attempt from cogo.claim_tasks(${w!.id}, 1)`;
      expect(claimed!.id).toBe(t!.id);
      updates.push(await taskUpdates(tx));
      await tx`select cogo.start_task(${t!.id}, 1, ${w!.id})`;
      updates.push(await taskUpdates(tx));
      await tx`select cogo.finish_task(${t!.id}, 1, ${w!.id}, 'succeeded', 0, null, 'done', '{}', null)`;
      updates.push(await taskUpdates(tx));
    });
    expect(updates).toEqual([1, 2, 3]);

    const events = await sql<{ seq: string; attempt: number; type: string; data: Record<string, unknown> }[]>`
      select seq, attempt, type, data from public.task_events where task_id = ${t!.id} order by seq`;
    expect(events.map((e) => [Number(e.seq), e.type, e.data.status, e.data.previous])).toEqual([
      [1, "task_status", "claimed", "queued"],
      [2, "task_status", "running", "claimed"],
      [3, "task_status", "succeeded", "running"],
    ]);
    expect(events[2]!.data).toEqual({ status: "succeeded", previous: "running", attempt: 1, workerId: w!.id, exitCode: 0, reason: "done" });
    expect(events.every((e) => e.attempt === 1)).toBe(true);
    const [task] = await sql<{ n: string }[]>`select event_seq as n from public.tasks where id = ${t!.id}`;
    expect(Number(task!.n)).toBe(3);

    const sent = await sql<{ event: string; payload: { seq: number; type: string; taskId: string; data: { status: string } } }[]>`
      select event, payload from realtime.messages where topic = ${"task:" + t!.id} order by (payload ->> 'seq')::int`;
    expect(sent.map((m) => [m.event, m.payload.seq, m.payload.data.status])).toEqual([
      ["task_status", 1, "claimed"],
      ["task_status", 2, "running"],
      ["task_status", 3, "succeeded"],
    ]);
  });

  it("keeps block events of a lost lease before the task_status they cause", async () => {
    const kind = uniqueKind("ev");
    const [w] = await sql<{ id: string }[]>`select id from cogo.register_worker('ev-worker', ${kind}, '{}', 2, 30000, 'test', '{}')`;
    const [t] = await sql<{ id: string }[]>`select id from cogo.enqueue_task(${sql.json({ command: "true", requirements: { kind } })})`;
    await sql`select id from cogo.claim_tasks(${w!.id}, 1)`;
    await sql`select cogo.start_task(${t!.id}, 1, ${w!.id})`;
    await sql`update public.tasks set lease_expires_at = now() - interval '1 second' where id = ${t!.id}`;
    // What cogo.requeue_expired does to it, on this task only (other test files share the database).
    expect((await sql<{ s: string }[]>`select cogo.expire_task(${t!.id}) as s`)[0]!.s).toBe("queued");
    const events = await sql<{ seq: string; type: string }[]>`select seq, type from public.task_events where task_id = ${t!.id} order by seq`;
    expect(events.map((e) => [Number(e.seq), e.type])).toEqual([
      [1, "task_status"],
      [2, "task_status"],
      [3, "block_detected"],
      [4, "recovery_started"],
      [5, "recovery_succeeded"],
      [6, "task_status"],
    ]);
  });

  it("start_task and finish_task refuse a stale attempt, another worker and an expired lease (CG409), changing nothing", async () => {
    const kind = uniqueKind("ev");
    const [w] = await sql<{ id: string }[]>`select id from cogo.register_worker('ev-worker', ${kind}, '{}', 2, 30000, 'test', '{}')`;
    const [other] = await sql<{ id: string }[]>`select id from cogo.register_worker('ev-other', ${kind}, '{}', 2, 30000, 'test', '{}')`;
    const [t] = await sql<{ id: string }[]>`select id from cogo.enqueue_task(${sql.json({ command: "true", requirements: { kind } })})`;
    await sql`select id from cogo.claim_tasks(${w!.id}, 1)`;
    const refused = async (call: Promise<unknown>) => expect(call).rejects.toMatchObject({ code: "CG409", message: expect.stringContaining("lease lost") });
    await refused(sql`select cogo.start_task(${t!.id}, 2, ${w!.id})`);
    await refused(sql`select cogo.start_task(${t!.id}, 1, ${other!.id})`);
    await refused(sql`select cogo.finish_task(${t!.id}, 2, ${w!.id}, 'succeeded', 0, null, 'x', '{}', null)`);
    await refused(sql`select cogo.finish_task(${t!.id}, 1, ${other!.id}, 'succeeded', 0, null, 'x', '{}', null)`);
    await sql`select cogo.start_task(${t!.id}, 1, ${w!.id})`;
    await sql`update public.tasks set lease_expires_at = now() - interval '1 second' where id = ${t!.id}`;
    await refused(sql`select cogo.finish_task(${t!.id}, 1, ${w!.id}, 'succeeded', 0, null, 'x', '{}', null)`);
    const [row] = await sql<{ status: string; n: string }[]>`select status, event_seq as n from public.tasks where id = ${t!.id}`;
    expect([row!.status, Number(row!.n)]).toEqual(["running", 2]);
  });
});
