// A hostile Realtime client in its own process (so its CPU is not the server's): sockets that send
// private-channel joins with the anon key, reconnecting whenever the server drops them, until
// stdin closes; then it prints one JSON summary line. Used by tests/security/realtime-flood.test.ts.
//
//   node --import tsx tests/realtime/flooder.ts <wsUrl> <anonKey> <sockets> <burst> <perSecond>
//
// Each socket sends `burst` joins at once, then `perSecond` joins a second (0: burst only).
import WebSocket from "ws";

export interface FloodSummary {
  socketsOpened: number;
  joinsSent: number;
  /** Join replies by the reason's code, the part before ": " ("ok" for an accepted join). */
  replies: Record<string, number>;
  /** One full reason per code. */
  reasons: Record<string, string>;
  /** Server-initiated closes by close code. */
  closeCodes: Record<string, number>;
  /** Upgrades answered with an HTTP status instead of a socket, by status. */
  refusedUpgrades: Record<string, number>;
}

const [url, anonKey, socketsArg, burstArg, rateArg] = process.argv.slice(2);
if (!url || !anonKey || !socketsArg || !burstArg || rateArg === undefined) {
  console.error("usage: flooder.ts <wsUrl> <anonKey> <sockets> <burst> <perSecond>");
  process.exit(2);
}
const sockets = Number(socketsArg);
const burst = Number(burstArg);
const perSecond = Number(rateArg);
const TICK_MS = 100;

const summary: FloodSummary = { socketsOpened: 0, joinsSent: 0, replies: {}, reasons: {}, closeCodes: {}, refusedUpgrades: {} };
const bump = (counts: Record<string, number>, key: string) => (counts[key] = (counts[key] ?? 0) + 1);
let stopping = false;
let ref = 0;
const opened = new Set<WebSocket>();

function joinFrame(): string {
  const r = String(++ref);
  const topic = `realtime:flood-${process.pid}-${r}`;
  const config = { broadcast: { ack: false, self: false }, presence: { key: "", enabled: false }, postgres_changes: [], private: true };
  return JSON.stringify([r, r, topic, "phx_join", { config, access_token: anonKey }]);
}

function send(ws: WebSocket, n: number): void {
  for (let i = 0; i < n && ws.readyState === WebSocket.OPEN; i++) {
    ws.send(joinFrame());
    summary.joinsSent++;
  }
}

function flood(): void {
  if (stopping) return;
  const ws = new WebSocket(url!);
  let timer: NodeJS.Timeout | undefined;
  let refused = false;
  ws.on("unexpected-response", (req, res) => {
    refused = true;
    bump(summary.refusedUpgrades, String(res.statusCode));
    req.destroy();
    setTimeout(flood, 50);
  });
  ws.on("error", () => {});
  ws.on("open", () => {
    summary.socketsOpened++;
    send(ws, burst);
    if (perSecond > 0) timer = setInterval(() => send(ws, Math.floor((perSecond * TICK_MS) / 1000)), TICK_MS);
    if (summary.socketsOpened === 1) process.stdout.write("flooding\n");
  });
  ws.on("message", (data) => {
    const msg = JSON.parse(data.toString()) as [string, string, string, string, { status?: string; response?: { reason?: string } }];
    if (msg[3] !== "phx_reply") return;
    const reason = msg[4].status === "ok" ? "ok" : String(msg[4].response?.reason);
    const code = reason.split(": ")[0]!;
    bump(summary.replies, code);
    summary.reasons[code] ??= reason;
  });
  ws.on("close", (code) => {
    clearInterval(timer);
    opened.delete(ws);
    if (stopping || refused) return;
    bump(summary.closeCodes, String(code));
    flood();
  });
  opened.add(ws);
}

for (let i = 0; i < sockets; i++) flood();

process.stdin.resume();
process.stdin.on("end", () => {
  stopping = true;
  for (const ws of opened) ws.terminate();
  process.stdout.write(JSON.stringify(summary) + "\n", () => process.exit(0));
});
