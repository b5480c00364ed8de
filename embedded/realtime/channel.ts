// One joined "realtime:<topic>" channel of one socket: the behaviour of the hosted server's
// RealtimeChannel (join, broadcast, presence, access_token, leave) for the features we serve.
import { randomUUID } from "node:crypto";
import { isDeepStrictEqual } from "node:util";
import type postgres from "postgres";
import type { Claims } from "../jwt.ts";
import { AuthorizationError, emptyPolicies, type Authorizer, type Policies } from "./authorization.ts";
import { Outgoing, subscriptionKey, type Fanout, type Subscriber } from "./fanout.ts";
import type { RealtimeLimits } from "./limits.ts";
import type { PresenceMember, PresenceTracker } from "./presence.ts";
import { fetchReplay, type StoredMessage } from "./replay.ts";
import { encodeMessage, encodeReply, encodeUserBroadcast, isObject, type Incoming, type Json, type PhxMessage, type Vsn } from "./serializer.ts";
import { TokenError, verifyRealtimeToken } from "./tokens.ts";

export interface RealtimeContext {
  jwtSecret: string;
  sql: postgres.Sql;
  fanout: Fanout;
  presence: PresenceTracker;
  authorizer: Authorizer;
  limits: RealtimeLimits;
  log: (line: string) => void;
}

/** What a channel needs from its WebSocket connection. */
export interface ChannelSocket {
  readonly vsn: Vsn;
  /** The socket's apikey, used when a join carries no access_token or an `sb_` key. */
  readonly apikeyToken: string;
  send(frame: string | Buffer): void;
  /** Runs `task` after everything already queued for `topic` (a channel handles one message at a time). */
  enqueue(topic: string, task: () => void | Promise<void>): void;
  channelClosed(channel: Channel): void;
  /** Counts a channel's first presence entry against limits.maxPresenceEntriesPerConnection; false when full. */
  claimPresence(channel: Channel): boolean;
  releasePresence(channel: Channel): void;
}

export const TOPIC_PREFIX = "realtime:";
const CONFIRM_TOKEN_MAX_MS = 5 * 60_000;
// Hosted defaults (CLIENT_PRESENCE_MAX_CALLS / CLIENT_PRESENCE_WINDOW_MS).
const PRESENCE_MAX_CALLS = 5;
const PRESENCE_WINDOW_MS = 30_000;
const REPLAY_DEFAULT_LIMIT = 25;
/** No hosted equivalent (see limits.maxPresenceEntriesPerConnection); named in the hosted style. */
const PRESENCE_LIMIT_REACHED = "PresenceLimitReached: Too many presence entries on this connection";

interface Settings {
  isPrivate: boolean;
  ack: boolean;
  self: boolean;
  presenceEnabled: boolean;
  presenceKey: string;
}

export type JoinResult = { ok: true; channel: Channel; replayed: StoredMessage[] } | { ok: false; reason: string };

const fail = (code: string, message: string): JoinResult => ({ ok: false, reason: `${code}: ${message}` });
const readDenied = (subTopic: string) => `You do not have permissions to read from this Channel topic: ${subTopic}`;

/** Realtime's FlexibleBoolean: booleans and "true"/"false" in any case; anything else is the default. */
function flag(value: unknown): boolean {
  if (typeof value === "boolean") return value;
  if (typeof value === "string") return value.toLowerCase() === "true";
  return false;
}

/** access_token/user_token from the join; `sb_` keys and absence fall back to the socket's apikey. */
function chooseToken(params: Json, apikeyToken: string): string {
  const given = params.access_token || params.user_token;
  if (typeof given === "string" && given.startsWith("sb_")) return apikeyToken;
  if (typeof params.user_token === "string") return params.user_token;
  if (typeof params.access_token === "string") return params.access_token;
  return apikeyToken;
}

