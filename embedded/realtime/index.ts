// The embedded Realtime endpoint: a faithful subset of Supabase Realtime (broadcast, broadcast from
// the database, presence, private-channel authorization) for the official realtime-js client.
import type { IncomingMessage, ServerResponse } from "node:http";
import type { Duplex } from "node:stream";
import postgres from "postgres";
import { EmbeddedError } from "../errors.ts";
import { Authorizer } from "./authorization.ts";
import type { RealtimeContext } from "./channel.ts";
import { DatabaseFeed, type DatabaseMessage } from "./database-feed.ts";
import { FairQueue } from "./fair-queue.ts";
import { Fanout, Outgoing, subscriptionKey } from "./fanout.ts";
import { resolveLimits, type RealtimeLimits } from "./limits.ts";
import { PresenceTracker } from "./presence.ts";
import { handleRest } from "./rest.ts";
import { SocketServer } from "./server.ts";

export interface RealtimeOptions {
  databaseUrl: string; // postgres superuser URL
  jwtSecret: string; // HS256 secret; verify with verifyJwt from embedded/jwt.ts
  log?: (line: string) => void;
  /** What one client may hold and do; each field's default is in REALTIME_LIMIT_DEFAULTS. @default {} */
  limits?: Partial<RealtimeLimits>;
}

export interface Realtime {
  /** Handles an HTTP upgrade whose path is /realtime/v1/websocket (query apikey, vsn). */
  handleUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void;
  /** Handles /realtime/v1/api/* (REST broadcast); returns false if the path is not its own. */
  handleHttp(req: IncomingMessage, res: ServerResponse): Promise<boolean>;
  /**
   * Stats for health/metrics: connected sockets, joined channels, messages delivered, presence
   * entries held, authorization transactions waiting for a database slot.
   */
  stats(): { sockets: number; channels: number; delivered: number; presences: number; authorizationsWaiting: number };
  close(): Promise<void>;
}

const PARTITION_INTERVAL_MS = 60 * 60 * 1000;

export async function createRealtime(options: RealtimeOptions): Promise<Realtime> {
  const log = options.log ?? (() => {});
  const limits = resolveLimits(options.limits);
  const sql = postgres(options.databaseUrl, {
    max: 10,
    onnotice: () => {},
    connection: { application_name: "cogo-realtime" },
  });
  const maintainPartitions = () => sql`select realtime_embedded.maintain_partitions()`;
  try {
    await maintainPartitions();
  } catch (err) {
    await sql.end({ timeout: 0 });
    throw new EmbeddedError(
      "realtime_database_unavailable",
      `Realtime could not prepare realtime.messages partitions; is the database up and embedded/bootstrap.sql applied? ${err instanceof Error ? err.message : String(err)}`,
    );
  }

  const fanout = new Fanout();
  const presence = new PresenceTracker(fanout);
  const authorizer = new Authorizer(sql, new FairQueue(limits.maxConcurrentAuthorizations, limits.maxAuthorizationsPerConnection));
  const ctx: RealtimeContext = { jwtSecret: options.jwtSecret, sql, fanout, presence, authorizer, limits, log };
  const deliver = (m: DatabaseMessage) => fanout.publish(subscriptionKey(m.private, m.topic), Outgoing.user(m.event, m.encoding, m.body, { id: m.id }, m.id));
  let feed: DatabaseFeed;
  try {
    feed = await DatabaseFeed.start(options.databaseUrl, sql, deliver, log);
  } catch (err) {
    await sql.end({ timeout: 0 });
    throw new EmbeddedError("realtime_listen_failed", `Realtime could not LISTEN for database broadcasts: ${err instanceof Error ? err.message : String(err)}`);
  }
  const sockets = new SocketServer(ctx);
  const partitionTimer = setInterval(() => {
    maintainPartitions().catch((err: unknown) => log(`realtime: partition maintenance failed: ${err instanceof Error ? err.message : String(err)}`));
  }, PARTITION_INTERVAL_MS);
  partitionTimer.unref();

  let closing: Promise<void> | undefined;
  return {
    handleUpgrade: (req, socket, head) => sockets.handleUpgrade(req, socket, head),
    handleHttp: (req, res) => handleRest(ctx, req, res),
    stats: () => ({
      sockets: sockets.socketCount,
      channels: fanout.size,
      delivered: fanout.delivered,
      presences: presence.size,
      authorizationsWaiting: authorizer.waiting,
    }),
    close: () =>
      (closing ??= (async () => {
        clearInterval(partitionTimer);
        await sockets.close();
        await feed.close();
        await sql.end({ timeout: 5 });
      })()),
  };
}
