// The embedded default in one call: Postgres (bootstrapped like a Supabase database, migrated),
// the Realtime endpoint, the edge functions in Deno, and the gateway in front of them.
import { randomBytes } from "node:crypto";
import { readFile, rm, mkdir } from "node:fs/promises";
import type { AddressInfo } from "node:net";
import path from "node:path";
import { fileURLToPath } from "node:url";
import postgres from "postgres";
import { authConfigFromEnv, Authenticator } from "../functions/_shared/auth.ts";
import { readFunctionConfigs, serveFunction, stopFunction, type RunningFunction } from "./functions.ts";
import { createGateway } from "./gateway.ts";
import { functionKeyEnv, loadOrCreateKeys, type ProjectKeys } from "./keys.ts";
import { migrate } from "./migrate.ts";
import { assertPrivateDir } from "./private-files.ts";
import { freePort, isFree } from "./ports.ts";
import { startPostgres } from "./postgres.ts";
import { createRealtime, type Realtime } from "./realtime/index.ts";

export const PROJECT_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");

export interface StackOptions {
  /** All state: Postgres cluster and JWT secret. @default env COGO_DATA_DIR, else /var/tmp/cogo-sandbox */
  dataDir?: string;
  /** Postgres port. @default env COGO_DB_PORT, else 54322 if free, else any free port */
  dbPort?: number;
  /** Gateway port (functions + Realtime). @default env COGO_API_PORT, else 54321 if free, else any free port */
  apiPort?: number;
  /** Restart functions when their source changes. @default true */
  watch?: boolean;
  /** Wipe the data dir first. @default false */
  reset?: boolean;
  /** Where log lines go. @default ignore */
  log?: (line: string) => void;
}

/** A part of the stack that can be restarted in place (same ports, same data). */
export type StackPart = "postgres" | "realtime" | "functions" | "gateway";

export interface Stack {
  apiUrl: string;
  /**
   * The superuser supabase_admin. Realtime, the functions (SUPABASE_DB_URL), workers and tests
   * connect as it, as they did when postgres was the superuser (hosted's functions get postgres).
   */
  dbUrl: string;
  /** The non-superuser `postgres` that migrations run as, like `supabase db push`. */
  postgresUrl: string;
  dataDir: string;
  keys: ProjectKeys;
  /** The loopback port a function's own Deno process listens on (behind the gateway). */
  functionPort(slug: string): number | undefined;
  /** Stops one part and starts it again, as an operator or a crash would (fault tests, soak). */
  restart(part: StackPart): Promise<void>;
  stop(): Promise<void>;
}

async function choosePort(explicit: number | undefined, envName: string, preferred: number): Promise<number> {
  const fromEnv = process.env[envName];
  if (explicit !== undefined) return explicit;
  if (fromEnv) {
    const n = Number(fromEnv);
    if (!Number.isInteger(n) || n < 0 || n > 65535) throw new Error(`${envName}=${fromEnv} is not a port number`);
    return n;
  }
  return (await isFree(preferred)) ? preferred : await freePort();
}

/** Where a stack keeps its state: the option, else COGO_DATA_DIR, else /var/tmp/cogo-sandbox. */
export function resolveDataDir(dataDir?: string): string {
  return path.resolve(dataDir ?? process.env.COGO_DATA_DIR ?? "/var/tmp/cogo-sandbox");
}

