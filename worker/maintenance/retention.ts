// The maintenance service: retention (cogo.purge_expired) and tasks of kinds no live worker serves
// (cogo.fail_unserved_tasks), both in migrations/20261206000300_retention.sql, and ended file ops
// of live sandboxes (cogo.purge_sandbox_ops, migrations/20261207000200_sandbox_files.sql: 5 min
// after they end); this loop only calls them and logs. Every worker runs one, but a session advisory lock lets one runner at a time in
// the whole fleet do the work: the others find it taken and skip their pass. A pass is a series of
// short transactions of bounded work with a pause between them, so claims and output writes never
// queue behind it.
import type { ReservedSql, Sql } from "postgres";

/** pg_try_advisory_lock key of the one maintenance runner ("cogo" + 1: no other lock uses it). */
export const MAINTENANCE_LOCK_KEY = 0x636f676f01n;

export interface MaintenanceOptions {
  /** Time between passes; 0 turns the service off in this worker. @default 60000 */
  intervalMs: number;
  /** Rows per DELETE (and tasks marked per transaction). @default 1000 */
  batch: number;
  /** Pause between two transactions of a pass, for the queue's own work. @default 20 */
  pauseMs: number;
  /** A pass stops after this long and goes on at the next one. @default 50000 */
  maxPassMs: number;
}

export const MAINTENANCE_DEFAULTS: MaintenanceOptions = { intervalMs: 60_000, batch: 1000, pauseMs: 20, maxPassMs: 50_000 };

/** What a pass did: rows deleted per table (summed over its transactions), tasks failed. */
export interface MaintenancePass {
  transactions: number;
  failedUnserved: number;
  deleted: Record<string, number>;
  /** The pass hit maxPassMs (or stop()) with work left. */
  unfinished: boolean;
}

export class Maintenance {
  private timer: ReturnType<typeof setInterval> | undefined;
  private current: Promise<MaintenancePass | null> | undefined;
  private stopping = false;
  private readonly options: MaintenanceOptions;

  constructor(
    private readonly sql: Sql,
    options: Partial<MaintenanceOptions>,
    private readonly log: (line: string) => void,
  ) {
    this.options = { ...MAINTENANCE_DEFAULTS, ...Object.fromEntries(Object.entries(options).filter(([, v]) => v !== undefined)) };
  }

  start(): void {
    if (this.options.intervalMs > 0) this.timer = setInterval(() => void this.runOnce(), this.options.intervalMs);
  }

  /** Stops the timer; a pass in progress ends after its current transaction. */
  async stop(): Promise<void> {
    clearInterval(this.timer);
    this.stopping = true;
    await this.current?.catch(() => {});
  }

  /** One pass; null when another runner holds the lock (or a pass of this one is running). */
  runOnce(): Promise<MaintenancePass | null> {
    if (this.current) return Promise.resolve(null);
    this.current = this.pass()
      .catch((err: unknown) => {
        this.log(`maintenance: ${err instanceof Error ? err.message : err}`);
        return null;
      })
      .finally(() => (this.current = undefined));
    return this.current;
  }

  private async pass(): Promise<MaintenancePass | null> {
    // The lock and every call of the pass on one connection: the lock is the session's, and a
    // lost connection releases it.
    const conn: ReservedSql = await this.sql.reserve();
    try {
      const [lock] = await conn<{ ok: boolean }[]>`select pg_try_advisory_lock(${MAINTENANCE_LOCK_KEY.toString()}::bigint) as ok`;
      if (!lock!.ok) return null;
      try {
        return await this.work(conn);
      } finally {
        await conn`select pg_advisory_unlock(${MAINTENANCE_LOCK_KEY.toString()}::bigint)`;
      }
    } finally {
      conn.release();
    }
  }

  private async work(conn: ReservedSql): Promise<MaintenancePass> {
    const o = this.options;
    const started = Date.now();
    const [unserved] = await conn<{ n: number }[]>`select cogo.fail_unserved_tasks() as n`;
    const result: MaintenancePass = { transactions: 1, failedUnserved: unserved!.n, deleted: {}, unfinished: false };
    for (;;) {
      const [row] = await conn<{ r: Record<string, number | boolean | null> }[]>`select cogo.purge_expired(null, ${o.batch}) as r`;
      result.transactions++;
      for (const [key, value] of Object.entries(row!.r)) {
        if (typeof value === "number" && value > 0) result.deleted[key] = (result.deleted[key] ?? 0) + value;
      }
      if (!row!.r.more) break;
      if (this.stopping || Date.now() - started > o.maxPassMs) {
        result.unfinished = true;
        break;
      }
      await new Promise((r) => setTimeout(r, o.pauseMs));
    }
    for (;;) {
      const [ops] = await conn<{ n: number }[]>`select cogo.purge_sandbox_ops(${o.batch}) as n`;
      result.transactions++;
      if (ops!.n > 0) result.deleted.sandbox_ops = (result.deleted.sandbox_ops ?? 0) + ops!.n;
      if (ops!.n < o.batch || this.stopping || Date.now() - started > o.maxPassMs) break;
      await new Promise((r) => setTimeout(r, o.pauseMs));
    }
    const deleted = Object.entries(result.deleted).map(([k, n]) => `${k} ${n}`);
    if (result.failedUnserved) this.log(`maintenance: ${result.failedUnserved} task(s) of kinds no live worker serves failed (no_worker_for_kind)`);
    if (deleted.length) {
      this.log(
        `maintenance: retention purged ${deleted.join(", ")} in ${result.transactions} transactions, ${Date.now() - started} ms${result.unfinished ? "; more next pass" : ""}`,
      );
    }
    return result;
  }
}
