// REST broadcast: POST /realtime/v1/api/broadcast (batch, what send() falls back to) and
// POST /realtime/v1/api/broadcast/<topic>/events/<event> (httpSend). Answers 202 with an empty body.
import type { IncomingMessage, ServerResponse } from "node:http";
import type { Claims } from "../jwt.ts";
import { AuthorizationError, emptyPolicies } from "./authorization.ts";
import type { RealtimeContext } from "./channel.ts";
import { Outgoing, subscriptionKey } from "./fanout.ts";
import { isObject, type Json } from "./serializer.ts";
import { TokenError, verifyRealtimeToken } from "./tokens.ts";

export const REST_PREFIX = "/realtime/v1/api";
const MAX_BODY_BYTES = 5_000_000;

class HttpFailure extends Error {
  constructor(
    readonly status: number,
    readonly body: Json,
  ) {
    super(`HTTP ${status}`);
  }
}

function respond(res: ServerResponse, status: number, body?: Json): void {
  const text = body ? JSON.stringify(body) : "";
  res.writeHead(status, {
    "access-control-allow-origin": "*",
    ...(body ? { "content-type": "application/json" } : {}),
    "content-length": Buffer.byteLength(text),
  });
  res.end(text);
}

async function readBody(req: IncomingMessage): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    size += (chunk as Buffer).length;
    if (size > MAX_BODY_BYTES) throw new HttpFailure(413, { message: "Payload Too Large" });
    chunks.push(chunk as Buffer);
  }
  return Buffer.concat(chunks);
}

function parseJson(raw: Buffer): unknown {
  if (raw.length === 0) return {};
  try {
    return JSON.parse(raw.toString("utf8"));
  } catch {
    throw new HttpFailure(400, { message: "Bad Request" });
  }
}

/** Authorization: Bearer wins over the apikey header (RealtimeWeb.AuthTenant). */
async function authenticate(ctx: RealtimeContext, req: IncomingMessage): Promise<Claims> {
  const bearer = /^bearer\s+(\S+)$/i.exec(req.headers.authorization ?? "")?.[1];
  const apikey = req.headers.apikey;
  const token = bearer ?? (typeof apikey === "string" ? apikey : undefined);
  if (!token) throw new HttpFailure(401, { message: "Unauthorized" });
  try {
    return await verifyRealtimeToken(ctx.jwtSecret, token);
  } catch (err) {
    if (err instanceof TokenError) throw new HttpFailure(401, { message: "Unauthorized" });
    throw err;
  }
}

/** A REST client's checks share one place in the authorization queue per address. */
async function canWrite(ctx: RealtimeContext, req: IncomingMessage, topic: string, claims: Claims): Promise<boolean> {
  const policies = await ctx.authorizer.write(`rest:${req.socket.remoteAddress ?? "unknown"}`, topic, claims, emptyPolicies());
  return policies.broadcast.write === true;
}

type BatchMessage = { topic: string; event: string; payload: Json; private: boolean; id: string | null };

/** Ecto-style validation: 422 with {errors: {messages: [per-message errors]}}. */
function validateBatch(body: unknown): BatchMessage[] {
  const messages = isObject(body) ? body.messages : undefined;
  if (!Array.isArray(messages) || messages.length === 0) {
    throw new HttpFailure(422, { errors: { messages: ["can't be blank"] } });
  }
  const valid: BatchMessage[] = [];
  const errors = messages.map((m: unknown) => {
    const e: Record<string, string[]> = {};
    const msg = isObject(m) ? m : {};
    for (const field of ["topic", "event"] as const) {
      const value = msg[field];
      if (value === undefined || value === null || value === "") e[field] = ["can't be blank"];
      else if (typeof value !== "string") e[field] = ["is invalid"];
    }
    if (msg.payload === undefined || msg.payload === null) e.payload = ["can't be blank"];
    else if (!isObject(msg.payload)) e.payload = ["is invalid"];
    const priv = msg.private;
    if (priv !== undefined && priv !== null && typeof priv !== "boolean" && priv !== "true" && priv !== "false") {
      e.private = ["is invalid"];
    }
    if (Object.keys(e).length === 0) {
      valid.push({
        topic: msg.topic as string,
        event: msg.event as string,
        payload: msg.payload as Json,
        private: priv === true || priv === "true",
        id: typeof msg.id === "string" ? msg.id : null,
      });
    }
    return e;
  });
  if (valid.length !== messages.length) throw new HttpFailure(422, { errors: { messages: errors } });
  return valid;
}

function batchOutgoing(m: BatchMessage): Outgoing {
  const payload: Json = { payload: m.payload, event: m.event, type: "broadcast" };
  if (m.id) payload.meta = { id: m.id };
  return Outgoing.json("broadcast", payload, m.id);
}

