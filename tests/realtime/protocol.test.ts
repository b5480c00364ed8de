// Presence, connection refusal, and frames no well-behaved client sends.
import { createClient } from "@supabase/supabase-js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import WebSocket from "ws";
import { signJwt } from "../../embedded/jwt.ts";
import { connect, disconnect, RawSocket, refusedUpgrade, socketUrl, subscribed, waitFor } from "./clients.ts";
import { startRealtimeFixture, type RealtimeFixture } from "./fixture.ts";

let fx: RealtimeFixture;
beforeAll(async () => {
  fx = await startRealtimeFixture();
}, 120_000);
afterAll(async () => {
  await fx?.stop();
}, 60_000);

/** A vsn 2 kind-3 frame, as realtime-js encodes channel.send({type:'broadcast'}). */
function userBroadcastPush(joinRef: string, ref: string, topic: string, event: string, json: string): Buffer {
  const fields = [joinRef, ref, topic, event, ""].map((f) => Buffer.from(f, "utf8"));
  const header = Buffer.from([3, ...fields.map((f) => f.length), 1]);
  return Buffer.concat([header, ...fields, Buffer.from(json, "utf8")]);
}

describe("presence", () => {
  it("syncs state, joins, updates and leaves between clients", async () => {
    const a = await connect(fx);
    const b = await connect(fx);
    const c = await connect(fx);
    try {
      const chA = a.channel("presence-room", { config: { presence: { key: "user-a" } } });
      const chB = b.channel("presence-room", { config: { presence: { key: "user-b" } } });
      const leavesAtA: string[] = [];
      const joinsAtB: string[] = [];
      chA.on("presence", { event: "leave" }, (p: { key: string }) => leavesAtA.push(p.key));
      chB.on("presence", { event: "join" }, (p: { key: string }) => joinsAtB.push(p.key));
      await Promise.all([subscribed(chA), subscribed(chB)]);

      expect(await chA.track({ online_at: "now" })).toBe("ok");
      await waitFor(() => "user-a" in chB.presenceState(), 5000, "user-a at b");
      expect(chB.presenceState()["user-a"]).toEqual([{ online_at: "now", presence_ref: expect.any(String) }]);
      expect(joinsAtB).toEqual(["user-a"]);

      expect(await chA.track({ online_at: "later" })).toBe("ok");
      await waitFor(() => chB.presenceState<{ online_at: string }>()["user-a"]?.[0]?.online_at === "later", 5000, "updated meta");
      expect(chB.presenceState()["user-a"]).toHaveLength(1);

      // A late joiner gets the current state in presence_state.
      const chC = c.channel("presence-room", { config: { presence: { key: "user-c" } } });
      chC.on("presence", { event: "sync" }, () => {});
      await subscribed(chC);
      await waitFor(() => "user-a" in chC.presenceState(), 5000, "presence_state at c");

      expect(await chB.track({ role: "watcher" })).toBe("ok");
      await waitFor(() => "user-b" in chA.presenceState(), 5000, "user-b at a");
      await disconnect(b);
      await waitFor(() => leavesAtA.includes("user-b"), 5000, "user-b left when its socket closed");

      expect(await chA.untrack()).toBe("ok");
      await waitFor(() => !("user-a" in chC.presenceState()), 5000, "user-a untracked");
    } finally {
      await disconnect(a, b, c);
    }
  });
});

