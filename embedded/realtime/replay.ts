// `config.broadcast.replay` on private channels (realtime lib/realtime/messages.ex): the newest
// `limit` (at most 25) broadcast rows of the topic since `since` (ms), oldest first.
import type postgres from "postgres";

export interface StoredMessage {
  id: string;
  event: string | null;
  payload: unknown;
  binary_payload: Buffer | null;
}

const HARD_LIMIT = 25;

export async function fetchReplay(sql: postgres.Sql, topic: string, sinceMs: number, limit: number): Promise<StoredMessage[]> {
  const bounded = Math.max(Math.min(limit, HARD_LIMIT), 1);
  const rows = await sql<StoredMessage[]>`
    select id, event, payload, binary_payload from realtime.messages
    where topic = ${topic} and private is true and extension = 'broadcast'
      and inserted_at >= to_timestamp(${sinceMs}::float8 / 1000)::timestamp
      and inserted_at < localtimestamp + interval '1 minute'
    order by inserted_at desc limit ${bounded}`;
  return [...rows].reverse();
}
