// Broadcast through the official client: client to client, from SQL, large rows, REST.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { connect, disconnect, sleep, subscribed, waitFor } from "./clients.ts";
import { startRealtimeFixture, type RealtimeFixture } from "./fixture.ts";

type Received = { type: string; event: string; payload: unknown; meta?: { id?: string } };

let fx: RealtimeFixture;
beforeAll(async () => {
  fx = await startRealtimeFixture();
}, 120_000);
afterAll(async () => {
  await fx?.stop();
}, 60_000);

describe("client broadcast", () => {
  it("reaches the other clients, not the sender unless self, and acks when asked", async () => {
    const a = await connect(fx);
    const b = await connect(fx);
    const v1 = await connect(fx, { vsn: "1.0.0" });
    try {
      const gotA: Received[] = [];
      const gotB: Received[] = [];
      const gotV1: Received[] = [];
      const chA = a.channel("room-1").on("broadcast", { event: "cursor" }, (m) => gotA.push(m as Received));
      const chB = b.channel("room-1").on("broadcast", { event: "cursor" }, (m) => gotB.push(m as Received));
      const chV1 = v1.channel("room-1").on("broadcast", { event: "*" }, (m) => gotV1.push(m as Received));
      await Promise.all([subscribed(chA), subscribed(chB), subscribed(chV1)]);

      expect(await chA.send({ type: "broadcast", event: "cursor", payload: { x: 1, y: 2 } })).toBe("ok");
      await waitFor(() => gotB.length === 1 && gotV1.length === 1, 5000, "broadcast at b and v1");
      expect(gotB[0]).toEqual({ type: "broadcast", event: "cursor", payload: { x: 1, y: 2 } });
      // A vsn 1.0.0 socket gets the same broadcast as JSON.
      expect(gotV1[0]).toEqual({ type: "broadcast", event: "cursor", payload: { x: 1, y: 2 } });

      // vsn 1.0.0 pushes are JSON text; vsn 2 clients receive them too.
      expect(await chV1.send({ type: "broadcast", event: "cursor", payload: { from: "v1" } })).toBe("ok");
      await waitFor(() => gotB.length === 2 && gotA.length === 1, 5000, "v1 broadcast at a and b");
      expect(gotB[1]!.payload).toEqual({ from: "v1" });
      await sleep(200);
      expect(gotA).toHaveLength(1); // the sender (self: false) never got its own first message
      expect(gotV1).toHaveLength(1);

      const selfCh = a.channel("room-self", { config: { broadcast: { self: true, ack: true } } });
      const gotSelf: Received[] = [];
      selfCh.on("broadcast", { event: "ping" }, (m) => gotSelf.push(m as Received));
      await subscribed(selfCh);
      expect(await selfCh.send({ type: "broadcast", event: "ping", payload: { n: 7 } }, { timeout: 2000 })).toBe("ok");
      await waitFor(() => gotSelf.length === 1, 5000, "own broadcast with self: true");
      expect(gotSelf[0]!.payload).toEqual({ n: 7 });
      expect(fx.realtime.stats().sockets).toBeGreaterThanOrEqual(3);
      expect(fx.realtime.stats().channels).toBeGreaterThanOrEqual(4);
    } finally {
      await disconnect(a, b, v1);
    }
  });

  it("carries binary payloads between vsn 2 clients", async () => {
    const a = await connect(fx);
    const b = await connect(fx);
    try {
      const got: Received[] = [];
      const chA = a.channel("bin-room");
      const chB = b.channel("bin-room").on("broadcast", { event: "bytes" }, (m) => got.push(m as Received));
      await Promise.all([subscribed(chA), subscribed(chB)]);
      await chA.send({ type: "broadcast", event: "bytes", payload: new Uint8Array([1, 2, 3, 250]).buffer });
      await waitFor(() => got.length === 1, 5000, "binary broadcast");
      expect([...new Uint8Array(got[0]!.payload as ArrayBuffer)]).toEqual([1, 2, 3, 250]);
    } finally {
      await disconnect(a, b);
    }
  });
});

