// Rows inserted into realtime.messages, in commit order, from the NOTIFYs of the bootstrap's
// trigger. Small rows travel whole in the notification; large ones by reference and are fetched by
// id, with later rows held back so delivery order never changes.
import { randomUUID } from "node:crypto";
import postgres from "postgres";
import { isObject, type PayloadEncoding } from "./serializer.ts";

export const NOTIFY_CHANNEL = "realtime_embedded_messages";
/** How often the LISTEN connection is proven alive with a NOTIFY to ourselves. */
const PING_INTERVAL_MS = 2000;

export interface DatabaseMessage {
  id: string;
  topic: string;
  event: string;
  private: boolean;
  encoding: PayloadEncoding;
  body: Buffer;
}

type Row = {
  id: string;
  topic: string;
  event: string | null;
  private: boolean | null;
  payload: string | null;
  binary_payload: Buffer | null;
};

/** Rows without an event or any payload are skipped, as the hosted replication handler does. */
function fromRow(row: Row): DatabaseMessage | null {
  if (row.event === null) return null;
  const common = { id: row.id, topic: row.topic, event: row.event, private: row.private === true };
  if (row.binary_payload !== null) return { ...common, encoding: "binary", body: row.binary_payload };
  if (row.payload !== null) return { ...common, encoding: "json", body: Buffer.from(row.payload, "utf8") };
  return null;
}

function fromNotification(data: Record<string, unknown>): DatabaseMessage | null {
  if (typeof data.id !== "string" || typeof data.topic !== "string") return null;
  return fromRow({
    id: data.id,
    topic: data.topic,
    event: typeof data.event === "string" ? data.event : null,
    private: data.private === true,
    payload: data.payload === null || data.payload === undefined ? null : JSON.stringify(data.payload),
    binary_payload: typeof data.binary_payload === "string" ? Buffer.from(data.binary_payload, "base64") : null,
  });
}

export class DatabaseFeed {
  private listener: postgres.Sql | null = null;
  private readonly nonce = randomUUID();
  private pingsSent = 0;
  private pingsSeen = 0;
  private pingTimer: NodeJS.Timeout | undefined;
  private pending = 0;
  private tail: Promise<void> = Promise.resolve();
  private closed = false;

  private constructor(
    private readonly url: string,
    private readonly sql: postgres.Sql,
    private readonly deliver: (message: DatabaseMessage) => void,
    private readonly log: (line: string) => void,
  ) {}

  static async start(
    url: string,
    sql: postgres.Sql,
    deliver: (message: DatabaseMessage) => void,
    log: (line: string) => void,
  ): Promise<DatabaseFeed> {
    const feed = new DatabaseFeed(url, sql, deliver, log);
    await feed.listen();
    feed.schedulePing();
    return feed;
  }

  async close(): Promise<void> {
    this.closed = true;
    clearTimeout(this.pingTimer);
    await this.listener?.end({ timeout: 0 });
    await this.tail;
  }

  private async listen(): Promise<void> {
    const listener = postgres(this.url, {
      max: 1,
      onnotice: () => {},
      connection: { application_name: "cogo-realtime-listen" },
    });
    this.listener = listener;
    await listener.listen(NOTIFY_CHANNEL, (payload) => this.onNotify(payload));
  }

  /**
   * postgres.js re-LISTENs after a dropped connection, but gives up for good if the database is
   * still down at that moment. A NOTIFY that does not come back means a fresh LISTEN connection.
   */
  private schedulePing(): void {
    this.pingTimer = setTimeout(() => void this.ping().finally(() => this.closed || this.schedulePing()), PING_INTERVAL_MS);
    this.pingTimer.unref();
  }

  private async ping(): Promise<void> {
    if (this.pingsSeen < this.pingsSent) {
      this.log("realtime: LISTEN connection lost, reconnecting");
      this.pingsSeen = this.pingsSent;
      try {
        await this.listener?.end({ timeout: 0 });
        await this.listen();
        this.log("realtime: LISTEN connection restored");
      } catch (err) {
        this.log(`realtime: LISTEN failed: ${err instanceof Error ? err.message : String(err)}`);
      }
    }
    if (this.closed) return;
    this.pingsSent++;
    const body = JSON.stringify({ ping: this.nonce, n: this.pingsSent });
    await this.sql`select pg_notify(${NOTIFY_CHANNEL}, ${body})`.catch(() => {});
  }

  private onNotify(text: string): void {
    let data: unknown;
    try {
      data = JSON.parse(text);
    } catch {
      this.log("realtime: ignored a notification that is not JSON");
      return;
    }
    if (!isObject(data)) return;
    if ("ping" in data) {
      if (data.ping === this.nonce && typeof data.n === "number") this.pingsSeen = Math.max(this.pingsSeen, data.n);
      return;
    }
    if (data.ref === true) this.enqueue(this.fetch(data.id, data.inserted_at));
    else this.enqueue(fromNotification(data));
  }

  /** Typed as text in SQL: postgres.js would turn a timestamp parameter into a Date and drop the microseconds. */
  private async fetch(id: unknown, insertedAt: unknown): Promise<DatabaseMessage | null> {
    const rows = await this.sql<Row[]>`
      select id, topic, event, private, payload::text as payload, binary_payload
      from realtime.messages
      where id = ${String(id)}::text::uuid and inserted_at = ${String(insertedAt)}::text::timestamp`;
    return rows[0] ? fromRow(rows[0]) : null;
  }

  /** Delivers now unless an earlier row is still being fetched; then it waits its turn. */
  private enqueue(item: DatabaseMessage | null | Promise<DatabaseMessage | null>): void {
    if (this.pending === 0 && !(item instanceof Promise)) return this.publish(item);
    // Settle at once: a fetch failing while earlier rows are pending must not be an unhandled rejection.
    const settled =
      item instanceof Promise
        ? item.catch((err: unknown) => {
            this.log(`realtime: could not fetch a large message: ${err instanceof Error ? err.message : String(err)}`);
            return null;
          })
        : item;
    this.pending++;
    this.tail = this.tail
      .then(() => settled)
      .then((message) => this.publish(message))
      .finally(() => {
        this.pending--;
      });
  }

  private publish(message: DatabaseMessage | null): void {
    if (!message) return;
    try {
      this.deliver(message);
    } catch (err) {
      this.log(`realtime: delivery failed: ${err instanceof Error ? err.stack : String(err)}`);
    }
  }
}
