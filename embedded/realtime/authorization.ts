// Private-channel authorization exactly as the hosted server does it (tenants/authorization.ex):
// RLS policies on realtime.messages decide, probed inside a transaction that is always rolled back.
// Every transaction waits its turn in a FairQueue, so no one client can fill the pool.
import { randomUUID } from "node:crypto";
import postgres from "postgres";
import type { Claims } from "../jwt.ts";
import { RealtimeError } from "./errors.ts";
import { QueueCancelledError, type FairQueue, type QueueOwner } from "./fair-queue.ts";

type Permission = { read?: boolean; write?: boolean };

/** undefined = not checked yet; checked values are cached per channel until the token changes. */
export interface Policies {
  broadcast: Permission;
  presence: Permission;
}

export function emptyPolicies(): Policies {
  return { broadcast: {}, presence: {} };
}

export type AuthorizationFailure = "rls_policy_error" | "query_canceled" | "missing_partition" | "database_unavailable";

export class AuthorizationError extends RealtimeError {
  readonly failure: AuthorizationFailure;
  constructor(failure: AuthorizationFailure, message: string) {
    super(failure, message);
    this.failure = failure;
  }
}

type Extension = "broadcast" | "presence";

/** Carries the result out of `sql.begin`, which rolls back when its callback throws. */
class Rollback {
  constructor(readonly policies: Policies) {}
}

function classify(err: unknown): AuthorizationError {
  if (err instanceof postgres.PostgresError) {
    if (err.code === "57014") return new AuthorizationError("query_canceled", err.message);
    if (err.code === "23514" && err.table_name === "messages") {
      return new AuthorizationError("missing_partition", "Realtime was unable to find the expected messages partition");
    }
    return new AuthorizationError("rls_policy_error", err.message);
  }
  return new AuthorizationError("database_unavailable", `Realtime was unable to connect to the project database: ${err instanceof Error ? err.message : String(err)}`);
}

export class Authorizer {
  constructor(
    private readonly sql: postgres.Sql,
    private readonly queue: FairQueue,
  ) {}

  /**
   * Probe rows inserted as the connection user; the SELECT back as the JWT's role shows what RLS
   * lets it read. `owner` is the connection (or REST client address) whose turn this is.
   * The whole transaction goes out as one pipeline on a reserved connection: one round trip
   * where awaiting each statement took five (every join of a private channel pays this).
   */
  async read(owner: QueueOwner, topic: string, claims: Claims, current: Policies, withPresence: boolean): Promise<Policies> {
    const extensions: Extension[] = withPresence ? ["broadcast", "presence"] : ["broadcast"];
    const probes = extensions.map((extension) => ({ id: randomUUID(), topic, extension }));
    let visible: { id: string }[];
    try {
      visible = await this.queue.run(owner, async () => {
        const c = await this.sql.reserve();
        try {
          // Each statement has its own Sync, so `rollback` runs even after one of them fails.
          const results = await Promise.allSettled([
            c`begin`,
            c`insert into realtime.messages ${c(probes, "id", "topic", "extension")}`,
            this.setConfig(c, topic, claims),
            c<{ id: string }[]>`select id from realtime.messages where id in ${c(probes.map((p) => p.id))}`,
            c`rollback`,
          ]);
          const failed = results.find((r) => r.status === "rejected");
          if (failed) throw failed.reason;
          return (results[3] as PromiseFulfilledResult<{ id: string }[]>).value;
        } finally {
          c.release();
        }
      });
    } catch (err) {
      if (err instanceof QueueCancelledError) throw err;
      throw classify(err);
    }
    const ids = new Set(visible.map((row) => row.id));
    const next = clone(current);
    for (const probe of probes) next[probe.extension].read = ids.has(probe.id);
    return next;
  }

  /** Drops the owner's waiting transactions (its socket closed); later ones reject at once. */
  cancel(owner: object): void {
    this.queue.cancel(owner);
  }

  /** Tasks waiting for a database slot, all clients together. */
  get waiting(): number {
    return this.queue.waiting;
  }

  /** An INSERT as the JWT's role per extension, each under a savepoint: 42501 means no write. */
  async write(owner: QueueOwner, topic: string, claims: Claims, current: Policies, withPresence = true): Promise<Policies> {
    return this.inRolledBackTransaction(owner, async (tx) => {
      await this.setConfig(tx, topic, claims);
      const next = clone(current);
      for (const extension of ["broadcast", "presence"] as const) {
        if (extension === "presence" && !withPresence) {
          next.presence.write = false;
          continue;
        }
        try {
          await tx.savepoint((sp) => sp`insert into realtime.messages (topic, extension) values (${topic}, ${extension})`);
          next[extension].write = true;
        } catch (err) {
          if (err instanceof postgres.PostgresError && err.code === "42501") next[extension].write = false;
          else throw err;
        }
      }
      return next;
    });
  }

  private setConfig(tx: postgres.ReservedSql | postgres.TransactionSql, topic: string, claims: Claims): postgres.PendingQuery<postgres.Row[]> {
    const role = String(claims.role);
    const sub = typeof claims.sub === "string" ? claims.sub : null;
    return tx`select set_config('role', ${role}, true), set_config('realtime.topic', ${topic}, true),
      set_config('request.jwt.claims', ${JSON.stringify(claims)}, true),
      set_config('request.jwt.claim.sub', ${sub}, true), set_config('request.jwt.claim.role', ${role}, true)`;
  }

  /** Rejects with QueueCancelledError if the owner's connection closed before its turn came. */
  private async inRolledBackTransaction(owner: QueueOwner, body: (tx: postgres.TransactionSql) => Promise<Policies>): Promise<Policies> {
    try {
      await this.queue.run(owner, () =>
        this.sql.begin(async (tx) => {
          throw new Rollback(await body(tx));
        }),
      );
    } catch (err) {
      if (err instanceof Rollback) return err.policies;
      if (err instanceof QueueCancelledError) throw err;
      throw classify(err);
    }
    throw new RealtimeError("authorization_not_rolled_back", "authorization transaction ended without a result");
  }
}

function clone(policies: Policies): Policies {
  return { broadcast: { ...policies.broadcast }, presence: { ...policies.presence } };
}