export async function startStack(options: StackOptions = {}): Promise<Stack> {
  const log = options.log ?? (() => {});
  const dataDir = resolveDataDir(options.dataDir);
  if (options.reset) await rm(dataDir, { recursive: true, force: true });
  await mkdir(dataDir, { recursive: true, mode: 0o755 });
  await assertPrivateDir(dataDir);
  const keys = await loadOrCreateKeys(dataDir);
  const dbPort = await choosePort(options.dbPort, "COGO_DB_PORT", 54322);
  const apiPort = await choosePort(options.apiPort, "COGO_API_PORT", 54321);

  const pgOptions = { dataDir, port: dbPort, onLog: (l: string) => log(`[postgres] ${l.trimEnd()}`) };
  let pg = await startPostgres(pgOptions);
  const stops: (() => Promise<unknown>)[] = [() => pg.stop()];
  const stop = async () => {
    for (const s of stops.reverse()) await s().catch((e) => log(`stop: ${e}`));
  };
  try {
    // What hosted Supabase has before any migration, made by its superuser; then the migrations, as
    // `supabase db push` applies them: connected as postgres, not a superuser.
    const admin = postgres(pg.url, { max: 1, onnotice: () => {} });
    try {
      await admin.unsafe(await readFile(path.join(PROJECT_ROOT, "embedded", "bootstrap.sql"), "utf8"));
    } finally {
      await admin.end();
    }
    const sql = postgres(pg.postgresUrl, { max: 1, onnotice: () => {} });
    try {
      for (const v of await migrate(sql, path.join(PROJECT_ROOT, "migrations"), log)) log(`migrated ${v}`);
    } finally {
      await sql.end();
    }

    const startRealtime = () => createRealtime({ databaseUrl: pg.url, jwtSecret: keys.jwtSecret, log: (l) => log(`[realtime] ${l}`) });
    let realtime = await startRealtime();
    stops.push(() => realtime.close());
    // The gateway reaches Realtime through this, so a restarted Realtime takes over the same port.
    const currentRealtime: Realtime = {
      handleUpgrade: (req, socket, head) => realtime.handleUpgrade(req, socket, head),
      handleHttp: (req, res) => realtime.handleHttp(req, res),
      stats: () => realtime.stats(),
      close: () => realtime.close(),
    };

    // The gateway proves callers from the same settings the function gets.
    const keyEnv = functionKeyEnv(keys);
    const auth = new Authenticator(authConfigFromEnv((k) => keyEnv[k]));
    // Proves to a function that a request came through the gateway (functions/_shared/api.ts).
    const gatewaySecret = randomBytes(32).toString("base64url");
    const functions = new Map<string, RunningFunction>();
    const listen = async (port: number) => {
      const server = createGateway({
        auth,
        gatewaySecret,
        realtime: currentRealtime,
        functionFor: (slug) => functions.get(slug),
        dashboard: { dir: path.join(PROJECT_ROOT, "dashboard", "dist"), anonKey: keys.anonKey },
      });
      await new Promise<void>((resolve, reject) => {
        server.once("error", reject);
        server.listen(port, "127.0.0.1", () => resolve());
      });
      return server;
    };
    // Upgraded (WebSocket) connections may keep close() waiting; the port is free at once anyway.
    const closeGateway = () =>
      new Promise<void>((resolve) => {
        gateway.close(() => resolve());
        gateway.closeAllConnections();
        setTimeout(resolve, 3000).unref();
      });
    let gateway = await listen(apiPort);
    stops.push(closeGateway);
    const port = (gateway.address() as AddressInfo).port;
    const apiUrl = `http://127.0.0.1:${port}`;

    stops.push(async () => Promise.all([...functions.values()].map(stopFunction)));
    const env = { ...keyEnv, SUPABASE_URL: apiUrl, SUPABASE_DB_URL: pg.url, COGO_GATEWAY_SECRET: gatewaySecret };
    const configs = readFunctionConfigs(path.join(PROJECT_ROOT, "supabase"));
    // Every start settles before a failure is thrown, so stop() finds each function that did start.
    const serveAll = async () => {
      const started = await Promise.allSettled(configs.map(async (c) => functions.set(c.slug, await serveFunction(c, { env, watch: options.watch ?? true, log }))));
      const failed = started.find((s): s is PromiseRejectedResult => s.status === "rejected");
      if (failed) throw failed.reason;
    };
    await serveAll();

    const restart = async (part: StackPart) => {
      log(`restarting ${part}`);
      if (part === "postgres") {
        await pg.stop(); // a fast shutdown, as `pg_ctl restart` does: clients lose their connections
        pg = await startPostgres(pgOptions);
      } else if (part === "realtime") {
        await realtime.close();
        realtime = await startRealtime();
      } else if (part === "functions") {
        await Promise.all([...functions.values()].map(stopFunction));
        await serveAll();
      } else {
        await closeGateway();
        gateway = await listen(port);
      }
    };
    return { apiUrl, dbUrl: pg.url, postgresUrl: pg.postgresUrl, dataDir, keys, restart, stop, functionPort: (slug) => functions.get(slug)?.port };
  } catch (err) {
    await stop();
    throw err;
  }
}
