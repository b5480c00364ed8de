// Serves the built dashboard (dashboard/dist, made by `npm run dashboard:build`) at /dashboard/ on
// the gateway, plus /dashboard/config.json with the project's public settings (URL, anon key), so
// the page talks to this stack with supabase-js like any Supabase app.
import { readFile } from "node:fs/promises";
import type http from "node:http";
import path from "node:path";

export const DASHBOARD_PATH = "/dashboard/";

const TYPES: Record<string, string> = {
  ".html": "text/html; charset=utf-8",
  ".js": "text/javascript; charset=utf-8",
  ".css": "text/css; charset=utf-8",
  ".map": "application/json",
  ".json": "application/json",
  ".svg": "image/svg+xml",
};

export interface DashboardOptions {
  /** The built files. */
  dir: string;
  /** Public key the page uses (never the service key). */
  anonKey: string;
}

/** Handles /dashboard and everything under it; the caller routes only those paths here. */
export async function serveDashboard(req: http.IncomingMessage, res: http.ServerResponse, url: URL, options: DashboardOptions): Promise<void> {
  if (req.method !== "GET" && req.method !== "HEAD") {
    res.writeHead(405, { allow: "GET, HEAD" }).end();
    return;
  }
  if (url.pathname === "/dashboard") {
    res.writeHead(308, { location: DASHBOARD_PATH + url.search }).end();
    return;
  }
  const rel = url.pathname.slice(DASHBOARD_PATH.length) || "index.html";
  if (rel === "config.json") {
    // The page's own origin is the API URL here; a deployed build carries its URL in a static config.json.
    send(res, 200, TYPES[".json"]!, JSON.stringify({ anonKey: options.anonKey, auth: "token" }));
    return;
  }
  const file = path.resolve(options.dir, rel);
  if (!file.startsWith(path.resolve(options.dir) + path.sep) || !TYPES[path.extname(file)]) {
    send(res, 404, "text/plain", "not found");
    return;
  }
  try {
    send(res, 200, TYPES[path.extname(file)]!, await readFile(file));
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== "ENOENT") throw err;
    if (rel === "index.html") send(res, 503, "text/plain", "The dashboard is not built: run `npm run dashboard:build` (npm start builds it).");
    else send(res, 404, "text/plain", "not found");
  }
}

function send(res: http.ServerResponse, status: number, type: string, body: string | Buffer): void {
  res.writeHead(status, { "content-type": type, "cache-control": "no-cache", "x-content-type-options": "nosniff" });
  res.end(body);
}
