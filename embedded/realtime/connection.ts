// One WebSocket: decodes frames and routes them like Phoenix.Socket (heartbeat, join, leave,
// messages to joined channels, "unmatched topic" for the rest). A bad frame is dropped, never fatal.
// Joins are counted and rate-limited here, before any of their work starts.
import type { Duplex } from "node:stream";
import { WebSocket, type RawData } from "ws";
import { type Channel, joinChannel, TOPIC_PREFIX, type ChannelSocket, type RealtimeContext } from "./channel.ts";
import { MalformedFrameError } from "./errors.ts";
import { QueueCancelledError } from "./fair-queue.ts";
import { TokenBucket } from "./limits.ts";
import { decodeFrame, encodeReply, type Incoming, type PhxMessage, type Vsn } from "./serializer.ts";

/** A client this far behind is cut off rather than buffered without bound; it reconnects and replays. */
const MAX_BUFFERED_BYTES = 64 * 1024 * 1024;
// Join refusals as the hosted server words them (lib/realtime_web/channels/realtime_channel.ex,
// join/3: {:error, :too_many_joins} and {:error, :too_many_channels}).
const TOO_MANY_JOINS = "ClientJoinRateLimitReached: Too many joins per second";
const TOO_MANY_CHANNELS = "ChannelRateLimitReached: Too many channels";
/** 1008 Policy Violation: the hosted server drops the transport after a join over the rate. */
const CLOSE_POLICY_VIOLATION = 1008;
const SHUTDOWN_GRACE_MS = 1000;

type Task = () => void | Promise<void>;

/** Runs tasks one at a time per key; synchronous tasks on an idle key run immediately. */
class KeyedQueue {
  /** A key is present while one of its tasks is in flight; the array holds those waiting behind it. */
  private readonly busy = new Map<string, Task[]>();

  constructor(private readonly onError: (err: unknown) => void) {}

  run(key: string, task: Task): void {
    const queue = this.busy.get(key);
    if (queue) queue.push(task);
    else this.drain(key, [task]);
  }

  private drain(key: string, queue: Task[]): void {
    for (let task = queue.shift(); task; task = queue.shift()) {
      const pending = this.attempt(task);
      if (pending) {
        this.busy.set(key, queue);
        void pending.then(() => this.drain(key, queue));
        return;
      }
    }
    this.busy.delete(key);
  }

  private attempt(task: Task): Promise<void> | undefined {
    try {
      const result = task();
      return result instanceof Promise ? result.catch(this.onError) : undefined;
    } catch (err) {
      this.onError(err);
      return undefined;
    }
  }
}

function toBuffer(data: RawData): Buffer {
  if (Buffer.isBuffer(data)) return data;
  if (Array.isArray(data)) return Buffer.concat(data);
  return Buffer.from(data);
}

export class Connection implements ChannelSocket {
  private readonly channels = new Map<string, Channel>();
  /** Topics with a join admitted but not yet answered, and how many joins of each. */
  private readonly joining = new Map<string, number>();
  private readonly tracking = new Set<Channel>();
  private readonly joinBucket: TokenBucket;
  private readonly queue: KeyedQueue;
  /** Set when the server decides to drop the socket; from then on frames are ignored. */
  private closing = false;
  private closed = false;
  private corked = false;

  constructor(
    private readonly ctx: RealtimeContext,
    private readonly ws: WebSocket,
    /** The upgraded TCP socket under `ws`, corked per tick so a burst of frames is one write. */
    private readonly socket: Duplex,
    readonly vsn: Vsn,
    readonly apikeyToken: string,
    private readonly onClosed: (connection: Connection) => void,
  ) {
    this.queue = new KeyedQueue((err) => ctx.log(`realtime: channel task failed: ${err instanceof Error ? err.stack : String(err)}`));
    this.joinBucket = new TokenBucket(ctx.limits.maxJoinsPerSecond);
    ws.on("message", (data, isBinary) => this.receive(toBuffer(data), isBinary));
    ws.on("error", (err) => ctx.log(`realtime: socket error: ${err.message}`));
    ws.on("close", () => this.teardown());
  }

  send(frame: string | Buffer): void {
    if (this.ws.readyState !== WebSocket.OPEN) return;
    if (this.ws.bufferedAmount > MAX_BUFFERED_BYTES) {
      this.ctx.log(`realtime: closing a socket that fell ${this.ws.bufferedAmount} bytes behind`);
      this.ws.terminate();
      return;
    }
    if (!this.corked) {
      this.corked = true;
      this.socket.cork();
      process.nextTick(this.uncork);
    }
    this.ws.send(frame);
  }

  private readonly uncork = (): void => {
    this.corked = false;
    this.socket.uncork();
  };

  enqueue(topic: string, task: () => void | Promise<void>): void {
    this.queue.run(topic, task);
  }

  channelClosed(channel: Channel): void {
    if (this.channels.get(channel.topic) === channel) this.channels.delete(channel.topic);
  }

  close(code: number, reason: string): void {
    this.ws.close(code, reason);
  }

  claimPresence(channel: Channel): boolean {
    if (this.tracking.has(channel)) return true;
    if (this.tracking.size >= this.ctx.limits.maxPresenceEntriesPerConnection) return false;
    this.tracking.add(channel);
    return true;
  }