function joinAuthorizationFailure(err: AuthorizationError, subTopic: string): JoinResult {
  switch (err.failure) {
    case "rls_policy_error":
      return fail("Unauthorized", readDenied(subTopic));
    case "query_canceled":
      return fail("QueryCanceled", err.message);
    case "missing_partition":
      return fail("MissingPartition", err.message);
    case "database_unavailable":
      return fail("UnableToConnectToProject", "Realtime was unable to connect to the project database");
  }
}

function refreshAuthorizationFailure(err: AuthorizationError, subTopic: string): string {
  switch (err.failure) {
    case "rls_policy_error":
      return readDenied(subTopic);
    case "query_canceled":
      return "Query was cancelled, please try again";
    case "missing_partition":
    case "database_unavailable":
      return "Realtime was unable to connect to the project database";
  }
}

export async function joinChannel(ctx: RealtimeContext, socket: ChannelSocket, msg: PhxMessage): Promise<JoinResult> {
  const subTopic = msg.topic.slice(TOPIC_PREFIX.length);
  if (subTopic === "") return fail("TopicNameRequired", "You must provide a topic name");
  const params = msg.payload;
  const config = isObject(params.config) ? params.config : {};
  const changes = Array.isArray(config.postgres_changes) ? config.postgres_changes.filter((c) => c != null) : [];
  if (changes.length > 0) {
    return fail(
      "PostgresChangesNotSupported",
      "this embedded Realtime endpoint serves broadcast and presence only; publish database changes with realtime.send() or realtime.broadcast_changes() and listen with .on('broadcast')",
    );
  }
  const broadcast = isObject(config.broadcast) ? config.broadcast : {};
  const presence = isObject(config.presence) ? config.presence : {};
  const settings: Settings = {
    isPrivate: flag(config.private),
    ack: flag(broadcast.ack),
    self: flag(broadcast.self),
    presenceEnabled: flag(presence.enabled),
    presenceKey: presence.key === undefined || presence.key === null || presence.key === "" ? randomUUID() : String(presence.key),
  };

  const accessToken = chooseToken(params, socket.apikeyToken);
  let claims: Claims;
  try {
    claims = await verifyRealtimeToken(ctx.jwtSecret, accessToken);
  } catch (err) {
    if (err instanceof TokenError) return fail(err.code, err.message);
    throw err;
  }

  let policies: Policies | null = null;
  if (settings.isPrivate) {
    try {
      policies = await ctx.authorizer.read(socket, subTopic, claims, emptyPolicies(), settings.presenceEnabled);
    } catch (err) {
      if (!(err instanceof AuthorizationError)) throw err;
      ctx.log(`realtime: authorization of ${subTopic} failed: ${err.message}`);
      return joinAuthorizationFailure(err, subTopic);
    }
    if (!policies.broadcast.read && !policies.presence.read) return fail("Unauthorized", readDenied(subTopic));
  }

  let replayed: StoredMessage[] = [];
  if ("replay" in broadcast) {
    const replay = broadcast.replay;
    if (policies?.broadcast.read === false) return fail("Unauthorized", readDenied(subTopic));
    if (!settings.isPrivate) return fail("UnableToReplayMessages", "Replay is not allowed for public channels");
    if (isObject(replay)) {
      const limit = replay.limit ?? REPLAY_DEFAULT_LIMIT;
      if (!Number.isInteger(replay.since) || !Number.isInteger(limit)) {
        return fail("UnableToReplayMessages", "Replay params are not valid");
      }
      try {
        replayed = await fetchReplay(ctx.sql, subTopic, replay.since as number, limit as number);
      } catch (err) {
        ctx.log(`realtime: replay of ${subTopic} failed: ${err instanceof Error ? err.message : String(err)}`);
        return fail("UnableToReplayMessages", "Realtime was unable to replay messages");
      }
    }
  }

  const channel = new Channel(ctx, socket, msg.topic, subTopic, msg.joinRef, settings, accessToken, claims, policies);
  return { ok: true, channel, replayed };
}