describe("connection", () => {
  it("refuses an upgrade without a valid apikey JWT, as the hosted server does", async () => {
    const url = (apikey: string) => socketUrl(fx, { apikey, vsn: "2.0.0" });
    expect(await refusedUpgrade(url("garbage"))).toEqual({
      status: 401,
      body: JSON.stringify({ error: "The token provided is not a valid JWT" }),
    });
    const foreign = await signJwt("not-the-project-secret", { role: "anon" });
    expect(await refusedUpgrade(url(foreign))).toEqual({
      status: 401,
      body: JSON.stringify({ error: "Failed to validate JWT signature" }),
    });
    const expired = await signJwt(fx.jwtSecret, { role: "anon" }, -10);
    expect(await refusedUpgrade(url(expired))).toEqual({ status: 401, body: JSON.stringify({ error: "Token has expired" }) });
    const roleless = await signJwt(fx.jwtSecret, { sub: "x" });
    expect((await refusedUpgrade(url(roleless))).body).toContain("Fields `role` and `exp` are required in JWT");
    expect(await refusedUpgrade(socketUrl(fx, { vsn: "2.0.0" }))).toEqual({
      status: 401,
      body: JSON.stringify({ error: "API key is missing" }),
    });
    expect((await refusedUpgrade(socketUrl(fx, { apikey: fx.anonKey, vsn: "3.0.0" }))).status).toBe(403);

    const client = createClient(fx.url, "garbage", {
      auth: { persistSession: false, autoRefreshToken: false },
      realtime: { transport: WebSocket as never },
    });
    try {
      await expect(subscribed(client.channel("never"))).rejects.toThrow();
      expect(client.realtime.isConnected()).toBe(false);
    } finally {
      await disconnect(client);
    }
  });

  it("answers a postgres_changes join with an error naming the limitation", async () => {
    const client = await connect(fx);
    try {
      const ch = client.channel("db-changes").on("postgres_changes", { event: "INSERT", schema: "public", table: "todos" }, () => {});
      await expect(subscribed(ch)).rejects.toThrow(/^PostgresChangesNotSupported: /);
    } finally {
      await disconnect(client);
    }
  });

  it("drops malformed frames and keeps serving that socket and the others", async () => {
    const raw = await RawSocket.open(socketUrl(fx, { apikey: fx.anonKey, vsn: "2.0.0" }));
    const other = await connect(fx);
    try {
      raw.ws.send(JSON.stringify(["1", "1", "realtime:junk", "phx_join", { config: {} }]));
      expect((await raw.reply("1"))[4]).toEqual({ status: "ok", response: { postgres_changes: [] } });
      const got: unknown[] = [];
      const ch = other.channel("junk").on("broadcast", { event: "hi" }, (m) => got.push(m.payload));
      await subscribed(ch);

      for (const garbage of ["}{ not json", '{"topic":"x"}', "[1,2,3]", '["1","2","realtime:junk","broadcast","text"]']) {
        raw.ws.send(garbage);
      }
      raw.ws.send(Buffer.from([0xff, 0xfe, 0x00]), { binary: false }); // invalid UTF-8 text
      raw.ws.send(Buffer.from([3, 5, 5, 20, 3, 0, 1, 0x31])); // truncated kind 3
      raw.ws.send(Buffer.from([9, 1, 2, 3])); // unknown kind
      raw.ws.send(Buffer.alloc(0));
      raw.ws.send(userBroadcastPush("1", "3", "realtime:junk", "hi", "{bad json"));

      raw.ws.send(JSON.stringify(["7", "4", "realtime:nowhere", "broadcast", {}]));
      expect((await raw.reply("4"))[4]).toEqual({ status: "error", response: { reason: "unmatched topic" } });
      raw.ws.send(JSON.stringify([null, "5", "phoenix", "heartbeat", {}]));
      expect((await raw.reply("5"))[4]).toEqual({ status: "ok", response: {} });

      raw.ws.send(userBroadcastPush("1", "6", "realtime:junk", "hi", '{"still":"alive"}'));
      await waitFor(() => got.length === 1, 5000, "broadcast after garbage");
      expect(got).toEqual([{ still: "alive" }]);
      await ch.send({ type: "broadcast", event: "back", payload: { ok: 1 } });
      await waitFor(() => raw.frames.some((f) => Buffer.isBuffer(f) && f[0] === 4), 5000, "kind-4 frame at raw socket");
      expect(raw.ws.readyState).toBe(WebSocket.OPEN);
    } finally {
      raw.close();
      await disconnect(other);
    }
  });

  it("leaves a channel with an ok reply and a phx_close, then stops delivering to it", async () => {
    const raw = await RawSocket.open(socketUrl(fx, { apikey: fx.anonKey, vsn: "2.0.0" }));
    const sender = await connect(fx);
    try {
      const echoed: unknown[] = [];
      const ch = sender.channel("leave-room", { config: { broadcast: { self: true } } });
      ch.on("broadcast", { event: "late" }, (m) => echoed.push(m));
      await subscribed(ch);
      raw.ws.send(JSON.stringify(["1", "1", "realtime:leave-room", "phx_join", { config: {} }]));
      await raw.reply("1");
      const before = fx.realtime.stats().channels;
      raw.ws.send(JSON.stringify(["1", "2", "realtime:leave-room", "phx_leave", {}]));
      expect((await raw.reply("2"))[4]).toEqual({ status: "ok", response: {} });
      await waitFor(() => raw.messages.some((m) => m[3] === "phx_close"), 5000, "phx_close");
      expect(raw.messages.find((m) => m[3] === "phx_close")).toEqual(["1", "1", "realtime:leave-room", "phx_close", {}]);
      expect(fx.realtime.stats().channels).toBe(before - 1);
      await ch.send({ type: "broadcast", event: "late", payload: {} });
      await waitFor(() => echoed.length === 1, 5000, "the sender's own copy");
      raw.ws.send(JSON.stringify([null, "3", "phoenix", "heartbeat", {}]));
      await raw.reply("3");
      expect(raw.frames.filter((f) => Buffer.isBuffer(f))).toHaveLength(0);
    } finally {
      raw.close();
      await disconnect(sender);
    }
  });
});
