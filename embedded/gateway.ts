// The API gateway of the embedded default: one port, like Supabase's Kong. It verifies JWTs for
// functions as the edge runtime's main service does, strips `/functions/v1`, and hands
// `/realtime/v1/*` to the Realtime endpoint.
import http from "node:http";
import type { Duplex } from "node:stream";
import { serveDashboard, type DashboardOptions } from "./dashboard.ts";
import type { RunningFunction } from "./functions.ts";
import { AuthError, credentialOf, GATEWAY_HEADER, type Authenticator } from "../functions/_shared/auth.ts";
import type { Realtime } from "./realtime/index.ts";

const MAX_BODY_BYTES = 64 * 1024 * 1024;
/** A function restarting under --watch refuses connections for a moment; retry that long. */
const RESTART_RETRY_MS = 10_000;

export interface GatewayOptions {
  /** Proves callers of functions with verify_jwt (the same rule the function applies itself). */
  auth: Authenticator;
  /** Sent to functions in GATEWAY_HEADER so they can refuse anyone who skipped the gateway. */
  gatewaySecret: string;
  realtime: Realtime;
  /** Looked up per request so a restarted function's new port is used. */
  functionFor(slug: string): RunningFunction | undefined;
  /** Serve the built dashboard at /dashboard/. */
  dashboard?: DashboardOptions;
}

function sendJson(res: http.ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  res.writeHead(status, { "content-type": "application/json", ...headers });
  res.end(JSON.stringify(body));
}

function unauthorized(res: http.ServerResponse, code: string, message: string): void {
  sendJson(res, 401, { code, message, msg: message }, { "sb-error-code": code });
}

/**
 * verify_jwt as the edge runtime answers it (its error codes and messages), with the function's
 * own rule (functions/_shared/auth.ts): the bearer token, else the apikey header, proven; an
 * `sb_` key is compared with the configured keys, never decoded or swapped for another header.
 */
async function checkCaller(req: http.IncomingMessage, auth: Authenticator): Promise<[string, string] | undefined> {
  try {
    const header = (name: string) => {
      const v = req.headers[name];
      return typeof v === "string" ? v : undefined;
    };
    await auth.verify(credentialOf(header));
    return undefined;
  } catch (err) {
    if (!(err instanceof AuthError)) throw err;
    if (err.reason === "missing") return ["UNAUTHORIZED_NO_AUTH_HEADER", "Missing authorization header"];
    return ["UNAUTHORIZED_INVALID_JWT_FORMAT", "Invalid JWT"];
  }
}

/**
 * Request bytes buffered across all requests at once: the anon key is public, so a caller that
 * passes verify_jwt could otherwise hold 64 MB per connection in the gateway's memory.
 */
const MAX_BUFFERED_BYTES = 256 * 1024 * 1024;
let buffered = 0;

type Body = { body: Buffer } | { refused: 413 | 503 };

async function readBody(req: http.IncomingMessage): Promise<Body> {
  const declared = Number(req.headers["content-length"] ?? 0);
  if (declared > MAX_BODY_BYTES) return { refused: 413 };
  const chunks: Buffer[] = [];
  let size = 0;
  let kept = false;
  try {
    for await (const chunk of req as AsyncIterable<Buffer>) {
      size += chunk.length;
      buffered += chunk.length;
      if (size > MAX_BODY_BYTES) return { refused: 413 };
      if (buffered > MAX_BUFFERED_BYTES) return { refused: 503 };
      chunks.push(chunk);
    }
    kept = true;
    return { body: Buffer.concat(chunks) };
  } finally {
    if (!kept) buffered -= size; // a kept body counts until its request is done (handleFunction)
  }
}

function forward(fn: RunningFunction, gatewaySecret: string, req: http.IncomingMessage, path: string, body: Buffer, res: http.ServerResponse): Promise<"refused" | "done"> {
  return new Promise((resolve) => {
    // A client's own GATEWAY_HEADER is replaced: only the gateway knows the secret.
    const headers = { ...req.headers, host: `127.0.0.1:${fn.port}`, "content-length": String(body.length), [GATEWAY_HEADER]: gatewaySecret };
    delete headers["transfer-encoding"];
    const upstream = http.request({ host: "127.0.0.1", port: fn.port, method: req.method, path, headers }, (up) => {
      res.writeHead(up.statusCode ?? 502, up.headers);
      up.pipe(res);
      up.on("end", () => resolve("done"));
      up.on("error", () => (res.destroy(), resolve("done")));
    });
    // Removed when refused: a request retried while a function restarts must not pile up listeners.
    const abort = () => upstream.destroy();
    upstream.on("error", (err: NodeJS.ErrnoException) => {
      if (err.code === "ECONNREFUSED" && !res.headersSent) return (res.off("close", abort), resolve("refused"));
      if (!res.headersSent) sendJson(res, 502, { code: "FUNCTION_UNREACHABLE", message: `Function ${fn.config.slug} failed: ${err.message}` });
      else res.destroy();
      resolve("done");
    });
    res.on("close", abort);
    upstream.end(body);
  });
}