export class Channel implements Subscriber, PresenceMember {
  readonly key: string;
  readonly presenceKey: string;
  private readonly replayedIds = new Set<string>();
  private readonly isPrivate: boolean;
  private readonly ack: boolean;
  private readonly self: boolean;
  private presenceEnabled: boolean;
  private presencePayload: Json | null = null;
  private presenceWindow = { count: 0, resetAt: 0 };
  /** What delivery checks, like the hosted fastlane metadata: updated only when a check completes. */
  private readable: { broadcast: boolean; presence: boolean | undefined };
  private confirmTimer: NodeJS.Timeout | undefined;
  private closed = false;

  constructor(
    private readonly ctx: RealtimeContext,
    private readonly socket: ChannelSocket,
    readonly topic: string,
    private readonly subTopic: string,
    readonly joinRef: string | null,
    settings: Settings,
    private accessToken: string,
    private claims: Claims,
    /** null on public channels; on private ones undefined entries are not checked yet. */
    private policies: Policies | null,
  ) {
    this.key = subscriptionKey(settings.isPrivate, subTopic);
    this.presenceKey = settings.presenceKey;
    this.isPrivate = settings.isPrivate;
    this.ack = settings.ack;
    this.self = settings.self;
    this.presenceEnabled = settings.presenceEnabled;
    this.readable = this.readableFrom(policies);
  }

  get vsn(): Vsn {
    return this.socket.vsn;
  }

  /** Subscribes, answers the join, then sends replayed rows and the presence state. */
  activate(joinMsgRef: string | null, replayed: StoredMessage[]): void {
    this.ctx.fanout.add(this);
    this.socket.send(encodeReply(this.vsn, this.joinRef, joinMsgRef, this.topic, "ok", { postgres_changes: [] }));
    for (const row of replayed) this.pushReplayed(row);
    if (this.presenceEnabled && this.presenceReadable()) {
      this.push("presence_state", this.ctx.presence.list(this.key));
    }
    this.scheduleTokenCheck();
  }

  receives(message: Outgoing): boolean {
    if (message.isPresence) return this.presenceReadable();
    if (!this.readable.broadcast) return false;
    return message.messageId === null || !this.replayedIds.has(message.messageId);
  }

  send(frame: string | Buffer): void {
    this.socket.send(frame);
  }

  handle(msg: Incoming): void | Promise<void> {
    if (msg.kind === "user_broadcast_push") {
      return this.broadcast(Outgoing.user(msg.userEvent, msg.encoding, msg.body, null), msg.ref);
    }
    switch (msg.event) {
      case "broadcast":
        return this.broadcast(Outgoing.json("broadcast", msg.payload), msg.ref);
      case "presence":
        return this.handlePresence(msg);
      case "access_token":
        return this.refreshToken(msg.payload.access_token);
      default:
        this.ctx.log(`realtime: ignored unexpected message ${msg.event} on ${this.topic}`);
    }
  }

  leave(msgRef: string | null): void {
    this.reply(msgRef, "ok");
    this.close();
  }

  /** Ends the channel as the server does on a normal stop: phx_close, then gone. */
  close(): void {
    this.socket.send(encodeMessage(this.vsn, this.joinRef, this.joinRef, this.topic, "phx_close", {}));
    this.dispose();
    this.socket.channelClosed(this);
  }

  /** Drops all server-side state without telling the client (its socket is gone). */
  dispose(): void {
    if (this.closed) return;
    this.closed = true;
    clearTimeout(this.confirmTimer);
    this.ctx.fanout.remove(this);
    this.ctx.presence.untrack(this);
    this.socket.releasePresence(this);
  }

  private readableFrom(policies: Policies | null): { broadcast: boolean; presence: boolean | undefined } {
    if (!policies) return { broadcast: true, presence: true };
    return { broadcast: policies.broadcast.read === true, presence: policies.presence.read };
  }

