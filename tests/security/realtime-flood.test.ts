// Realtime with nothing but the anon key: a join flood, too many channels, oversized presence,
// oversized frames and too many sockets are each refused the way the hosted server refuses them,
// and none of it slows a legitimate user's join or grows the process that also serves the API.
// Floods go through the stack's gateway with the default limits; what needs the endpoint's own
// stats, heap, or a lowered limit uses an endpoint in this process, mounted as the gateway mounts it.
import { spawn } from "node:child_process";
import { once } from "node:events";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import path from "node:path";
import { setFlagsFromString } from "node:v8";
import { runInNewContext } from "node:vm";
import { createClient, type SupabaseClient } from "@supabase/supabase-js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import WebSocket from "ws";
import { createRealtime, type Realtime } from "../../embedded/realtime/index.ts";
import { REALTIME_LIMIT_DEFAULTS, resolveLimits, type RealtimeLimits } from "../../embedded/realtime/limits.ts";
import { PROJECT_ROOT } from "../../embedded/stack.ts";
import { newUser, newUserId, sql, stack, userToken } from "../helpers/env.ts";
import type { FloodSummary } from "../realtime/flooder.ts";
import { RawSocket, refusedUpgrade, sleep, subscribed, waitFor } from "../realtime/clients.ts";

const TOO_MANY_JOINS = "ClientJoinRateLimitReached: Too many joins per second";
const TOO_MANY_CHANNELS = "ChannelRateLimitReached: Too many channels";
const PRESENCE_LIMIT = "PresenceLimitReached: Too many presence entries on this connection";
const LEGIT_JOIN_MAX_MS = 100;
const MB = 1_000_000;

const wsUrl = (base: string, apikey = stack.anonKey) => `${base.replace(/^http/, "ws")}/realtime/v1/websocket?apikey=${encodeURIComponent(apikey)}&vsn=2.0.0`;
const stackWs = wsUrl(stack.apiUrl);

type Frame = [string | null, string | null, string, string, Record<string, unknown>];
const joinFrame = (ref: string, topic: string, config: Record<string, unknown> = {}): string =>
  JSON.stringify([ref, ref, `realtime:${topic}`, "phx_join", { config, access_token: stack.anonKey }] satisfies Frame);
const replyOf = (m: unknown[]) => m[4] as { status: string; response: { reason?: string } };

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}
const summarize = (ms: number[]) => {
  const sorted = [...ms].sort((a, b) => a - b);
  return { p50: Math.round(percentile(sorted, 50) * 10) / 10, max: Math.round(sorted[sorted.length - 1]! * 10) / 10 };
};

/** A user's private join with supabase-js (subscribe → SUBSCRIBED), `n` times one after another. */
async function timeJoins(client: SupabaseClient, topic: string, n: number): Promise<number[]> {
  const times: number[] = [];
  for (let i = 0; i < n; i++) {
    const channel = client.channel(topic, { config: { private: true } });
    const t0 = performance.now();
    await subscribed(channel);
    times.push(performance.now() - t0);
    await client.removeChannel(channel);
  }
  return times;
}

/** tests/realtime/flooder.ts in its own process, so the flood's own CPU is not the server's. */
async function startFlood(url: string, sockets: number, burst: number, perSecond: number) {
  const child = spawn(
    process.execPath,
    ["--import", "tsx", path.join(PROJECT_ROOT, "tests/realtime/flooder.ts"), url, stack.anonKey, String(sockets), String(burst), String(perSecond)],
    { stdio: ["pipe", "pipe", "inherit"] },
  );
  let out = "";
  child.stdout!.on("data", (d: Buffer) => (out += d.toString()));
  const exited = once(child, "exit");
  await waitFor(() => out.includes("flooding\n"), 20_000, "the flood to start");
  return {
    async stop(): Promise<FloodSummary> {
      child.stdin!.end();
      await exited;
      return JSON.parse(out.trim().split("\n").pop()!) as FloodSummary;
    },
  };
}

