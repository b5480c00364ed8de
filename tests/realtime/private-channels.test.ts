// Private channels: RLS on realtime.messages decides who reads and who writes, as on Supabase.
import type { RealtimeChannel } from "@supabase/supabase-js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { connect, disconnect, sleep, subscribed, waitFor } from "./clients.ts";
import { startRealtimeFixture, type RealtimeFixture } from "./fixture.ts";

type Received = { type: string; event: string; payload: unknown; meta?: { id?: string; replayed?: boolean } };
type SystemMessage = { extension: string; status: string; message: string; channel: string };

const DENIED = "Unauthorized: You do not have permissions to read from this Channel topic: room-u1";

let fx: RealtimeFixture;
let u1: string;
let u2: string;

beforeAll(async () => {
  fx = await startRealtimeFixture();
  await fx.sql`create policy "read own room" on realtime.messages for select to authenticated
    using (realtime.topic() = 'room-' || (auth.jwt() ->> 'sub'))`;
  u1 = await fx.signUser("u1");
  u2 = await fx.signUser("u2");
}, 120_000);
afterAll(async () => {
  await fx?.stop();
}, 60_000);

async function withWritePolicy(body: () => Promise<void>): Promise<void> {
  await fx.sql`create policy "write own room" on realtime.messages for insert to authenticated
    with check (realtime.topic() = 'room-' || (auth.jwt() ->> 'sub'))`;
  try {
    await body();
  } finally {
    await fx.sql`drop policy "write own room" on realtime.messages`;
  }
}

function collect(channel: RealtimeChannel): Received[] {
  const got: Received[] = [];
  channel.on("broadcast", { event: "*" }, (m) => got.push(m as Received));
  return got;
}

describe("private channel join", () => {
  it("admits a JWT the RLS policy allows and refuses others with the hosted message", async () => {
    const owner = await connect(fx, { token: () => u1 });
    const other = await connect(fx, { token: () => u2 });
    const anon = await connect(fx);
    const service = await connect(fx, { key: fx.serviceKey });
    try {
      await subscribed(owner.channel("room-u1", { config: { private: true } }));
      await subscribed(service.channel("room-u1", { config: { private: true } }));
      await expect(subscribed(other.channel("room-u1", { config: { private: true } }))).rejects.toThrow(DENIED);
      await expect(subscribed(anon.channel("room-u1", { config: { private: true } }))).rejects.toThrow(DENIED);
      // The same name as a public channel needs no policy (a fresh client: channel() reuses topics).
      const publicReader = await connect(fx, { token: () => u2 });
      await subscribed(publicReader.channel("room-u1"));
      await disconnect(publicReader);
    } finally {
      await disconnect(owner, other, anon, service);
    }
  });
});