/** Private messages go out per topic only if the caller may INSERT (RLS); otherwise silently dropped. */
async function broadcastBatch(ctx: RealtimeContext, req: IncomingMessage, claims: Claims): Promise<void> {
  const messages = validateBatch(parseJson(await readBody(req)));
  const privateByTopic = new Map<string, BatchMessage[]>();
  for (const m of messages) {
    if (!m.private) ctx.fanout.publish(subscriptionKey(false, m.topic), batchOutgoing(m));
    else if (privateByTopic.has(m.topic)) privateByTopic.get(m.topic)!.push(m);
    else privateByTopic.set(m.topic, [m]);
  }
  for (const [topic, group] of privateByTopic) {
    let allowed = false;
    try {
      allowed = await canWrite(ctx, req, topic, claims);
    } catch (err) {
      ctx.log(`realtime: REST broadcast authorization of ${topic} failed: ${err instanceof Error ? err.message : String(err)}`);
    }
    if (allowed) for (const m of group) ctx.fanout.publish(subscriptionKey(true, topic), batchOutgoing(m));
  }
}

function authorizationFailureBody(err: AuthorizationError): Json {
  const messages = {
    rls_policy_error: "RLS policy error",
    query_canceled: "Query canceled",
    missing_partition: "Missing messages partition",
    database_unavailable: "Tenant database unavailable",
  } as const;
  return { message: messages[err.failure] };
}

async function broadcastSingle(ctx: RealtimeContext, req: IncomingMessage, claims: Claims, url: URL, topic: string, event: string): Promise<void> {
  const contentType = req.headers["content-type"];
  const mediaType = contentType?.split(";")[0]?.trim().toLowerCase();
  if (mediaType !== undefined && mediaType !== "application/json" && mediaType !== "application/octet-stream") {
    throw new HttpFailure(415, { error: "Unsupported Media Type. Use application/json or application/octet-stream" });
  }
  const raw = await readBody(req);
  let message: Outgoing;
  if (mediaType === "application/octet-stream") {
    message = Outgoing.user(event, "binary", raw, null);
  } else {
    // Plug wraps a non-object JSON body as {"_json": value}.
    const parsed = parseJson(raw);
    const payload = isObject(parsed) ? parsed : { _json: parsed };
    message = Outgoing.user(event, "json", Buffer.from(JSON.stringify(payload), "utf8"), null);
  }
  const isPrivate = url.searchParams.get("private") === "true";
  if (isPrivate) {
    let allowed: boolean;
    try {
      allowed = await canWrite(ctx, req, topic, claims);
    } catch (err) {
      if (err instanceof AuthorizationError) throw new HttpFailure(422, authorizationFailureBody(err));
      throw err;
    }
    if (!allowed) throw new HttpFailure(403, { message: "Unauthorized" });
  }
  ctx.fanout.publish(subscriptionKey(isPrivate, topic), message);
}

type Route = { kind: "batch" } | { kind: "single"; topic: string; event: string };

function matchRoute(path: string): Route | null {
  if (path === "/broadcast") return { kind: "batch" };
  const parts = path.split("/");
  if (parts.length === 5 && parts[0] === "" && parts[1] === "broadcast" && parts[3] === "events") {
    try {
      const topic = decodeURIComponent(parts[2]!);
      const event = decodeURIComponent(parts[4]!);
      if (topic && event) return { kind: "single", topic, event };
    } catch {
      return null;
    }
  }
  return null;
}

/** Returns false when the path is not under /realtime/v1/api. */
export async function handleRest(ctx: RealtimeContext, req: IncomingMessage, res: ServerResponse): Promise<boolean> {
  const url = new URL(req.url ?? "/", "http://localhost");
  if (url.pathname !== REST_PREFIX && !url.pathname.startsWith(`${REST_PREFIX}/`)) return false;
  const route = matchRoute(url.pathname.slice(REST_PREFIX.length));
  try {
    if (req.method === "OPTIONS" && route) {
      res.writeHead(204, {
        "access-control-allow-origin": "*",
        "access-control-allow-methods": "POST, OPTIONS",
        "access-control-allow-headers": req.headers["access-control-request-headers"] ?? "authorization, apikey, content-type",
        "access-control-max-age": "86400",
      });
      res.end();
      return true;
    }
    if (!route || req.method !== "POST") throw new HttpFailure(404, { message: "Not Found" });
    const claims = await authenticate(ctx, req);
    if (route.kind === "batch") await broadcastBatch(ctx, req, claims);
    else await broadcastSingle(ctx, req, claims, url, route.topic, route.event);
    respond(res, 202);
  } catch (err) {
    if (err instanceof HttpFailure) {
      respond(res, err.status, err.body);
    } else {
      ctx.log(`realtime: REST broadcast failed: ${err instanceof Error ? err.stack : String(err)}`);
      respond(res, 500, { message: "Internal Server Error" });
    }
  }
  return true;
}
