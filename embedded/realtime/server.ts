// The WebSocket endpoint: checks the apikey and protocol version before upgrading, as
// RealtimeWeb.UserSocket.connect does; a refused connection gets an HTTP error, never a socket.
import { STATUS_CODES, type IncomingMessage } from "node:http";
import type { Duplex } from "node:stream";
import { WebSocketServer, type WebSocket } from "ws";
import type { RealtimeContext } from "./channel.ts";
import { Connection } from "./connection.ts";
import type { Vsn } from "./serializer.ts";
import { TokenError, verifyRealtimeToken } from "./tokens.ts";

export const WEBSOCKET_PATH = "/realtime/v1/websocket";
/** The hosted endpoint's max_frame_size. */
const MAX_FRAME_BYTES = 5_000_000;

/** Phoenix negotiates "~> 1.0.0" and "~> 2.0.0"; a missing vsn means 1.0.0. */
function parseVsn(raw: string | null): Vsn | null {
  const match = /^(\d+)\.(\d+)\.(\d+)/.exec(raw ?? "1.0.0");
  if (!match || match[2] !== "0") return null;
  if (match[1] === "1") return 1;
  if (match[1] === "2") return 2;
  return null;
}

function refuse(socket: Duplex, status: number, body: string): void {
  const head =
    `HTTP/1.1 ${status} ${STATUS_CODES[status] ?? ""}\r\n` +
    (body ? "Content-Type: application/json\r\n" : "") +
    `Content-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n`;
  socket.once("finish", () => socket.destroy());
  socket.end(head + body);
}

type Accepted = { ok: true; vsn: Vsn; token: string } | { ok: false; status: number; body: string };

export class SocketServer {
  private readonly wss = new WebSocketServer({
    noServer: true,
    maxPayload: MAX_FRAME_BYTES,
    perMessageDeflate: false,
    // Invalid UTF-8 then fails JSON parsing and is dropped like any malformed frame.
    skipUTF8Validation: true,
  });
  private readonly connections = new Set<Connection>();

  constructor(private readonly ctx: RealtimeContext) {}

  get socketCount(): number {
    return this.connections.size;
  }

  handleUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void {
    socket.on("error", (err) => this.ctx.log(`realtime: upgrade socket error: ${err.message}`));
    void this.accept(req).then(
      (result) => {
        if (!result.ok) return refuse(socket, result.status, result.body);
        this.wss.handleUpgrade(req, socket, head, (ws) => this.open(ws, socket, result.vsn, result.token));
      },
      (err: unknown) => {
        this.ctx.log(`realtime: upgrade failed: ${err instanceof Error ? err.message : String(err)}`);
        refuse(socket, 500, JSON.stringify({ error: "Error connecting to Realtime" }));
      },
    );
  }

  /** Closes every socket as a restarting server does (1012 Service Restart); stragglers are cut after 1 s. */
  async close(): Promise<void> {
    for (const connection of this.connections) connection.close(1012, "server shutting down");
    const closed = new Promise<void>((resolve) => this.wss.close(() => resolve()));
    const cutoff = setTimeout(() => {
      for (const client of this.wss.clients) client.terminate();
    }, 1000);
    await closed;
    clearTimeout(cutoff);
  }

  private async accept(req: IncomingMessage): Promise<Accepted> {
    const url = new URL(req.url ?? "/", "http://localhost");
    if (url.pathname !== WEBSOCKET_PATH) return { ok: false, status: 404, body: "" };
    const vsn = parseVsn(url.searchParams.get("vsn"));
    if (vsn === null) return { ok: false, status: 403, body: "" };
    const header = req.headers["x-api-key"];
    const token = (typeof header === "string" ? header : null) ?? url.searchParams.get("apikey");
    if (!token) return { ok: false, status: 401, body: JSON.stringify({ error: "API key is missing" }) };
    try {
      await verifyRealtimeToken(this.ctx.jwtSecret, token);
    } catch (err) {
      if (!(err instanceof TokenError)) throw err;
      this.ctx.log(`realtime: refused connection: ${err.message}`);
      return { ok: false, status: 401, body: JSON.stringify({ error: err.connectMessage }) };
    }
    return { ok: true, vsn, token };
  }

  private open(ws: WebSocket, socket: Duplex, vsn: Vsn, token: string): void {
    const connection = new Connection(this.ctx, ws, socket, vsn, token, (c) => this.connections.delete(c));
    this.connections.add(connection);
  }
}
