// The WebSocket endpoint: checks the apikey and protocol version before upgrading, as
// RealtimeWeb.UserSocket.connect does; a refused connection gets an HTTP error, never a socket.
// Also caps the sockets one client address holds open (limits.maxConnectionsPerAddress).
import { STATUS_CODES, type IncomingMessage } from "node:http";
import type { Duplex } from "node:stream";
import { WebSocketServer, type WebSocket } from "ws";
import type { RealtimeContext } from "./channel.ts";
import { Connection } from "./connection.ts";
import type { Vsn } from "./serializer.ts";
import { TokenError, verifyRealtimeToken } from "./tokens.ts";

export const WEBSOCKET_PATH = "/realtime/v1/websocket";
/**
 * The hosted answer when a tenant is at max_concurrent_users, logged as ConnectionRateLimitReached
 * (lib/realtime_web/channels/user_socket.ex, error_response(:too_many_connections)).
 */
const TOO_MANY_CONNECTIONS = { status: 429, body: JSON.stringify({ error: "Too many connected users" }) };

/** Phoenix negotiates "~> 1.0.0" and "~> 2.0.0"; a missing vsn means 1.0.0. */
function parseVsn(raw: string | null): Vsn | null {
  const match = /^(\d+)\.(\d+)\.(\d+)/.exec(raw ?? "1.0.0");
  if (match?.[2] !== "0") return null;
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
  private readonly wss: WebSocketServer;
  private readonly connections = new Set<Connection>();
  /** Upgrade requests and open sockets per client address, counted until the TCP socket closes. */
  private readonly perAddress = new Map<string, number>();

  constructor(private readonly ctx: RealtimeContext) {
    this.wss = new WebSocketServer({
      noServer: true,
      // A bigger frame is refused from its header (close 1009), before it is buffered.
      maxPayload: ctx.limits.maxMessageBytes,
      perMessageDeflate: false,
      // Invalid UTF-8 then fails JSON parsing and is dropped like any malformed frame.
      skipUTF8Validation: true,
    });
  }

  get socketCount(): number {
    return this.connections.size;
  }

  handleUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void {
    socket.on("error", (err) => this.ctx.log(`realtime: upgrade socket error: ${err.message}`));
    if (!this.countAddress(req.socket.remoteAddress ?? "unknown", socket)) {
      return refuse(socket, TOO_MANY_CONNECTIONS.status, TOO_MANY_CONNECTIONS.body);
    }
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

  /** Counts the socket against its address until it closes; false (and not counted) when the address is full. */
  private countAddress(address: string, socket: Duplex): boolean {
    if (socket.destroyed) return true; // gone already: its upgrade fails, nothing to count
    const open = this.perAddress.get(address) ?? 0;
    if (open >= this.ctx.limits.maxConnectionsPerAddress) {
      this.ctx.log(`realtime: ConnectionRateLimitReached: ${open} sockets open from ${address}; refused another`);
      return false;
    }
    this.perAddress.set(address, open + 1);
    socket.once("close", () => {
      const n = (this.perAddress.get(address) ?? 1) - 1;
      if (n <= 0) this.perAddress.delete(address);
      else this.perAddress.set(address, n);
    });
    return true;
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