  /** presence.read not evaluated at join (presence off) is looked up at delivery, as the hosted server does. */
  private presenceReadable(): boolean {
    if (this.readable.presence !== undefined) return this.readable.presence;
    return this.policies?.presence.read === true;
  }

  private push(event: string, payload: Json): void {
    this.socket.send(encodeMessage(this.vsn, this.joinRef, null, this.topic, event, payload));
  }

  private reply(msgRef: string | null, status: "ok" | "error", response: Json = {}): void {
    this.socket.send(encodeReply(this.vsn, this.joinRef, msgRef, this.topic, status, response));
  }

  private pushReplayed(row: StoredMessage): void {
    if (row.event === null) return;
    this.replayedIds.add(row.id);
    const meta = { replayed: true, id: row.id };
    if (row.binary_payload) {
      // V1 sockets cannot represent binary payloads.
      if (this.vsn !== 2) return;
      const frame = encodeUserBroadcast(this.topic, row.event, meta, "binary", row.binary_payload);
      if (frame) this.socket.send(frame);
      return;
    }
    this.push("broadcast", { payload: row.payload, event: row.event, type: "broadcast", meta });
  }

  /** System error, then phx_close (shutdown_response in realtime_channel.ex). */
  private shutdown(message: string): void {
    if (this.closed) return;
    this.push("system", { extension: "system", status: "error", message, channel: this.subTopic });
    this.close();
  }

  private broadcast(message: Outgoing, msgRef: string | null): void | Promise<void> {
    if (!this.isPrivate) return this.publish(message, msgRef);
    return this.privateBroadcast(message, msgRef);
  }

  private async privateBroadcast(message: Outgoing, msgRef: string | null): Promise<void> {
    let policies = this.policies ?? emptyPolicies();
    if (policies.broadcast.write === undefined) {
      try {
        policies = await this.ctx.authorizer.write(this.socket, this.subTopic, this.claims, policies);
      } catch (err) {
        if (this.closed) return;
        this.ctx.log(`realtime: write authorization of ${this.subTopic} failed: ${err instanceof Error ? err.message : String(err)}`);
        return;
      }
      if (this.closed) return;
      this.policies = policies;
    }
    // Without write permission the hosted server drops the message and sends no reply, even with ack.
    if (policies.broadcast.write) this.publish(message, msgRef);
  }

  private publish(message: Outgoing, msgRef: string | null): void {
    this.ctx.fanout.publish(this.key, message, this.self ? undefined : this);
    if (this.ack) this.reply(msgRef, "ok");
  }

  private handlePresence(msg: PhxMessage): void | Promise<void> {
    const event = msg.payload.event;
    if (typeof event !== "string") return this.reply(msg.ref, "ok");
    if (!this.countPresenceCall()) return this.shutdown("Client presence rate limit exceeded");
    switch (event.toLowerCase()) {
      case "track":
        return this.track(msg);
      case "untrack":
        this.ctx.presence.untrack(this);
        this.socket.releasePresence(this);
        this.presencePayload = null;
        return this.reply(msg.ref, "ok");
      default:
        this.ctx.log(`realtime: unknown presence event ${event} on ${this.topic}`);
        return this.reply(msg.ref, "error");
    }
  }

  private countPresenceCall(): boolean {
    const now = Date.now();
    if (now > this.presenceWindow.resetAt) {
      this.presenceWindow = { count: 1, resetAt: now + PRESENCE_WINDOW_MS };
      return true;
    }
    if (this.presenceWindow.count >= PRESENCE_MAX_CALLS) return false;
    this.presenceWindow.count++;
    return true;
  }

