// Test helpers around the official client (and a raw `ws` socket for what the client never sends).
import { createClient, type RealtimeChannel, type SupabaseClient } from "@supabase/supabase-js";
import WebSocket from "ws";
import type { RealtimeFixture } from "./fixture.ts";

export interface ConnectOptions {
  /** Session token source (supabase-js `accessToken` option); read again on every setAuth. */
  token?: () => string;
  vsn?: "1.0.0" | "2.0.0";
  key?: string;
}

/**
 * With a token source, waits until the client holds the token: a fresh supabase-js client sends its
 * first join before the token resolves, and Realtime then (correctly) authorizes the apikey instead.
 */
export async function connect(fx: RealtimeFixture, options: ConnectOptions = {}): Promise<SupabaseClient> {
  const token = options.token;
  const client = createClient(fx.url, options.key ?? fx.anonKey, {
    ...(token ? { accessToken: async () => token() } : { auth: { persistSession: false, autoRefreshToken: false } }),
    realtime: {
      transport: WebSocket as never,
      ...(options.vsn ? { vsn: options.vsn } : {}),
    },
  });
  if (token) await client.realtime.setAuth();
  return client;
}

export async function disconnect(...clients: SupabaseClient[]): Promise<void> {
  for (const client of clients) {
    await client.removeAllChannels();
    client.realtime.disconnect();
  }
}

/** Resolves on SUBSCRIBED; rejects with the server's reason on CHANNEL_ERROR or on TIMED_OUT. */
export function subscribed(channel: RealtimeChannel): Promise<void> {
  return new Promise((resolve, reject) => {
    channel.subscribe((status, err) => {
      if (status === "SUBSCRIBED") resolve();
      else if (status === "CHANNEL_ERROR" || status === "TIMED_OUT") reject(err ?? new Error(status));
    });
  });
}

export async function waitFor(condition: () => boolean, timeoutMs = 5000, what = "condition"): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

export const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

export function socketUrl(fx: RealtimeFixture, query: Record<string, string>): string {
  const url = new URL("/realtime/v1/websocket", fx.url.replace("http", "ws"));
  for (const [k, v] of Object.entries(query)) url.searchParams.set(k, v);
  return url.toString();
}

/** A raw protocol socket that records every frame it receives. */
export class RawSocket {
  readonly frames: Array<string | Buffer> = [];
  private constructor(readonly ws: WebSocket) {
    ws.on("message", (data, isBinary) => {
      const buf = Buffer.isBuffer(data) ? data : Buffer.from(data as ArrayBuffer);
      this.frames.push(isBinary ? buf : buf.toString("utf8"));
    });
  }

  static open(url: string): Promise<RawSocket> {
    const ws = new WebSocket(url);
    return new Promise((resolve, reject) => {
      ws.once("open", () => resolve(new RawSocket(ws)));
      ws.once("error", reject);
    });
  }

  /** Text frames decoded as V2 arrays. */
  get messages(): unknown[][] {
    return this.frames.filter((f): f is string => typeof f === "string").map((f) => JSON.parse(f) as unknown[]);
  }

  async reply(ref: string, timeoutMs = 5000): Promise<unknown[]> {
    await waitFor(() => this.messages.some((m) => m[1] === ref && m[3] === "phx_reply"), timeoutMs, `reply ${ref}`);
    return this.messages.find((m) => m[1] === ref && m[3] === "phx_reply")!;
  }

  close(): void {
    this.ws.terminate();
  }
}

/** The HTTP answer to a refused upgrade. */
export function refusedUpgrade(url: string): Promise<{ status: number; body: string }> {
  const ws = new WebSocket(url);
  return new Promise((resolve, reject) => {
    ws.once("open", () => {
      ws.terminate();
      reject(new Error("connection was accepted"));
    });
    ws.once("unexpected-response", (_req, res) => {
      let body = "";
      res.on("data", (chunk: Buffer) => (body += chunk.toString("utf8")));
      res.on("end", () => resolve({ status: res.statusCode ?? 0, body }));
    });
    ws.once("error", () => {});
  });
}
