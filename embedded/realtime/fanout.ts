// In-process pub/sub: one outgoing message, encoded once per protocol version, written to every
// subscribed socket. This is the hot path of database broadcasts, so it never touches the database.
import { encodeMessage, encodeUserBroadcast, encodeUserBroadcastForV1, type Json, type PayloadEncoding, type Vsn } from "./serializer.ts";

export interface Subscriber {
  /** subscriptionKey(private, subTopic); public and private channels of one name never mix. */
  readonly key: string;
  /** The joined topic, "realtime:<subTopic>". */
  readonly topic: string;
  readonly vsn: Vsn;
  receives(message: Outgoing): boolean;
  send(frame: string | Buffer): void;
}

export function subscriptionKey(isPrivate: boolean, subTopic: string): string {
  return `${isPrivate ? "private" : "public"}:${subTopic}`;
}

type Body =
  | { kind: "json"; event: "broadcast" | "presence_diff"; payload: Json }
  | { kind: "user"; userEvent: string; encoding: PayloadEncoding; body: Buffer; metadata: Json | null };

/**
 * Phoenix.Socket.Broadcast (kind "json": REST batch, vsn 1 or text pushes, presence diffs) or
 * RealtimeWeb.Socket.UserBroadcast (kind "user": binary pushes, httpSend, database rows).
 */
export class Outgoing {
  private readonly frames: [string | Buffer | null | undefined, string | Buffer | null | undefined] = [undefined, undefined];

  private constructor(
    readonly body: Body,
    /** realtime.messages id, for skipping rows a channel already got through replay. */
    readonly messageId: string | null,
  ) {}

  static json(event: "broadcast" | "presence_diff", payload: Json, messageId: string | null = null): Outgoing {
    return new Outgoing({ kind: "json", event, payload }, messageId);
  }

  static user(userEvent: string, encoding: PayloadEncoding, body: Buffer, metadata: Json | null, messageId: string | null = null): Outgoing {
    return new Outgoing({ kind: "user", userEvent, encoding, body, metadata }, messageId);
  }

  get isPresence(): boolean {
    return this.body.kind === "json" && this.body.event === "presence_diff";
  }

  /** Null when this protocol version cannot carry the message (binary payload to vsn 1, oversized header). */
  frame(vsn: Vsn, topic: string): string | Buffer | null {
    const cached = this.frames[vsn - 1];
    if (cached !== undefined) return cached;
    const b = this.body;
    let frame: string | Buffer | null;
    if (b.kind === "json") frame = encodeMessage(vsn, null, null, topic, b.event, b.payload);
    else if (vsn === 2) frame = encodeUserBroadcast(topic, b.userEvent, b.metadata, b.encoding, b.body);
    else frame = encodeUserBroadcastForV1(topic, b.userEvent, b.metadata, b.encoding, b.body);
    this.frames[vsn - 1] = frame;
    return frame;
  }
}

export class Fanout {
  private readonly subscribers = new Map<string, Set<Subscriber>>();
  private count = 0;
  delivered = 0;

  add(subscriber: Subscriber): void {
    let set = this.subscribers.get(subscriber.key);
    if (!set) this.subscribers.set(subscriber.key, (set = new Set()));
    if (!set.has(subscriber)) {
      set.add(subscriber);
      this.count++;
    }
  }

  remove(subscriber: Subscriber): void {
    const set = this.subscribers.get(subscriber.key);
    if (!set?.delete(subscriber)) return;
    this.count--;
    if (set.size === 0) this.subscribers.delete(subscriber.key);
  }

  get size(): number {
    return this.count;
  }

  /** `except` is the sender of a broadcast without `self: true` (pubsub_broadcast_from). */
  publish(key: string, message: Outgoing, except?: Subscriber): void {
    const set = this.subscribers.get(key);
    if (!set) return;
    for (const subscriber of set) {
      if (subscriber === except || !subscriber.receives(message)) continue;
      const frame = message.frame(subscriber.vsn, subscriber.topic);
      if (frame === null) continue;
      subscriber.send(frame);
      this.delivered++;
    }
  }
}
