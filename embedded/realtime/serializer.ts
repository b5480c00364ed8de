// Phoenix wire format as realtime-js speaks it (server side: Phoenix.Socket.V1.JSONSerializer and
// supabase/realtime RealtimeWeb.Socket.V2Serializer). vsn 1.0.0: JSON objects both ways. vsn 2.0.0:
// JSON arrays, plus binary kind 3 (client broadcast push) in and kind 4 (user broadcast) out.
import { MalformedFrameError } from "./errors.ts";

export type Vsn = 1 | 2;
export type Json = Record<string, unknown>;
export type PayloadEncoding = "json" | "binary";

export interface PhxMessage {
  kind: "message";
  joinRef: string | null;
  ref: string | null;
  topic: string;
  event: string;
  payload: Json;
}

/** A client `channel.send({type:'broadcast'})` in vsn 2: the user payload travels as raw bytes. */
export interface UserBroadcastPush {
  kind: "user_broadcast_push";
  joinRef: string;
  ref: string;
  topic: string;
  event: "broadcast";
  userEvent: string;
  encoding: PayloadEncoding;
  body: Buffer;
}

export type Incoming = PhxMessage | UserBroadcastPush;

const KIND_USER_BROADCAST_PUSH = 3;
const KIND_USER_BROADCAST = 4;
const MAX_FIELD_BYTES = 255;

export function isObject(value: unknown): value is Json {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

function ref(value: unknown, what: string): string | null {
  if (value === null || value === undefined) return null;
  if (typeof value === "string") return value;
  if (typeof value === "number") return String(value);
  throw new MalformedFrameError(`${what} must be a string or null`);
}

function message(joinRef: unknown, msgRef: unknown, topic: unknown, event: unknown, payload: unknown): PhxMessage {
  if (typeof topic !== "string" || typeof event !== "string") {
    throw new MalformedFrameError("topic and event must be strings");
  }
  if (!isObject(payload)) throw new MalformedFrameError("payload must be a JSON object");
  return { kind: "message", joinRef: ref(joinRef, "join_ref"), ref: ref(msgRef, "ref"), topic, event, payload };
}

function decodeUserBroadcastPush(frame: Buffer): UserBroadcastPush {
  const HEADER = 7;
  if (frame.length < HEADER) throw new MalformedFrameError("truncated binary frame header");
  const sizes = [frame[1]!, frame[2]!, frame[3]!, frame[4]!, frame[5]!];
  const encodingByte = frame[6]!;
  let offset = HEADER;
  const fields = sizes.map((size) => {
    if (offset + size > frame.length) throw new MalformedFrameError("truncated binary frame");
    const text = frame.toString("utf8", offset, offset + size);
    offset += size;
    return text;
  });
  const [joinRef, msgRef, topic, userEvent] = fields as [string, string, string, string, string];
  const body = frame.subarray(offset);
  const encoding: PayloadEncoding = encodingByte === 0 ? "binary" : "json";
  if (encoding === "json") {
    // Checked here so a bad payload never reaches other clients' JSON.parse.
    try {
      JSON.parse(body.toString("utf8"));
    } catch {
      throw new MalformedFrameError("broadcast payload is not valid JSON");
    }
  }
  return { kind: "user_broadcast_push", joinRef, ref: msgRef, topic, event: "broadcast", userEvent, encoding, body };
}

/** Decodes one WebSocket frame; throws MalformedFrameError for anything the server cannot use. */
export function decodeFrame(vsn: Vsn, data: Buffer, isBinary: boolean): Incoming {
  if (isBinary) {
    if (vsn === 1) throw new MalformedFrameError("binary frames require vsn 2.0.0");
    const kind = data[0];
    if (kind === KIND_USER_BROADCAST_PUSH) return decodeUserBroadcastPush(data);
    throw new MalformedFrameError(`unsupported binary frame kind ${kind ?? "(empty)"}`);
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(data.toString("utf8"));
  } catch {
    throw new MalformedFrameError("text frame is not valid JSON");
  }
  if (vsn === 2) {
    if (!Array.isArray(parsed) || parsed.length < 5) throw new MalformedFrameError("expected V2 array");
    return message(parsed[0], parsed[1], parsed[2], parsed[3], parsed[4]);
  }
  if (!isObject(parsed)) throw new MalformedFrameError("V1 JSON serializer expected a map");
  return message(parsed.join_ref, parsed.ref, parsed.topic, parsed.event, parsed.payload);
}

/** A server push or reply; V1 carries no join_ref (Phoenix encodes only topic/event/payload/ref). */
export function encodeMessage(vsn: Vsn, joinRef: string | null, msgRef: string | null, topic: string, event: string, payload: unknown): string {
  return vsn === 2 ? JSON.stringify([joinRef, msgRef, topic, event, payload]) : JSON.stringify({ topic, event, payload, ref: msgRef });
}

export function encodeReply(vsn: Vsn, joinRef: string | null, msgRef: string | null, topic: string, status: "ok" | "error", response: Json): string {
  return encodeMessage(vsn, joinRef, msgRef, topic, "phx_reply", { status, response });
}

/** Kind-4 frame, the only binary form realtime-js decodes. Null when a header field exceeds 255 bytes. */
export function encodeUserBroadcast(topic: string, userEvent: string, metadata: Json | null, encoding: PayloadEncoding, body: Buffer): Buffer | null {
  const topicBytes = Buffer.from(topic, "utf8");
  const eventBytes = Buffer.from(userEvent, "utf8");
  const metaBytes = metadata ? Buffer.from(JSON.stringify(metadata), "utf8") : Buffer.alloc(0);
  if (topicBytes.length > MAX_FIELD_BYTES || eventBytes.length > MAX_FIELD_BYTES || metaBytes.length > MAX_FIELD_BYTES) {
    return null;
  }
  const header = Buffer.from([KIND_USER_BROADCAST, topicBytes.length, eventBytes.length, metaBytes.length, encoding === "json" ? 1 : 0]);
  return Buffer.concat([header, topicBytes, eventBytes, metaBytes, body]);
}

/**
 * What a V1 socket gets for a user broadcast (UserBroadcast.convert_to_json_broadcast): a JSON
 * broadcast with the body embedded as raw JSON text. Binary payloads cannot be represented: null.
 */
export function encodeUserBroadcastForV1(topic: string, userEvent: string, metadata: Json | null, encoding: PayloadEncoding, body: Buffer): string | null {
  if (encoding !== "json") return null;
  const payload = `{"event":${JSON.stringify(userEvent)},"payload":${body.toString("utf8")},"type":"broadcast"` + (metadata ? `,"meta":${JSON.stringify(metadata)}}` : "}");
  return `{"topic":${JSON.stringify(topic)},"event":"broadcast","payload":${payload},"ref":null}`;
}