/** An endpoint of our own in this process, mounted the way embedded/gateway.ts mounts Realtime. */
async function startLocalRealtime(limits: Partial<RealtimeLimits> = {}) {
  const realtime: Realtime = await createRealtime({ databaseUrl: stack.dbUrl, jwtSecret: stack.jwtSecret, limits });
  const server: Server = createServer((req, res) => {
    void realtime.handleHttp(req, res).then((handled) => handled || res.writeHead(404).end());
  });
  server.on("upgrade", (req, socket, head) => {
    if (req.url?.startsWith("/realtime/v1/websocket")) realtime.handleUpgrade(req, socket, head);
    else socket.end("HTTP/1.1 404 Not Found\r\n\r\n");
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const httpUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return {
    httpUrl,
    /** The socket URL with the anon key, as supabase-js builds it. */
    url: wsUrl(httpUrl),
    realtime,
    async stop() {
      await realtime.close();
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

setFlagsFromString("--expose-gc");
const gc = runInNewContext("gc") as () => void;
/** Heap plus buffers after a full collection: what the process really holds. */
function heldBytes(): number {
  gc();
  gc();
  const m = process.memoryUsage();
  return m.heapUsed + m.external;
}

describe("join flood", () => {
  let legit: SupabaseClient;
  let topic: string;
  const idle: number[] = [];

  beforeAll(async () => {
    const user = await newUser();
    legit = user.supabase;
    // Allowed by migrations/20261126000700_dashboard_and_fleet.sql for any signed-in user.
    topic = `user:${user.id}`;
    // A channel that stays joined, so the socket stays up between measured joins.
    await subscribed(legit.channel("fleet", { config: { private: true } }));
    await timeJoins(legit, topic, 3); // warm up
    idle.push(...(await timeJoins(legit, topic, 15)));
  });

  it("3,000 private joins on one socket: the flooder gets ClientJoinRateLimitReached and is dropped; a user's private join stays under 100 ms", async () => {
    const flood = await startFlood(stackWs, 1, 3000, 0);
    const during: number[] = [];
    let summary: FloodSummary;
    try {
      // Spread over 2 s: the flooder is dropped within a second and comes back with 3,000 more.
      for (let i = 0; i < 15; i++) {
        during.push(...(await timeJoins(legit, topic, 1)));
        await sleep(120);
      }
    } finally {
      summary = await flood.stop();
    }
    console.log(
      `legit private join (ms) idle ${JSON.stringify(summarize(idle))}, during the 3,000-join flood ${JSON.stringify(summarize(during))}; flood ${JSON.stringify(summary)}`,
    );
    expect(summary.joinsSent).toBeGreaterThanOrEqual(3000);
    expect(summary.reasons.ClientJoinRateLimitReached).toBe(TOO_MANY_JOINS);
    // Dropped (1008, policy violation) once per socket it opened, each time told why first.
    expect(summary.closeCodes["1008"]).toBeGreaterThanOrEqual(1);
    expect(Object.keys(summary.closeCodes)).toEqual(["1008"]);
    expect(summary.replies.ClientJoinRateLimitReached).toBeGreaterThanOrEqual(summary.closeCodes["1008"]!);
    expect(summary.replies.ClientJoinRateLimitReached).toBeLessThanOrEqual(summary.socketsOpened);
    // Joins past a socket's budget of 100 were answered without a database transaction: at most
    // 100 a socket got as far as authorization (Unauthorized), the rest were refused up front.
    expect(summary.replies.ok).toBeUndefined();
    expect(summary.replies.Unauthorized ?? 0).toBeLessThanOrEqual(summary.socketsOpened * REALTIME_LIMIT_DEFAULTS.maxJoinsPerSecond);
    if (summary.replies.ChannelRateLimitReached) expect(summary.reasons.ChannelRateLimitReached).toBe(TOO_MANY_CHANNELS);
    // All but the two slowest of the 15 joins under the bound, and those within three times it: a
    // flood that slowed joins would slow most of them, while a sample or two can meet the host's
    // scheduler with every core busy (loaded runs: p50 9.2 ms with one join at 148 ms; two at
    // 104 and 118 ms with the test lanes and a benchmark beside the CPU hogs).
    const sorted = [...during].sort((x, y) => x - y);
    expect(sorted.at(-3)!).toBeLessThan(LEGIT_JOIN_MAX_MS);
    expect(sorted.at(-1)!).toBeLessThan(3 * LEGIT_JOIN_MAX_MS);
  }, 60_000);

  it("slow authorizations (10 ms each) queued 1,000 deep by 10 sockets within their limits: a user's join takes the next free slot, not a place at the back", async () => {
    // A policy that makes every anon authorization of the flood's topics hold its database
    // connection for 10 ms and still deny: 10 sockets × 100 joins is 2.5 s of work at 4 at once.
    await sql`create policy "realtime-flood test: slow for anon" on realtime.messages for select to anon
      using (case when topic like 'flood-%' then (select false from pg_sleep(0.01)) else false end)`;
    const local = await startLocalRealtime();
    const id = newUserId();
    const token = await userToken(id);
    const user = createClient(local.httpUrl, stack.anonKey, { accessToken: async () => token, realtime: { transport: WebSocket as never } });
    try {
      await user.realtime.setAuth();
      await subscribed(user.channel("fleet", { config: { private: true } }));
      await timeJoins(user, `user:${id}`, 3);
      const flood = await startFlood(local.url, 10, 100, 0);
      const during: number[] = [];
      const waitingAfter: number[] = [];
      let summary: FloodSummary;
      try {
        await waitFor(() => local.realtime.stats().authorizationsWaiting >= 500, 10_000, "the flood's authorizations to queue up");
        // Unmeasured: the first join with the flood's transactions running opens the endpoint's
        // next pool connection (a server that has been up holds it already).
        await timeJoins(user, `user:${id}`, 2);
        for (let i = 0; i < 10; i++) {
          during.push(...(await timeJoins(user, `user:${id}`, 1)));
          waitingAfter.push(local.realtime.stats().authorizationsWaiting);
        }
      } finally {
        summary = await flood.stop();
      }
      console.log(
        `legit private join (ms) behind 1,000 slow flood authorizations ${JSON.stringify(summarize(during))}; still queued after each: ${waitingAfter.join(",")}; flood ${JSON.stringify(summary)}`,
      );
      // Each join overtook a queue of hundreds (at 10 ms per flood authorization, 4 at once,
      // waiting its turn would take seconds).
      expect(Math.min(...waitingAfter)).toBeGreaterThan(100);
      // All but the slowest under the bound; that one still far ahead of the queue's back (over
      // 100 waiting × 10 ms ÷ 4 connections = 250 ms), since one sample can meet a busy scheduler.
      const sorted = [...during].sort((x, y) => x - y);
      expect(sorted.at(-2)!).toBeLessThan(LEGIT_JOIN_MAX_MS);
      expect(sorted.at(-1)!).toBeLessThan(250);
      // Within their limits: nothing refused for rate or channels, and none admitted.
      expect(Object.keys(summary.replies).filter((code) => code !== "Unauthorized")).toEqual([]);
      expect(summary.closeCodes).toEqual({});
      // The flood's sockets are gone, and so is their queued work.
      await waitFor(() => local.realtime.stats().authorizationsWaiting === 0, 5000, "the closed sockets' authorizations dropped");
    } finally {
      await user.removeAllChannels();
      user.realtime.disconnect();
      await local.stop();
      await sql`drop policy "realtime-flood test: slow for anon" on realtime.messages`;
    }
  }, 60_000);
});

describe("channels per socket", () => {
  it("refuses channel #101 with ChannelRateLimitReached and keeps the socket; a leave frees a place", async () => {
    const raw = await RawSocket.open(stackWs);
    try {
      const max = REALTIME_LIMIT_DEFAULTS.maxChannelsPerConnection;
      expect(max).toBe(100);
      for (let i = 1; i <= max; i++) raw.ws.send(joinFrame(`j${i}`, `cap-${i}`));
      await waitFor(() => raw.messages.filter((m) => m[3] === "phx_reply").length === max, 10_000, `${max} join replies`);
      expect(raw.messages.filter((m) => m[3] === "phx_reply" && replyOf(m).status === "ok")).toHaveLength(max);
      await sleep(100); // the join budget refills (100/s); this refusal is about channels, not rate
      raw.ws.send(joinFrame("j101", "cap-101"));
      expect(await raw.reply("j101")).toEqual(["j101", "j101", "realtime:cap-101", "phx_reply", { status: "error", response: { reason: TOO_MANY_CHANNELS } }]);
      raw.ws.send(JSON.stringify([null, "hb", "phoenix", "heartbeat", {}]));
      expect(replyOf(await raw.reply("hb")).status).toBe("ok");
      raw.ws.send(JSON.stringify(["j1", "leave1", "realtime:cap-1", "phx_leave", {}]));
      expect(replyOf(await raw.reply("leave1")).status).toBe("ok");
      raw.ws.send(joinFrame("j101b", "cap-101"));
      expect(replyOf(await raw.reply("j101b"))).toEqual({ status: "ok", response: { postgres_changes: [] } });
    } finally {
      raw.close();
    }
  });
});

describe("message size", () => {
  it("closes a socket that sends a frame over 5,000,000 bytes with 1009, before buffering it; one just under is served", async () => {
    const raw = await RawSocket.open(stackWs);
    try {
      const pad = (n: number) => JSON.stringify([null, "big", "phoenix", "heartbeat", { pad: "x".repeat(n) }]);
      const under = pad(4_990_000);
      expect(Buffer.byteLength(under)).toBeLessThanOrEqual(REALTIME_LIMIT_DEFAULTS.maxMessageBytes);
      raw.ws.send(under);
      expect(replyOf(await raw.reply("big", 10_000)).status).toBe("ok");

      const closed = once(raw.ws, "close") as Promise<[number, Buffer]>;
      raw.ws.on("error", () => {}); // the server may reset while the rest is still being written
      const over = pad(5_000_000);
      expect(Buffer.byteLength(over)).toBeGreaterThan(REALTIME_LIMIT_DEFAULTS.maxMessageBytes);
      raw.ws.send(over);
      const [code] = await closed;
      expect(code).toBe(1009); // Message Too Big, as cowboy answers a frame over max_frame_size
    } finally {
      raw.close();
    }
  });
});

describe("presence", () => {
  let local: Awaited<ReturnType<typeof startLocalRealtime>>;
  beforeAll(async () => {
    local = await startLocalRealtime();
  });
  afterAll(async () => {
    await local?.stop();
  });

  const presenceConfig = (key: string) => ({ broadcast: { ack: false, self: false }, presence: { key, enabled: true }, private: false });
  const trackFrame = (ref: string, topic: string, payload: unknown) =>
    JSON.stringify([ref, `t-${ref}`, `realtime:${topic}`, "presence", { type: "presence", event: "track", payload }]);

  async function joinPresence(raw: RawSocket, prefix: string, n: number): Promise<void> {
    for (let i = 0; i < n; i++) raw.ws.send(joinFrame(`${prefix}${i}`, `${prefix}${i}`, presenceConfig(`${prefix}-key-${i}`)));
    await waitFor(() => raw.messages.filter((m) => m[3] === "phx_reply" && replyOf(m).status === "ok").length === n, 10_000, `${n} presence joins`);
  }

  it("2 sockets × 40 channels × 4.5 MB track: each refused with 'Track message size exceeded', nothing stored, the process does not grow", async () => {
    const sockets = [await RawSocket.open(local.url), await RawSocket.open(local.url)];
    try {
      await Promise.all(sockets.map((raw, s) => joinPresence(raw, `big${s}-`, 40)));
      const blob = "x".repeat(4.5 * MB);
      const before = heldBytes();
      for (const [s, raw] of sockets.entries()) {
        for (let i = 0; i < 40; i++) raw.ws.send(trackFrame(`big${s}-${i}`, `big${s}-${i}`, { blob }));
      }
      for (const [s, raw] of sockets.entries()) {
        await waitFor(() => raw.messages.filter((m) => m[3] === "phx_close").length === 40, 30_000, `40 channels of socket ${s} closed`);
        const systems = raw.messages.filter((m) => m[3] === "system");
        expect(systems).toHaveLength(40);
        expect(systems[0]![4]).toEqual({ extension: "system", status: "error", message: "Track message size exceeded", channel: `big${s}-0` });
        // Refused, not answered: hosted stops the channel without a reply to the track.
        expect(raw.messages.filter((m) => typeof m[1] === "string" && (m[1] as string).startsWith("t-"))).toHaveLength(0);
      }
      expect(local.realtime.stats().presences).toBe(0);
      const grown = heldBytes() - before;
      console.log(`presence flood: held ${Math.round(grown / 1e5) / 10} MB more with the sockets still open (80 × 4.5 MB offered)`);
      expect(grown).toBeLessThan(32 * MB);
      expect(sockets.every((raw) => raw.ws.readyState === WebSocket.OPEN)).toBe(true);
    } finally {
      for (const raw of sockets) raw.close();
    }
  }, 120_000);

  it("a track of up to maxPresencePayloadBytes is stored", async () => {
    const raw = await RawSocket.open(local.url);
    try {
      await joinPresence(raw, "fit", 1);
      const payload = { blob: "y".repeat(REALTIME_LIMIT_DEFAULTS.maxPresencePayloadBytes - 20) };
      expect(Buffer.byteLength(JSON.stringify(payload))).toBeLessThanOrEqual(REALTIME_LIMIT_DEFAULTS.maxPresencePayloadBytes);
      raw.ws.send(trackFrame("fit0", "fit0", payload));
      expect(replyOf(await raw.reply("t-fit0")).status).toBe("ok");
      expect(local.realtime.stats().presences).toBe(1);
    } finally {
      raw.close();
    }
    await waitFor(() => local.realtime.stats().presences === 0, 5000, "the entry gone with its socket");
  });

  it("an 11th presence entry on one socket is refused with PresenceLimitReached; updates, untrack and other sockets are not", async () => {
    const max = REALTIME_LIMIT_DEFAULTS.maxPresenceEntriesPerConnection;
    expect(max).toBe(10);
    const raw = await RawSocket.open(local.url);
    const other = await RawSocket.open(local.url);
    try {
      await joinPresence(raw, "e", max + 1);
      for (let i = 0; i < max; i++) raw.ws.send(trackFrame(`e${i}`, `e${i}`, { n: i }));
      for (let i = 0; i < max; i++) expect(replyOf(await raw.reply(`t-e${i}`)).status).toBe("ok");
      expect(local.realtime.stats().presences).toBe(max);

      raw.ws.send(trackFrame(`e${max}`, `e${max}`, { n: max }));
      expect(await raw.reply(`t-e${max}`)).toEqual([`e${max}`, `t-e${max}`, `realtime:e${max}`, "phx_reply", { status: "error", response: { reason: PRESENCE_LIMIT } }]);
      expect(local.realtime.stats().presences).toBe(max);

      // Changing a tracked entry is not a new one.
      raw.ws.send(JSON.stringify(["e0", "t-e0-update", "realtime:e0", "presence", { type: "presence", event: "track", payload: { n: 100 } }]));
      expect(replyOf(await raw.reply("t-e0-update")).status).toBe("ok");
      // Another socket has its own allowance.
      await joinPresence(other, "o", 1);
      other.ws.send(trackFrame("o0", "o0", { n: 0 }));
      expect(replyOf(await other.reply("t-o0")).status).toBe("ok");
      expect(local.realtime.stats().presences).toBe(max + 1);
      // Untracking frees a place.
      raw.ws.send(JSON.stringify(["e1", "u-e1", "realtime:e1", "presence", { type: "presence", event: "untrack" }]));
      expect(replyOf(await raw.reply("u-e1")).status).toBe("ok");
      raw.ws.send(JSON.stringify([`e${max}`, "t-again", `realtime:e${max}`, "presence", { type: "presence", event: "track", payload: { n: max } }]));
      expect(replyOf(await raw.reply("t-again")).status).toBe("ok");
      expect(local.realtime.stats().presences).toBe(max + 1);
    } finally {
      raw.close();
      other.close();
    }
  });
});

describe("connections per address", () => {
  let local: Awaited<ReturnType<typeof startLocalRealtime>>;
  const CAP = 5;
  beforeAll(async () => {
    local = await startLocalRealtime({ maxConnectionsPerAddress: CAP });
  });
  afterAll(async () => {
    await local?.stop();
  });

  it("answers the upgrade past the cap 429 'Too many connected users', per address, and admits again once one closes", async () => {
    const open: RawSocket[] = [];
    try {
      for (let i = 0; i < CAP; i++) open.push(await RawSocket.open(local.url));
      expect(await refusedUpgrade(local.url)).toEqual({ status: 429, body: JSON.stringify({ error: "Too many connected users" }) });
      // Another loopback address has its own count.
      const elsewhere = new WebSocket(local.url, { localAddress: "127.0.0.2" });
      await once(elsewhere, "open");
      elsewhere.terminate();
      open.shift()!.close();
      await waitFor(() => local.realtime.stats().sockets === CAP - 1, 5000, "the closed socket to be gone");
      open.push(await RawSocket.open(local.url));
    } finally {
      for (const raw of open) raw.close();
    }
  });

  it("has a default far above what a test run or the bench opens from one address", () => {
    // The busiest users of one address: bench/realtime.ts (50 subscribers) and the test suite.
    expect(REALTIME_LIMIT_DEFAULTS.maxConnectionsPerAddress).toBe(100);
    expect(resolveLimits({}, {}).maxConnectionsPerAddress).toBe(100);
    expect(resolveLimits({}, { COGO_REALTIME_MAX_CONNECTIONS_PER_ADDRESS: "500" }).maxConnectionsPerAddress).toBe(500);
    expect(resolveLimits({ maxConnectionsPerAddress: 7 }, { COGO_REALTIME_MAX_CONNECTIONS_PER_ADDRESS: "500" }).maxConnectionsPerAddress).toBe(7);
    expect(() => resolveLimits({}, { COGO_REALTIME_MAX_JOINS_PER_SECOND: "fast" })).toThrow("COGO_REALTIME_MAX_JOINS_PER_SECOND=fast: expected a whole number ≥ 1");
    expect(() => resolveLimits({ maxChannelsPerConnection: 0 }, {})).toThrow("limits.maxChannelsPerConnection=0: expected a whole number ≥ 1");
  });
});
