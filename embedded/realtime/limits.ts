// What one client may hold and do, like the hosted server's tenant limits (config/runtime.exs
// TENANT_MAX_*; https://supabase.com/docs/guides/realtime/limits), but counted per connection or
// per client address, since every client of the embedded default shares one project. The refusals
// carry the hosted error names; see docs/realtime-limits.md.
import { RealtimeError } from "./errors.ts";

export interface RealtimeLimits {
  /**
   * WebSockets open at once from one client address; the next upgrade is answered
   * 429 {"error":"Too many connected users"} (hosted: ConnectionRateLimitReached).
   * @default env COGO_REALTIME_MAX_CONNECTIONS_PER_ADDRESS, else 100
   */
  maxConnectionsPerAddress: number;
  /**
   * Channels joined (or being joined) on one socket; the next join is refused with
   * "ChannelRateLimitReached: Too many channels". Hosted default TENANT_MAX_CHANNELS_PER_CLIENT.
   * @default env COGO_REALTIME_MAX_CHANNELS_PER_CONNECTION, else 100
   */
  maxChannelsPerConnection: number;
  /**
   * Joins per second on one socket, as a token bucket that holds this many (so a reconnecting
   * client may rejoin all its channels at once). Past it the join is refused with
   * "ClientJoinRateLimitReached: Too many joins per second" and the socket is closed, as the hosted
   * server disconnects it; nothing of a refused join reaches the database.
   * Hosted default TENANT_MAX_JOINS_PER_SECOND (per project there).
   * @default env COGO_REALTIME_MAX_JOINS_PER_SECOND, else 100
   */
  maxJoinsPerSecond: number;
  /**
   * Largest WebSocket message; a bigger frame closes the socket with 1009 (Message Too Big)
   * before it is buffered. The hosted endpoint's max_frame_size.
   * @default env COGO_REALTIME_MAX_MESSAGE_BYTES, else 5_000_000
   */
  maxMessageBytes: number;
  /**
   * Largest presence payload (JSON bytes) a track may store; a bigger one gets the hosted
   * "Track message size exceeded" system error and the channel is closed. The Free plan's
   * max_payload_size_in_kb (256).
   * @default env COGO_REALTIME_MAX_PRESENCE_PAYLOAD_BYTES, else 256_000
   */
  maxPresencePayloadBytes: number;
  /**
   * Presence entries (tracked channels) one socket may hold; one more track is answered
   * error "PresenceLimitReached: Too many presence entries on this connection" (no hosted
   * equivalent). With the defaults one address holds at most 100 × 10 × 256 KB of presence.
   * @default env COGO_REALTIME_MAX_PRESENCE_ENTRIES_PER_CONNECTION, else 10
   */
  maxPresenceEntriesPerConnection: number;
  /**
   * Authorization transactions (RLS probes on realtime.messages) running at once, all clients
   * together; the rest wait in a queue served round-robin between connections. Keep it below
   * the endpoint's pool of 10 connections so replay and REST broadcasts still get one.
   * @default env COGO_REALTIME_MAX_CONCURRENT_AUTHORIZATIONS, else 4
   */
  maxConcurrentAuthorizations: number;
  /**
   * Authorization transactions one connection (or one REST client address) may have running at
   * once; its others wait behind every other client's next one.
   * @default env COGO_REALTIME_MAX_AUTHORIZATIONS_PER_CONNECTION, else 2
   */
  maxAuthorizationsPerConnection: number;
}

export const REALTIME_LIMIT_DEFAULTS = {
  maxConnectionsPerAddress: 100,
  maxChannelsPerConnection: 100,
  maxJoinsPerSecond: 100,
  maxMessageBytes: 5_000_000,
  maxPresencePayloadBytes: 256_000,
  maxPresenceEntriesPerConnection: 10,
  maxConcurrentAuthorizations: 4,
  maxAuthorizationsPerConnection: 2,
} as const satisfies RealtimeLimits;

const ENV_NAMES: Record<keyof RealtimeLimits, string> = {
  maxConnectionsPerAddress: "COGO_REALTIME_MAX_CONNECTIONS_PER_ADDRESS",
  maxChannelsPerConnection: "COGO_REALTIME_MAX_CHANNELS_PER_CONNECTION",
  maxJoinsPerSecond: "COGO_REALTIME_MAX_JOINS_PER_SECOND",
  maxMessageBytes: "COGO_REALTIME_MAX_MESSAGE_BYTES",
  maxPresencePayloadBytes: "COGO_REALTIME_MAX_PRESENCE_PAYLOAD_BYTES",
  maxPresenceEntriesPerConnection: "COGO_REALTIME_MAX_PRESENCE_ENTRIES_PER_CONNECTION",
  maxConcurrentAuthorizations: "COGO_REALTIME_MAX_CONCURRENT_AUTHORIZATIONS",
  maxAuthorizationsPerConnection: "COGO_REALTIME_MAX_AUTHORIZATIONS_PER_CONNECTION",
};

function positiveInteger(name: string, value: unknown): number {
  const n = typeof value === "string" ? Number(value) : value;
  if (typeof n !== "number" || !Number.isSafeInteger(n) || n < 1) {
    throw new RealtimeError("bad_option", `${name}=${String(value)}: expected a whole number ≥ 1`);
  }
  return n;
}

/** Given values, else the env var, else the default; anything else fails loudly at start. */
export function resolveLimits(given: Partial<RealtimeLimits> = {}, env: NodeJS.ProcessEnv = process.env): RealtimeLimits {
  const limits = { ...REALTIME_LIMIT_DEFAULTS } as RealtimeLimits;
  for (const key of Object.keys(REALTIME_LIMIT_DEFAULTS) as (keyof RealtimeLimits)[]) {
    const fromEnv = env[ENV_NAMES[key]];
    if (given[key] !== undefined) limits[key] = positiveInteger(`limits.${key}`, given[key]);
    else if (fromEnv !== undefined && fromEnv !== "") limits[key] = positiveInteger(ENV_NAMES[key], fromEnv);
  }
  return limits;
}

/** Holds up to `perSecond` tokens and refills at that rate; each admitted action takes one. */
export class TokenBucket {
  private tokens: number;
  private refilledAt = performance.now();

  constructor(private readonly perSecond: number) {
    this.tokens = perSecond;
  }

  take(): boolean {
    const now = performance.now();
    this.tokens = Math.min(this.perSecond, this.tokens + ((now - this.refilledAt) / 1000) * this.perSecond);
    this.refilledAt = now;
    if (this.tokens < 1) return false;
    this.tokens -= 1;
    return true;
  }
}
