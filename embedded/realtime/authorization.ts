// Private-channel authorization exactly as the hosted server does it (tenants/authorization.ex):
// RLS policies on realtime.messages decide, probed inside a transaction that is always rolled back.
import { randomUUID } from "node:crypto";
import postgres from "postgres";
import type { Claims } from "../jwt.ts";
import { RealtimeError } from "./errors.ts";

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
  return new AuthorizationError(
    "database_unavailable",
    `Realtime was unable to connect to the project database: ${err instanceof Error ? err.message : String(err)}`,
  );
}

export class Authorizer {
  constructor(private readonly sql: postgres.Sql) {}

  /** Probe rows inserted as the connection user; the SELECT back as the JWT's role shows what RLS lets it read. */
  async read(topic: string, claims: Claims, current: Policies, withPresence: boolean): Promise<Policies> {
    const extensions: Extension[] = withPresence ? ["broadcast", "presence"] : ["broadcast"];
    const probes = extensions.map((extension) => ({ id: randomUUID(), topic, extension }));
    return this.inRolledBackTransaction(async (tx) => {
      await tx`insert into realtime.messages ${tx(probes, "id", "topic", "extension")}`;
      await this.setConfig(tx, topic, claims);
      const visible = await tx<{ id: string }[]>`select id from realtime.messages where id in ${tx(probes.map((p) => p.id))}`;
      const ids = new Set(visible.map((row) => row.id));
      const next = clone(current);
      for (const probe of probes) next[probe.extension as Extension].read = ids.has(probe.id);
      return next;
    });
  }

  /** An INSERT as the JWT's role per extension, each under a savepoint: 42501 means no write. */
  async write(topic: string, claims: Claims, current: Policies, withPresence = true): Promise<Policies> {
    return this.inRolledBackTransaction(async (tx) => {
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

  private async setConfig(tx: postgres.TransactionSql, topic: string, claims: Claims): Promise<void> {
    const role = String(claims.role);
    const sub = typeof claims.sub === "string" ? claims.sub : null;
    await tx`select set_config('role', ${role}, true), set_config('realtime.topic', ${topic}, true),
      set_config('request.jwt.claims', ${JSON.stringify(claims)}, true),
      set_config('request.jwt.claim.sub', ${sub}, true), set_config('request.jwt.claim.role', ${role}, true)`;
  }

  private async inRolledBackTransaction(body: (tx: postgres.TransactionSql) => Promise<Policies>): Promise<Policies> {
    try {
      await this.sql.begin(async (tx) => {
        throw new Rollback(await body(tx));
      });
    } catch (err) {
      if (err instanceof Rollback) return err.policies;
      throw classify(err);
    }
    throw new RealtimeError("authorization_not_rolled_back", "authorization transaction ended without a result");
  }
}

function clone(policies: Policies): Policies {
  return { broadcast: { ...policies.broadcast }, presence: { ...policies.presence } };
}
