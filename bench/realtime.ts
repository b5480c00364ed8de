// Realtime fan-out: events/s the endpoint delivers to N subscribers of one private task topic
// (official client, private channel authorized by RLS), published from the database with
// realtime.send() at a fixed offered rate, and the send → callback latency.
import { createClient, type SupabaseClient } from "@supabase/supabase-js";
import type { Sql } from "postgres";
import WebSocket from "ws";
import { mintUserToken } from "../embedded/keys.ts";
import type { Stack } from "../embedded/stack.ts";
import { ms, percentile, type Row } from "./stats.ts";

const SUBSCRIBERS = [1, 10, 50];
const RATES = [1000, 4000];
const SECONDS = 5;
const TICK_MS = 10;

async function subscribe(stack: Stack, token: string, topic: string, onEvent: (sentAt: number) => void): Promise<SupabaseClient> {
  const client = createClient(stack.apiUrl, stack.keys.anonKey, { accessToken: async () => token, realtime: { transport: WebSocket as never } });
  await client.realtime.setAuth();
  await new Promise<void>((resolve, reject) =>
    client
      .channel(topic, { config: { private: true } })
      .on("broadcast", { event: "bench" }, ({ payload }) => onEvent((payload as { t: number }).t))
      .subscribe((status, err) => (status === "SUBSCRIBED" ? resolve() : status !== "CLOSED" && reject(new Error(`${topic}: ${status} ${err?.message ?? ""}`)))),
  );
  return client;
}

export async function benchRealtime(stack: Stack, sql: Sql, progress: (s: string) => void): Promise<Row[]> {
  const userId = "00000000-0000-4000-8000-00000000b002";
  const token = await mintUserToken(stack.keys.jwtSecret, userId);
  // A task of this user that no worker serves: its private topic is what a dashboard follows.
  const [task] = await sql<{ id: string }[]>`
    insert into public.tasks (owner, command, required_kind) values (${userId}, 'true', 'bench-realtime-none') returning id`;
  const topic = `task:${task!.id}`;
  const rows: Row[] = [];
  for (const n of SUBSCRIBERS) {
    let latencies: number[] = [];
    let received = 0;
    let first = 0;
    let last = 0;
    const clients = await Promise.all(
      Array.from({ length: n }, () =>
        subscribe(stack, token, topic, (sentAt) => {
          const t = Date.now();
          if (!first) first = t;
          last = t;
          received++;
          latencies.push(t - sentAt);
        }),
      ),
    );
    try {
      for (const rate of RATES) {
        progress(`Realtime fan-out: ${rate} events/s for ${SECONDS} s to ${n} subscriber(s)…`);
        latencies = [];
        received = first = last = 0;
        const total = rate * SECONDS;
        const t0 = performance.now();
        let sent = 0;
        while (sent < total) {
          const due = Math.min(total, Math.floor(((performance.now() - t0) / 1000) * rate) + Math.ceil((rate * TICK_MS) / 1000));
          if (due > sent) {
            await sql`select realtime.send(jsonb_build_object('t', extract(epoch from clock_timestamp()) * 1000, 'i', i), 'bench', ${topic}, true)
                        from generate_series(${sent + 1}::int, ${due}::int) i`;
            sent = due;
          }
          await new Promise((r) => setTimeout(r, TICK_MS));
        }
        const publishSecs = (performance.now() - t0) / 1000;
        const deadline = Date.now() + 10_000;
        while (received < total * n && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
        const secs = Math.max(0.001, (last - first) / 1000);
        const perSubscriber = received / n / secs;
        const p99 = percentile(latencies, 99);
        rows.push({
          metric: `${n} subscriber(s), ${rate}/s offered: delivered events/s per subscriber`,
          value: `${perSubscriber.toFixed(0)} (${(received / secs).toFixed(0)} deliveries/s in all; published at ${(total / publishSecs).toFixed(0)}/s)`,
          ...(rate === 1000 ? { target: "keeps up (≥ 95 %), none lost", ok: received === total * n && perSubscriber >= 950 } : {}),
        });
        rows.push({
          metric: `${n} subscriber(s), ${rate}/s offered: send → callback p50 / p99`,
          value: `${ms(percentile(latencies, 50))} / ${ms(p99)}${received < total * n ? ` (${total * n - received} not delivered in 10 s)` : ""}`,
          ...(rate === 1000 ? { target: "p99 < 100 ms", ok: p99 < 100 } : {}),
        });
      }
    } finally {
      for (const c of clients) {
        await c.removeAllChannels();
        c.realtime.disconnect();
      }
    }
  }
  await sql`delete from public.tasks where id = ${task!.id}`;
  return rows;
}