async function handleFunction(req: http.IncomingMessage, res: http.ServerResponse, url: URL, options: GatewayOptions): Promise<void> {
  const rest = url.pathname.slice("/functions/v1/".length);
  const slug = rest.split("/")[0] ?? "";
  const first = options.functionFor(slug);
  if (!first) {
    res.writeHead(404, { "content-type": "text/plain" });
    res.end("Function not found");
    return;
  }
  if (req.method !== "OPTIONS" && first.config.verifyJwt) {
    const failure = await checkCaller(req, options.auth);
    if (failure) return unauthorized(res, ...failure);
  }
  // A preflight carries no body worth reading (it is not authenticated either).
  const read: Body = req.method === "OPTIONS" ? { body: Buffer.alloc(0) } : await readBody(req);
  if ("refused" in read) {
    res.setHeader("connection", "close"); // the rest of the body is not read
    return read.refused === 413
      ? sendJson(res, 413, { code: "PAYLOAD_TOO_LARGE", message: `Request body over ${MAX_BODY_BYTES} bytes` })
      : sendJson(res, 503, { code: "GATEWAY_BUSY", message: "Too many large requests in flight; retry shortly." }, { "retry-after": "1" });
  }
  const body = read.body;
  try {
    await forwardWithRetry(req, res, `/${rest}${url.search}`, slug, first, body, options);
  } finally {
    if (req.method !== "OPTIONS") buffered -= body.length;
  }
}

async function forwardWithRetry(
  req: http.IncomingMessage,
  res: http.ServerResponse,
  target: string,
  slug: string,
  first: RunningFunction,
  body: Buffer,
  options: GatewayOptions,
): Promise<void> {
  const deadline = Date.now() + RESTART_RETRY_MS;
  for (;;) {
    const fn = options.functionFor(slug) ?? first;
    if ((await forward(fn, options.gatewaySecret, req, target, body, res)) === "done") return;
    if (Date.now() > deadline) {
      return sendJson(res, 503, { code: "FUNCTION_UNAVAILABLE", message: `Function ${slug} is not accepting connections; check its log.` });
    }
    await new Promise((r) => setTimeout(r, 100));
  }
}

export function createGateway(options: GatewayOptions): http.Server {
  const server = http.createServer((req, res) => {
    const url = new URL(req.url ?? "/", "http://localhost");
    const done = (err: unknown) => {
      if (!res.headersSent) sendJson(res, 500, { code: "GATEWAY_ERROR", message: String(err) });
      else res.destroy();
    };
    if (url.pathname.startsWith("/functions/v1/")) {
      handleFunction(req, res, url, options).catch(done);
    } else if (url.pathname.startsWith("/realtime/v1/")) {
      options.realtime
        .handleHttp(req, res)
        .then((handled) => handled || sendJson(res, 404, { message: "no Realtime route " + url.pathname }))
        .catch(done);
    } else if (options.dashboard && (url.pathname === "/dashboard" || url.pathname.startsWith("/dashboard/"))) {
      serveDashboard(req, res, url, options.dashboard).catch(done);
    } else if (url.pathname === "/_internal/health") {
      sendJson(res, 200, { message: "ok" });
    } else {
      sendJson(res, 404, { message: `no route ${url.pathname}; the embedded default serves /functions/v1/*, /realtime/v1/* and /dashboard/` });
    }
  });
  server.on("upgrade", (req: http.IncomingMessage, socket: Duplex, head: Buffer) => {
    const url = new URL(req.url ?? "/", "http://localhost");
    if (url.pathname === "/realtime/v1/websocket") options.realtime.handleUpgrade(req, socket, head);
    else socket.end("HTTP/1.1 404 Not Found\r\n\r\n");
  });
  return server;
}
