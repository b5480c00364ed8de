// Real Postgres + the embedded Realtime endpoint behind a plain HTTP server, the way the gateway
// mounts it. Small on purpose: the full stack fixture replaces it later.
import { randomBytes } from "node:crypto";
import { readFile, rm } from "node:fs/promises";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import postgres from "postgres";
import { signJwt } from "../../embedded/jwt.ts";
import { freePort } from "../../embedded/ports.ts";
import { startPostgres } from "../../embedded/postgres.ts";
import { createRealtime, type Realtime } from "../../embedded/realtime/index.ts";

export interface RealtimeFixture {
  url: string;
  anonKey: string;
  serviceKey: string;
  jwtSecret: string;
  /** Superuser connection for test setup (policies, realtime.send). */
  sql: postgres.Sql;
  realtime: Realtime;
  signUser(sub: string, expiresInS?: number): Promise<string>;
  stop(): Promise<void>;
}

export async function startRealtimeFixture(): Promise<RealtimeFixture> {
  const dataDir = `/var/tmp/cogo-test-realtime-${randomBytes(6).toString("hex")}`;
  const pg = await startPostgres({ dataDir, port: await freePort() });
  const sql = postgres(pg.url, { max: 4, onnotice: () => {} });
  let realtime: Realtime | undefined;
  let server: Server | undefined;
  const stop = async () => {
    await realtime?.close();
    if (server) {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server!.close(() => resolve()));
    }
    await sql.end({ timeout: 5 });
    await pg.stop();
    await rm(dataDir, { recursive: true, force: true });
  };
  try {
    await sql.unsafe(await readFile(new URL("../../embedded/bootstrap.sql", import.meta.url), "utf8"));
    const jwtSecret = randomBytes(32).toString("hex");
    // REALTIME_LOG=1 prints the endpoint's log lines while debugging a test.
    const log = process.env.REALTIME_LOG ? (line: string) => console.error(line) : undefined;
    realtime = await createRealtime({ databaseUrl: pg.url, jwtSecret, ...(log ? { log } : {}) });
    const rt = realtime;
    server = createServer((req, res) => {
      rt.handleHttp(req, res).then((handled) => {
        if (!handled) res.writeHead(404).end();
      });
    });
    server.on("upgrade", (req, socket, head) => rt.handleUpgrade(req, socket, head));
    await new Promise<void>((resolve) => server!.listen(0, "127.0.0.1", resolve));
    const { port } = server.address() as AddressInfo;
    return {
      url: `http://127.0.0.1:${port}`,
      anonKey: await signJwt(jwtSecret, { role: "anon" }),
      serviceKey: await signJwt(jwtSecret, { role: "service_role" }),
      jwtSecret,
      sql,
      realtime,
      signUser: (sub, expiresInS) => signJwt(jwtSecret, { role: "authenticated", sub }, expiresInS),
      stop,
    };
  } catch (err) {
    await stop();
    throw err;
  }
}
