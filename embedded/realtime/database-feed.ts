// Rows inserted into realtime.messages, in commit order, read through logical replication as the
// hosted Realtime server reads them: a temporary pgoutput slot on the publication that
// embedded/bootstrap.sql creates. (A NOTIFY per row, the earlier path, takes Postgres's global
// notify lock until each commit is flushed, which serialized every task transaction.)
import { randomUUID } from "node:crypto";
import postgres from "postgres";
import type { PayloadEncoding } from "./serializer.ts";

export const PUBLICATION = "realtime_embedded_messages";
/** How often the slot is checked and our position confirmed; a lost slot means a fresh one. */
const CHECK_INTERVAL_MS = 2000;
/** Microseconds from the Unix epoch to Postgres's (2000-01-01). */
const PG_EPOCH_US = 946_684_800_000_000n;

export interface DatabaseMessage {
  id: string;
  topic: string;
  event: string;
  private: boolean;
  encoding: PayloadEncoding;
  body: Buffer;
}

/** Column values of an inserted row in pgoutput's text form (null for SQL NULL). */
type TextRow = Map<string, string | null>;

/** Rows without an event or any payload are skipped, as the hosted replication handler does. */
export function fromRow(row: TextRow): DatabaseMessage | null {
  const id = row.get("id");
  const topic = row.get("topic");
  const event = row.get("event");
  if (row.get("extension") !== "broadcast" || !id || topic == null || event == null) return null;
  const common = { id, topic, event, private: row.get("private") === "t" };
  const binary = row.get("binary_payload");
  if (binary != null) return { ...common, encoding: "binary", body: Buffer.from(binary.slice(2), "hex") }; // bytea text: \x<hex>
  const payload = row.get("payload");
  if (payload != null) return { ...common, encoding: "json", body: Buffer.from(payload, "utf8") };
  return null;
}

/** Decodes the pgoutput messages the feed needs (protocol version 1): Relation, Insert, Commit. */
export class PgoutputDecoder {
  private readonly relations = new Map<number, { schema: string; table: string; columns: string[] }>();

  /** Returns the inserted row of `table`, or the commit's end LSN, or null for anything else. */
  decode(m: Buffer, schema: string, table: string): { row: TextRow } | { commitEnd: bigint } | null {
    const kind = String.fromCharCode(m[0]!);
    if (kind === "R") {
      let i = 5;
      const str = () => {
        const end = m.indexOf(0, i);
        const s = m.toString("utf8", i, end);
        i = end + 1;
        return s;
      };
      const relSchema = str() || "pg_catalog";
      const relTable = str();
      i += 1; // replica identity
      const n = m.readUInt16BE(i);
      i += 2;
      const columns: string[] = [];
      for (let c = 0; c < n; c++) {
        i += 1; // flags
        columns.push(str());
        i += 8; // type oid, typmod
      }
      this.relations.set(m.readUInt32BE(1), { schema: relSchema, table: relTable, columns });
      return null;
    }
    if (kind === "I") {
      const rel = this.relations.get(m.readUInt32BE(1));
      if (!rel || rel.schema !== schema || rel.table !== table) return null;
      let i = 6; // relid, 'N'
      const n = m.readUInt16BE(i);
      i += 2;
      const row: TextRow = new Map();
      for (let c = 0; c < n; c++) {
        const k = m[i++];
        if (k === 0x74 /* t */) {
          const len = m.readUInt32BE(i);
          row.set(rel.columns[c]!, m.toString("utf8", i + 4, i + 4 + len));
          i += 4 + len;
        } else row.set(rel.columns[c]!, null); // n (null); u (unchanged toast) cannot occur in an insert
      }
      return { row };
    }
    if (kind === "C") return { commitEnd: m.readBigUInt64BE(10) };
    return null;
  }
}

export class DatabaseFeed {
  private conn: postgres.Sql | null = null;
  private slot = "";
  private stream: NodeJS.WritableStream | null = null;
  private confirmed = 0n;
  private checkTimer: NodeJS.Timeout | undefined;
  private closed = false;

  private constructor(
    private readonly url: string,
    private readonly sql: postgres.Sql,
    private readonly deliver: (message: DatabaseMessage) => void,
    private readonly log: (line: string) => void,
  ) {}