describe("broadcast from the database", () => {
  it("delivers realtime.send rows on public channels with the row id as meta, to vsn 1 and 2", async () => {
    const client = await connect(fx);
    const v1 = await connect(fx, { vsn: "1.0.0" });
    try {
      const got: Received[] = [];
      const gotV1: Received[] = [];
      const ch = client.channel("db-public").on("broadcast", { event: "status" }, (m) => got.push(m as Received));
      const chV1 = v1.channel("db-public").on("broadcast", { event: "status" }, (m) => gotV1.push(m as Received));
      await Promise.all([subscribed(ch), subscribed(chV1)]);
      await fx.sql`select realtime.send('{"state":"running"}'::jsonb, 'status', 'db-public', false)`;
      await waitFor(() => got.length === 1 && gotV1.length === 1, 5000, "database broadcast");
      const [row] = await fx.sql<{ id: string }[]>`select id from realtime.messages where topic = 'db-public'`;
      expect(got[0]).toEqual({ type: "broadcast", event: "status", payload: { state: "running", id: row!.id }, meta: { id: row!.id } });
      expect(gotV1[0]).toEqual(got[0]);
    } finally {
      await disconnect(client, v1);
    }
  });

  it("delivers a 50 KB row whole and keeps commit order around it", async () => {
    const client = await connect(fx);
    try {
      const got: Received[] = [];
      const ch = client.channel("db-big").on("broadcast", { event: "*" }, (m) => got.push(m as Received));
      await subscribed(ch);
      const big = "x".repeat(50 * 1024) + "-end";
      await fx.sql.begin(async (tx) => {
        await tx`select realtime.send(jsonb_build_object('order', 1, 'data', ${big}::text), 'big', 'db-big', false)`;
        await tx`select realtime.send('{"order":2}'::jsonb, 'small', 'db-big', false)`;
      });
      await fx.sql`select realtime.send_binary(decode(repeat('ab', 40000), 'hex'), 'bin', 'db-big', false)`;
      await fx.sql`select realtime.send('{"order":4}'::jsonb, 'small', 'db-big', false)`;
      await waitFor(() => got.length === 4, 5000, "four database broadcasts");
      expect(got.map((m) => m.event)).toEqual(["big", "small", "bin", "small"]);
      expect((got[0]!.payload as { data: string }).data).toBe(big);
      const bytes = new Uint8Array(got[2]!.payload as ArrayBuffer);
      expect(bytes.length).toBe(40000);
      expect(bytes.every((b) => b === 0xab)).toBe(true);
    } finally {
      await disconnect(client);
    }
  });

  it("keeps delivering after its replication connection is killed", async () => {
    const client = await connect(fx);
    try {
      const got: Received[] = [];
      const ch = client.channel("db-relisten").on("broadcast", { event: "*" }, (m) => got.push(m as Received));
      await subscribed(ch);
      const killed = await fx.sql`select pg_terminate_backend(pid) from pg_stat_activity
        where application_name = 'cogo-realtime-listen'`;
      expect(killed).toHaveLength(1);
      // Rows sent until it listens again are lost, as with the hosted server's temporary slot.
      const deadline = Date.now() + 10_000;
      while (got.length === 0 && Date.now() < deadline) {
        await fx.sql`select realtime.send('{"after":"kill"}'::jsonb, 'back', 'db-relisten', false)`;
        await sleep(100);
      }
      expect(got[0]).toMatchObject({ event: "back", payload: { after: "kill" } });
    } finally {
      await disconnect(client);
    }
  });

  it("keeps public and private channels of one name apart", async () => {
    const client = await connect(fx);
    try {
      const got: Received[] = [];
      const ch = client.channel("db-split").on("broadcast", { event: "*" }, (m) => got.push(m as Received));
      await subscribed(ch);
      await fx.sql`select realtime.send('{"p":true}'::jsonb, 'secret', 'db-split', true)`;
      await fx.sql`select realtime.send('{"p":false}'::jsonb, 'open', 'db-split', false)`;
      await waitFor(() => got.length >= 1, 5000, "public broadcast");
      await sleep(200);
      expect(got.map((m) => m.event)).toEqual(["open"]);
    } finally {
      await disconnect(client);
    }
  });
});

describe("REST broadcast", () => {
  it("delivers httpSend, the send() fallback and the batch endpoint to subscribers", async () => {
    const listener = await connect(fx);
    const sender = await connect(fx);
    try {
      const got: Received[] = [];
      const ch = listener.channel("rest-room").on("broadcast", { event: "*" }, (m) => got.push(m as Received));
      await subscribed(ch);

      const unjoined = sender.channel("rest-room");
      await expect(unjoined.httpSend("http-send", { a: 1 })).resolves.toEqual({ success: true });
      expect(await unjoined.send({ type: "broadcast", event: "fallback", payload: { b: 2 } })).toBe("ok");

      const res = await fetch(`${fx.url}/realtime/v1/api/broadcast`, {
        method: "POST",
        headers: { apikey: fx.anonKey, "content-type": "application/json" },
        body: JSON.stringify({ messages: [{ topic: "rest-room", event: "batch", payload: { c: 3 }, id: "m-1" }] }),
      });
      expect(res.status).toBe(202);

      await waitFor(() => got.length === 3, 5000, "three REST broadcasts");
      expect(got).toEqual([
        { type: "broadcast", event: "http-send", payload: { a: 1 } },
        { type: "broadcast", event: "fallback", payload: { b: 2 } },
        { type: "broadcast", event: "batch", payload: { c: 3 }, meta: { id: "m-1" } },
      ]);

      const invalid = await fetch(`${fx.url}/realtime/v1/api/broadcast`, {
        method: "POST",
        headers: { apikey: fx.anonKey, "content-type": "application/json" },
        body: JSON.stringify({ messages: [{ topic: "rest-room", event: "batch" }] }),
      });
      expect(invalid.status).toBe(422);
      expect(await invalid.json()).toEqual({ errors: { messages: [{ payload: ["can't be blank"] }] } });

      const unauthenticated = await fetch(`${fx.url}/realtime/v1/api/broadcast`, {
        method: "POST",
        headers: { apikey: "not-a-jwt", "content-type": "application/json" },
        body: JSON.stringify({ messages: [{ topic: "rest-room", event: "batch", payload: {} }] }),
      });
      expect(unauthenticated.status).toBe(401);
    } finally {
      await disconnect(listener, sender);
    }
  });
});