  releasePresence(channel: Channel): void {
    this.tracking.delete(channel);
  }

  private receive(data: Buffer, isBinary: boolean): void {
    if (this.closing) return;
    let msg: Incoming;
    try {
      msg = decodeFrame(this.vsn, data, isBinary);
    } catch (err) {
      const reason = err instanceof MalformedFrameError ? err.message : String(err);
      this.ctx.log(`realtime: dropped malformed frame (${reason})`);
      return;
    }
    if (msg.topic === "phoenix" && msg.event === "heartbeat") {
      this.send(encodeReply(this.vsn, null, msg.ref, "phoenix", "ok", {}));
      return;
    }
    if (msg.kind === "message" && msg.event === "phx_join" && msg.topic.startsWith(TOPIC_PREFIX) && !this.admitJoin(msg)) return;
    this.queue.run(msg.topic, () => this.route(msg));
  }

  /**
   * The hosted join checks in their order (limit_joins, then limit_channels), made before the
   * join is queued: a refused join costs no JWT verification and no database work. Joins still
   * waiting for authorization count as channels, so a flood cannot queue more than the cap.
   */
  private admitJoin(msg: PhxMessage): boolean {
    if (!this.joinBucket.take()) {
      this.send(encodeReply(this.vsn, msg.joinRef, msg.ref, msg.topic, "error", { reason: TOO_MANY_JOINS }));
      this.ctx.log(`realtime: ${TOO_MANY_JOINS} (over ${this.ctx.limits.maxJoinsPerSecond}/s); closing the socket`);
      this.shutdown(CLOSE_POLICY_VIOLATION, "Too many joins per second");
      return false;
    }
    if (!this.channels.has(msg.topic) && !this.joining.has(msg.topic) && this.channelCount() >= this.ctx.limits.maxChannelsPerConnection) {
      this.send(encodeReply(this.vsn, msg.joinRef, msg.ref, msg.topic, "error", { reason: TOO_MANY_CHANNELS }));
      return false;
    }
    this.joining.set(msg.topic, (this.joining.get(msg.topic) ?? 0) + 1);
    return true;
  }

  /** Joined channels plus topics whose first join is still in progress. */
  private channelCount(): number {
    let n = this.channels.size;
    for (const topic of this.joining.keys()) if (!this.channels.has(topic)) n++;
    return n;
  }

  private joinDone(topic: string): void {
    const n = this.joining.get(topic) ?? 0;
    if (n <= 1) this.joining.delete(topic);
    else this.joining.set(topic, n - 1);
  }

  /**
   * Drops the socket's channels and queued authorizations now and closes it. Nothing more is read
   * from it (the rest of a flood stays in the kernel, then is discarded); it is cut after
   * SHUTDOWN_GRACE_MS, time enough for the refusal and the close frame to go out.
   */
  private shutdown(code: number, reason: string): void {
    this.closing = true;
    this.release();
    this.socket.pause();
    this.ws.close(code, reason);
    setTimeout(() => this.ws.terminate(), SHUTDOWN_GRACE_MS).unref();
  }

  private route(msg: Incoming): void | Promise<void> {
    if (this.closing) return;
    const channel = this.channels.get(msg.topic);
    if (msg.kind === "message" && msg.event === "phx_join") return this.join(msg, channel);
    if (!channel) {
      if (msg.event === "phx_leave") this.send(encodeReply(this.vsn, msg.joinRef, msg.ref, msg.topic, "ok", {}));
      else this.send(encodeReply(this.vsn, null, msg.ref, msg.topic, "error", { reason: "unmatched topic" }));
      return;
    }
    if (msg.event === "phx_leave") {
      // A leave for an older join of this topic raced a server close; Phoenix ignores it.
      if (msg.joinRef === null || msg.joinRef === channel.joinRef) channel.leave(msg.ref);
      return;
    }
    return channel.handle(msg);
  }

  private async join(msg: PhxMessage, existing: Channel | undefined): Promise<void> {
    if (!msg.topic.startsWith(TOPIC_PREFIX)) {
      this.send(encodeReply(this.vsn, null, msg.ref, msg.topic, "error", { reason: "unmatched topic" }));
      return;
    }
    // Duplicate join: Phoenix closes the existing channel and joins anew.
    existing?.close();
    let result: Awaited<ReturnType<typeof joinChannel>>;
    try {
      result = await joinChannel(this.ctx, this, msg);
    } catch (err) {
      if (err instanceof QueueCancelledError || this.closing) return;
      this.ctx.log(`realtime: join of ${msg.topic} failed: ${err instanceof Error ? err.stack : String(err)}`);
      result = { ok: false, reason: "Unknown Error on Channel" };
    } finally {
      this.joinDone(msg.topic);
    }
    if (this.closing) return;
    if (!result.ok) {
      this.send(encodeReply(this.vsn, msg.joinRef, msg.ref, msg.topic, "error", { reason: result.reason }));
      return;
    }
    this.channels.set(msg.topic, result.channel);
    result.channel.activate(msg.ref, result.replayed);
  }

  private teardown(): void {
    if (this.closed) return;
    this.closed = true;
    this.closing = true;
    this.release();
    this.onClosed(this);
  }

  private release(): void {
    for (const channel of this.channels.values()) channel.dispose();
    this.channels.clear();
    this.ctx.authorizer.cancel(this);
  }
}