  static async start(url: string, sql: postgres.Sql, deliver: (message: DatabaseMessage) => void, log: (line: string) => void): Promise<DatabaseFeed> {
    const feed = new DatabaseFeed(url, sql, deliver, log);
    await feed.replicate();
    feed.scheduleCheck();
    return feed;
  }

  async close(): Promise<void> {
    this.closed = true;
    clearTimeout(this.checkTimer);
    await this.disconnect();
  }

  private async disconnect(): Promise<void> {
    const conn = this.conn;
    this.conn = null;
    this.stream = null;
    await conn?.end({ timeout: 0 }).catch(() => {});
  }

  /** Opens a replication connection with a new temporary slot, streaming from now on. */
  private async replicate(): Promise<void> {
    const conn = postgres(this.url, {
      max: 1,
      onnotice: () => {},
      fetch_types: false,
      idle_timeout: 0,
      max_lifetime: null,
      connection: { application_name: "cogo-realtime-listen", replication: "database" } as Record<string, string>,
    });
    this.conn = conn;
    this.slot = `realtime_embedded_${randomUUID().replace(/-/g, "")}`;
    const [slot] = await conn.unsafe<{ consistent_point: string }[]>(`CREATE_REPLICATION_SLOT ${this.slot} TEMPORARY LOGICAL pgoutput NOEXPORT_SNAPSHOT`);
    const stream = await conn.unsafe(`START_REPLICATION SLOT ${this.slot} LOGICAL ${slot!.consistent_point} (proto_version '1', publication_names '${PUBLICATION}')`).writable();
    this.stream = stream;
    const decoder = new PgoutputDecoder();
    stream.on("data", (x: Buffer) => {
      if (x[0] === 0x77 /* w: XLogData */) {
        const r = decoder.decode(x.subarray(25), "realtime", "messages");
        if (r && "row" in r) this.publish(fromRow(r.row));
        else if (r) this.confirmed = r.commitEnd;
      } else if (x[0] === 0x6b /* k: keepalive */) {
        // Everything before the keepalive's position was sent and handled; confirming it lets a
        // shutting-down server end this walsender (it waits for the client to catch up).
        const sent = x.readBigUInt64BE(1);
        if (sent > this.confirmed) this.confirmed = sent;
        if (x[17]) this.sendStatus();
      }
    });
    stream.on("error", (err: Error) => this.log(`realtime: replication stream error: ${err.message}`));
    stream.on("close", () => {
      if (this.stream === stream) this.stream = null;
    });
  }

  /** Standby status update: everything up to the last delivered commit is done with. */
  private sendStatus(): void {
    if (!this.stream) return;
    const x = Buffer.alloc(34);
    x[0] = 0x72; // r
    x.writeBigUInt64BE(this.confirmed, 1);
    x.writeBigUInt64BE(this.confirmed, 9);
    x.writeBigUInt64BE(this.confirmed, 17);
    x.writeBigInt64BE(BigInt(Date.now()) * 1000n - PG_EPOCH_US, 25);
    this.stream.write(x);
  }

  /**
   * The replication connection ends with the server (restart, killed backend) and a temporary slot
   * with it; a closed stream or a slot no longer active means a fresh connection. Rows committed in
   * between are not delivered, as with the hosted server's temporary slot.
   */
  private scheduleCheck(): void {
    this.checkTimer = setTimeout(() => void this.check().finally(() => this.closed || this.scheduleCheck()), CHECK_INTERVAL_MS);
    this.checkTimer.unref();
  }

  private async check(): Promise<void> {
    this.sendStatus();
    let alive = this.stream !== null;
    if (alive) {
      const rows = await this.sql`select 1 from pg_catalog.pg_replication_slots where slot_name = ${this.slot} and active`.catch(() => null);
      alive = rows === null || rows.length > 0; // database unreachable: nothing to decide yet
    }
    if (alive || this.closed) return;
    this.log("realtime: replication connection lost, reconnecting");
    try {
      await this.disconnect();
      await this.replicate();
      this.log("realtime: replication connection restored");
    } catch (err) {
      this.log(`realtime: replication failed: ${err instanceof Error ? err.message : String(err)}`);
    }
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
