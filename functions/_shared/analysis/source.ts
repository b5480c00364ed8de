// Where a repository may be cloned from (SSRF guard), shared by the API (a 4xx before anything is
// stored) and the worker (checked again, with the host's resolved addresses, before cloning).
import { CogoError } from "../errors.ts";

export class SourceRefused extends CogoError {
  constructor(problem: string) {
    super("source_refused", `source: ${problem}`);
  }
}

/** What the operator allows (row cogo.analysis_policy). */
export interface AnalysisPolicy {
  /** Hosts on loopback, private, link-local, CGNAT or metadata addresses, and plain http. @default false */
  allowPrivateHosts: boolean;
  /** Absolute directories under which local repositories (path or file://) may be analysed. @default [] (none) */
  localRoots: string[];
}

export type Source =
  | { kind: "url"; url: string; host: string; port: number }
  | { kind: "local"; path: string }
  | { kind: "workspace"; workspaceId: string };

const WORKSPACE = /^workspace:([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})$/i;

const METADATA_HOSTS = new Set(["metadata.google.internal", "metadata", "instance-data", "metadata.azure.com"]);

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

function ipv4(host: string): number[] | null {
  const m = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/.exec(host);
  if (!m) return null;
  const parts = m.slice(1).map(Number);
  return parts.every((n) => n <= 255) ? parts : null;
}

/** Why an IP address may not be a clone target, or null if it is public. */
export function privateAddressReason(address: string): string | null {
  let a = address.replace(/^\[|\]$/g, "").toLowerCase();
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/.exec(a);
  if (mapped) a = mapped[1]!;
  const v4 = ipv4(a);
  if (v4) {
    const [x, y] = v4 as [number, number, number, number];
    if (a === "169.254.169.254") return "is the cloud metadata address";
    if (x === 127) return "is a loopback address";
    if (x === 0) return "is an unspecified address";
    if (x === 10 || (x === 172 && y >= 16 && y <= 31) || (x === 192 && y === 168)) return "is a private address";
    if (x === 169 && y === 254) return "is a link-local address";
    if (x === 100 && y >= 64 && y <= 127) return "is a carrier-grade NAT address";
    if (x >= 224) return "is a multicast or reserved address";
    return null;
  }
  if (a.includes(":")) {
    if (a === "::1") return "is a loopback address";
    if (a === "::") return "is an unspecified address";
    if (a === "fd00:ec2::254") return "is the cloud metadata address";
    if (/^fe[89ab]/.test(a)) return "is a link-local address";
    if (/^f[cd]/.test(a)) return "is a private (unique local) address";
    if (/^ff/.test(a)) return "is a multicast address";
    if (/^::ffff:/.test(a) || /^64:ff9b:/.test(a)) return "is a mapped address";
    return null;
  }
  return null;
}

/** Why a host name may not be a clone target (names that only resolve inside a network). */
function privateHostReason(host: string): string | null {
  if (host === "localhost" || host.endsWith(".localhost")) return "is a loopback name";
  if (METADATA_HOSTS.has(host)) return "is a cloud metadata name";
  if (host.endsWith(".internal") || host.endsWith(".local") || host.endsWith(".lan") || host.endsWith(".home.arpa")) return "is a private network name";
  if (!host.includes(".")) return "is not a fully qualified name";
  return null;
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
  const host = url.hostname.toLowerCase();
  if (!host) throw new SourceRefused("the URL has no host");
  const port = url.port ? Number(url.port) : scheme === "https" ? 443 : 80;
  if (!policy.allowPrivateHosts) {
    const reason = privateAddressReason(host) ?? (host.startsWith("[") || ipv4(host) ? null : privateHostReason(host));
    if (reason) throw new SourceRefused(`host ${host} ${reason}; the deployment does not allow private hosts`);
    if (scheme === "http") throw new SourceRefused("plain http is not allowed; use https://");
  }
  url.hash = "";
  return { kind: "url", url: url.toString(), host: host.replace(/^\[|\]$/g, ""), port };
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