describe("private broadcast", () => {
  it("delivers private database rows only to authorized private subscribers", async () => {
    const owner = await connect(fx, { token: () => u1 });
    const publicReader = await connect(fx);
    try {
      const privateCh = owner.channel("room-u1", { config: { private: true } });
      const gotPrivate = collect(privateCh);
      const publicCh = publicReader.channel("room-u1");
      const gotPublic = collect(publicCh);
      await Promise.all([subscribed(privateCh), subscribed(publicCh)]);
      await fx.sql`select realtime.send('{"secret":1}'::jsonb, 'note', 'room-u1')`;
      await waitFor(() => gotPrivate.length === 1, 5000, "private database broadcast");
      expect(gotPrivate[0]).toMatchObject({ event: "note", payload: { secret: 1 } });
      await sleep(200);
      expect(gotPublic).toHaveLength(0);
    } finally {
      await disconnect(owner, publicReader);
    }
  });

  it("drops client broadcasts without INSERT permission (no ack) and delivers them with it", async () => {
    const owner = await connect(fx, { token: () => u1 });
    const service = await connect(fx, { key: fx.serviceKey });
    try {
      const listener = service.channel("room-u1", { config: { private: true } });
      const got = collect(listener);
      await subscribed(listener);
      const denied = owner.channel("room-u1", { config: { private: true, broadcast: { ack: true } } });
      await subscribed(denied);
      expect(await denied.send({ type: "broadcast", event: "msg", payload: { n: 1 } }, { timeout: 1000 })).toBe("timed out");
      await owner.removeChannel(denied);

      await withWritePolicy(async () => {
        const allowed = owner.channel("room-u1", { config: { private: true, broadcast: { ack: true } } });
        await subscribed(allowed);
        expect(await allowed.send({ type: "broadcast", event: "msg", payload: { n: 2 } }, { timeout: 2000 })).toBe("ok");
        await waitFor(() => got.length === 1, 5000, "authorized private broadcast");
      });
      expect(got.map((m) => m.payload)).toEqual([{ n: 2 }]);
    } finally {
      await disconnect(owner, service);
    }
  });

  it("applies INSERT permission to REST broadcasts on private topics", async () => {
    const owner = await connect(fx, { token: () => u1 });
    const service = await connect(fx, { key: fx.serviceKey });
    try {
      const listener = service.channel("room-u1", { config: { private: true } });
      const got = collect(listener);
      await subscribed(listener);
      const sender = owner.channel("room-u1", { config: { private: true } });
      await expect(sender.httpSend("rest", { n: 1 })).rejects.toThrow("Unauthorized");
      const batch = () =>
        fetch(`${fx.url}/realtime/v1/api/broadcast`, {
          method: "POST",
          headers: { apikey: fx.anonKey, authorization: `Bearer ${u1}`, "content-type": "application/json" },
          body: JSON.stringify({ messages: [{ topic: "room-u1", event: "batch", payload: { n: 2 }, private: true }] }),
        });
      expect((await batch()).status).toBe(202);
      await sleep(300);
      expect(got).toHaveLength(0);

      await withWritePolicy(async () => {
        await expect(sender.httpSend("rest", { n: 3 })).resolves.toEqual({ success: true });
        expect((await batch()).status).toBe(202);
        await waitFor(() => got.length === 2, 5000, "authorized REST broadcasts");
      });
      expect(got.map((m) => m.payload)).toEqual([{ n: 3 }, { n: 2 }]);
    } finally {
      await disconnect(owner, service);
    }
  });

  it("replays stored rows on join when asked", async () => {
    const owner = await connect(fx, { token: () => u1 });
    try {
      const since = Date.now() - 1000;
      await fx.sql`select realtime.send('{"old":1}'::jsonb, 'history', 'room-u1')`;
      await fx.sql`select realtime.send('{"old":2}'::jsonb, 'history', 'room-u1')`;
      const ch = owner.channel("room-u1", { config: { private: true, broadcast: { replay: { since, limit: 10 } } } });
      const got = collect(ch);
      await subscribed(ch);
      await waitFor(() => got.length === 2, 5000, "replayed rows");
      expect(got.map((m) => [(m.payload as { old: number }).old, m.meta?.replayed])).toEqual([
        [1, true],
        [2, true],
      ]);
    } finally {
      await disconnect(owner);
    }
  });
});

describe("token changes on a joined private channel", () => {
  function watch(channel: RealtimeChannel) {
    const system: SystemMessage[] = [];
    const statuses: string[] = [];
    channel.on("system", {}, (m) => system.push(m as SystemMessage));
    const joined = new Promise<void>((resolve, reject) =>
      channel.subscribe((status, err) => {
        statuses.push(status);
        if (status === "SUBSCRIBED") resolve();
        if (status === "CHANNEL_ERROR") reject(err);
      }),
    );
    return { system, statuses, joined };
  }

  it("closes the channel with a system error when a new token loses read permission", async () => {
    let token = u1;
    const client = await connect(fx, { token: () => token });
    try {
      const ch = client.channel("room-u1", { config: { private: true } });
      const { system, statuses, joined } = watch(ch);
      await joined;
      token = u2;
      await client.realtime.setAuth();
      await waitFor(() => statuses.includes("CLOSED"), 5000, "channel closed");
      expect(system).toEqual([
        {
          extension: "system",
          status: "error",
          message: "You do not have permissions to read from this Channel topic: room-u1",
          channel: "room-u1",
        },
      ]);
    } finally {
      await disconnect(client);
    }
  });

  it("closes the channel when its token expires", async () => {
    const shortLived = await fx.signUser("u1", 2);
    const client = await connect(fx, { token: () => shortLived });
    try {
      const ch = client.channel("room-u1", { config: { private: true } });
      const { system, statuses, joined } = watch(ch);
      await joined;
      await waitFor(() => statuses.includes("CLOSED"), 6000, "channel closed at expiry");
      expect(system).toHaveLength(1);
      expect(system[0]!.message).toMatch(/^Token has expired \d+ seconds ago$/);
    } finally {
      await disconnect(client);
    }
  });
});