  private track(msg: PhxMessage): void | Promise<void> {
    if (this.policies && this.policies.presence.write === undefined) return this.authorizeTrack(msg);
    if (this.policies && !this.policies.presence.write) return this.reply(msg.ref, "error");
    const meta = "payload" in msg.payload ? msg.payload.payload : {};
    if (!isObject(meta)) return this.reply(msg.ref, "error", { reason: "Presence track payload must be a map" });
    // Hosted: Tenants.validate_payload_size, then shutdown_response (realtime_channel.ex).
    if (Buffer.byteLength(JSON.stringify(meta)) > this.ctx.limits.maxPresencePayloadBytes) {
      return this.shutdown("Track message size exceeded");
    }
    if (this.presencePayload === null && !this.socket.claimPresence(this)) {
      return this.reply(msg.ref, "error", { reason: PRESENCE_LIMIT_REACHED });
    }
    if (!isDeepStrictEqual(meta, this.presencePayload)) {
      this.ctx.presence.track(this, meta);
      this.presencePayload = meta;
      this.presenceEnabled = true;
    }
    this.reply(msg.ref, "ok");
  }

  /** A private channel's first track checks presence read (if skipped at join) and write. */
  private async authorizeTrack(msg: PhxMessage): Promise<void> {
    let policies = this.policies ?? emptyPolicies();
    try {
      if (policies.presence.read === undefined) {
        policies = await this.ctx.authorizer.read(this.socket, this.subTopic, this.claims, policies, true);
      }
      policies = await this.ctx.authorizer.write(this.socket, this.subTopic, this.claims, policies, true);
    } catch (err) {
      if (this.closed) return;
      this.ctx.log(`realtime: presence authorization of ${this.subTopic} failed: ${err instanceof Error ? err.message : String(err)}`);
      return this.reply(msg.ref, "error");
    }
    if (this.closed) return;
    this.policies = policies;
    return this.track(msg);
  }

  /** access_token push: never answered; re-verifies and, on private channels, re-authorizes. */
  private async refreshToken(token: unknown): Promise<void> {
    if (typeof token !== "string" || token.startsWith("sb_") || token === this.accessToken) return;
    const previous = this.policies;
    this.accessToken = token;
    if (this.policies) this.policies = emptyPolicies();
    let claims: Claims;
    try {
      claims = await verifyRealtimeToken(this.ctx.jwtSecret, token);
    } catch (err) {
      if (err instanceof TokenError) return this.shutdown(err.message);
      throw err;
    }
    if (this.closed) return;
    this.claims = claims;
    this.scheduleTokenCheck();
    if (!this.isPrivate || !previous) return;
    let policies: Policies;
    try {
      policies = await this.ctx.authorizer.read(this.socket, this.subTopic, claims, emptyPolicies(), this.presenceEnabled);
    } catch (err) {
      if (this.closed) return;
      if (!(err instanceof AuthorizationError)) throw err;
      return this.shutdown(refreshAuthorizationFailure(err, this.subTopic));
    }
    if (this.closed) return;
    this.policies = policies;
    if (!policies.broadcast.read && !policies.presence.read) return this.shutdown(readDenied(this.subTopic));
    const revoked = (previous.broadcast.read === true && policies.broadcast.read === false) || (previous.presence.read === true && policies.presence.read === false);
    if (revoked) {
      return this.shutdown(`You no longer have permission to read from this Channel topic: ${this.subTopic}`);
    }
    this.readable = this.readableFrom(policies);
  }

  /** The hosted server re-checks the token every 5 minutes and at its expiry. */
  private scheduleTokenCheck(): void {
    clearTimeout(this.confirmTimer);
    const exp = typeof this.claims.exp === "number" ? this.claims.exp : 0;
    const delay = Math.max(0, Math.min(CONFIRM_TOKEN_MAX_MS, exp * 1000 - Date.now() + 10));
    this.confirmTimer = setTimeout(() => this.socket.enqueue(this.topic, () => this.confirmToken()), delay);
    this.confirmTimer.unref();
  }

  private async confirmToken(): Promise<void> {
    if (this.closed) return;
    try {
      this.claims = await verifyRealtimeToken(this.ctx.jwtSecret, this.accessToken);
    } catch (err) {
      if (err instanceof TokenError) return this.shutdown(err.message);
      throw err;
    }
    if (!this.closed) this.scheduleTokenCheck();
  }
}
