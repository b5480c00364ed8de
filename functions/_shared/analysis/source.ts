// Where a repository may be cloned from (SSRF guard), shared by the API (a 4xx before anything is
// stored) and the worker (checked again, with the host's resolved addresses, before cloning). The
// address and name rules are in addresses.ts.
import { CogoError } from "../errors.ts";
import { hostRefusal, normalizeHost, parseAddress } from "./addresses.ts";

/** A source the deployment does not fetch; `details` (the worker's log only) may say more. */
export class SourceRefused extends CogoError {
  constructor(problem: string, details?: Record<string, unknown>) {
    super("source_refused", `source: ${problem}`, details);
  }
}

/** Ends the message of a host refused by the address and name rules. */
export const PUBLIC_HOSTS_ONLY = "refused: this deployment fetches repositories from public hosts only";

/** What the operator allows (row cogo.analysis_policy). */
export interface AnalysisPolicy {
  /** Hosts on any special-purpose address (loopback, private, link-local, CGNAT, metadata, reserved…) or with private names, and plain http. @default false */
  allowPrivateHosts: boolean;
  /** Absolute directories under which local repositories (path or file://) may be analysed. @default [] (none) */
  localRoots: string[];
}

export type Source = { kind: "url"; url: string; host: string; port: number } | { kind: "local"; path: string } | { kind: "workspace"; workspaceId: string };

const WORKSPACE = /^workspace:([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})$/i;

/** Normalises an absolute POSIX path; null if it climbs above `/` or is not absolute. */
export function normalizeAbsolute(p: string): string | null {
  if (!p.startsWith("/") || p.includes("\0")) return null;
  const out: string[] = [];
  for (const part of p.split("/")) {
    if (part === "" || part === ".") continue;
    if (part === "..") {
      if (!out.length) return null;
      out.pop();
    } else out.push(part);
  }
  return "/" + out.join("/");
}

/** True when `path` is `root` or inside it (both normalised). */
export function isUnder(path: string, root: string): boolean {
  const r = root === "/" ? "/" : root.replace(/\/+$/, "");
  return path === r || path.startsWith(r === "/" ? "/" : r + "/");
}

/**
 * Parses and checks `source`: an https URL of a public host, `workspace:<id>` (a plan workspace
 * of the files API; the caller must own it), or (only when the operator lists local roots) an
 * absolute path or file:// URL under one of them. Throws SourceRefused saying why.
 * Local paths are checked lexically here; the caller resolves symlinks and checks again.
 */
export function checkSource(source: string, policy: AnalysisPolicy): Source {
  const s = source.trim();
  const ws = WORKSPACE.exec(s);
  if (ws) return { kind: "workspace", workspaceId: ws[1]!.toLowerCase() };
  if (s.startsWith("/") || /^file:/i.test(s)) return checkLocal(s, policy);
  if (/^[A-Za-z0-9._-]+@[^/:]+:/.test(s)) throw new SourceRefused("scp-style ssh sources (user@host:path) are not supported; use an https URL");
  let url: URL;
  try {
    url = new URL(s);
  } catch {
    throw new SourceRefused("is neither an https URL nor an absolute path");
  }
  const scheme = url.protocol.replace(/:$/, "");
  if (scheme !== "https" && scheme !== "http") {
    throw new SourceRefused(`scheme ${scheme}:// is not allowed; use https:// (or a local path where the deployment allows it)`);
  }
  if (url.username || url.password) throw new SourceRefused("credentials in the URL are not accepted");
  // WHATWG URL parsing has already read 2130706433, 0177.0.0.1, 0x7f.1 and 127.1 as 127.0.0.1.
  const host = normalizeHost(url.hostname);
  if (!host) throw new SourceRefused("the URL has no host");
  const port = url.port ? Number(url.port) : scheme === "https" ? 443 : 80;
  if (!policy.allowPrivateHosts) {
    const reason = hostRefusal(host);
    if (reason) throw new SourceRefused(`host ${url.hostname} ${reason}; ${PUBLIC_HOSTS_ONLY}`);
    if (scheme === "http") throw new SourceRefused("plain http is not allowed; use https://");
  }
  // The name git connects to is the one checked (and pinned by the worker): no trailing dot.
  if (!parseAddress(host)) url.hostname = host;
  url.hash = "";
  return { kind: "url", url: url.toString(), host, port };
}

function checkLocal(s: string, policy: AnalysisPolicy): Source {
  let raw = s;
  if (/^file:/i.test(s)) {
    let url: URL;
    try {
      url = new URL(s);
    } catch {
      throw new SourceRefused("is not a valid file:// URL");
    }
    if (url.host && url.host !== "localhost") throw new SourceRefused("file:// URLs name no host");
    raw = decodeURIComponent(url.pathname);
  }
  if (!policy.localRoots.length) throw new SourceRefused("local repositories are not allowed by this deployment; use an https URL");
  const path = normalizeAbsolute(raw);
  if (!path) throw new SourceRefused("is not an absolute path");
  if (!policy.localRoots.some((root) => isUnder(path, normalizeAbsolute(root) ?? "\0"))) {
    throw new SourceRefused(`${path} is outside the directories the deployment allows (${policy.localRoots.join(", ")})`);
  }
  return { kind: "local", path };
}
