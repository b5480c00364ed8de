// Which hosts a repository may be fetched from (the SSRF guard's address and name rules), shared
// by the API (the URL's host, at submit) and the worker (the URL's host, and every address the
// host name resolves to, before git connects). Ranges come from ipaddr.js: an address is public
// only when ipaddr.js calls its range "unicast" (and, for IPv6, it is in 2000::/3, the global
// unicast space); IPv6 forms that carry an IPv4 address (IPv4-compatible, IPv4-mapped,
// IPv4-translated, NAT64, 6to4, Teredo) are judged by that IPv4 address.
import ipaddr from "ipaddr.js";

type IP = ipaddr.IPv4 | ipaddr.IPv6;
type Cidr = [IP, number];

const cidr = (text: string): Cidr => ipaddr.parseCIDR(text);

/** IPv6 space outside this is refused (nothing else is allocated for global unicast). */
const GLOBAL_UNICAST_V6 = { globalUnicast: [cidr("2000::/3")] };
/** IPv4-compatible addresses (::a.b.c.d, deprecated); :: and ::1 have ranges of their own. */
const IPV4_COMPATIBLE = cidr("::/96");
/** The well-known NAT64 prefix; the IPv4 address is its last 32 bits (RFC 6052). */
const NAT64_WELL_KNOWN = cidr("64:ff9b::/96");

/**
 * Purposes of ranges that ipaddr.js files under one broad name ("reserved"), named in messages;
 * the decision is ipaddr.js's, this only says which block an address hit.
 */
const PURPOSES: Record<string, Cidr[]> = {
  "IETF protocol assignments": [cidr("192.0.0.0/24"), cidr("2001::/23")],
  benchmarking: [cidr("198.18.0.0/15")],
  documentation: [cidr("192.0.2.0/24"), cidr("198.51.100.0/24"), cidr("203.0.113.0/24"), cidr("2001:db8::/32"), cidr("3fff::/20")],
  "6to4 relay anycast": [cidr("192.88.99.0/24")],
  "reserved for future use": [cidr("240.0.0.0/4")],
};

/** ipaddr.js range names as a sentence says them; others are shown as ipaddr.js names them. */
const RANGE_WORDS: Record<string, string> = {
  linkLocal: "link-local",
  carrierGradeNat: "carrier-grade NAT",
  uniqueLocal: "unique local",
  deprecatedSiteLocal: "site-local",
  as112: "AS112 DNS sink",
  as112v6: "AS112 DNS sink",
  amt: "AMT relay",
  discard: "discard-only",
  orchid2: "ORCHID",
  deprecatedOrchid: "ORCHID",
  droneRemoteIdProtocolEntityTags: "drone remote ID",
  segmentRouting: "segment routing (SRv6)",
};

/** Private names that resolve only inside a network (the name and everything under it). */
const PRIVATE_SUFFIXES = ["internal", "local", "lan", "home.arpa", "localdomain"];
/** Cloud instance-metadata service names. */
const METADATA_NAMES = new Set(["metadata.google.internal", "metadata", "instance-data", "metadata.azure.com"]);

/** A host as compared: lower case, without IPv6 brackets or trailing dots (`localhost.` is `localhost`). */
export function normalizeHost(host: string): string {
  return host
    .trim()
    .toLowerCase()
    .replace(/^\[(.*)\]$/, "$1")
    .replace(/\.+$/, "");
}

/**
 * The IP address `host` denotes, in any textual form ipaddr.js reads (so `2130706433`,
 * `0177.0.0.1`, `0x7f.1` and `127.1` are 127.0.0.1, as for getaddrinfo and WHATWG URLs), or
 * null for a name.
 */
export function parseAddress(host: string): IP | null {
  let h = normalizeHost(host);
  // ipaddr.js reads "::a.b.c.d" as ::ffff:a.b.c.d; written in hex it is the IPv4-compatible
  // address it is (as URLs, the kernel and getaddrinfo's "::127.0.0.1" text mean it).
  const tail = /(?<=:)(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/.exec(h);
  if (tail?.slice(1).every((n) => Number(n) <= 255)) {
    const [a, b, c, d] = tail.slice(1).map(Number) as [number, number, number, number];
    h = h.slice(0, tail.index) + `${((a << 8) | b).toString(16)}:${((c << 8) | d).toString(16)}`;
  }
  return ipaddr.isValid(h) ? ipaddr.parse(h) : null;
}

/** "127.0.0.0/8 (loopback)": the special-purpose block `a` is in, as ipaddr.js names it. */
function describeRange(a: IP, range: string): string {
  if (range === "reserved") {
    const purpose = ipaddr.subnetMatch(a, PURPOSES, "");
    const block = PURPOSES[purpose]?.find((b) => b[0].kind() === a.kind() && a.match(b));
    if (block) return `${block[0].toString()}/${block[1]} (${purpose})`;
  }
  // ipaddr.js keeps its blocks on the prototype; only used to show which one matched.
  const table = (Object.getPrototypeOf(a) as { SpecialRanges?: Record<string, Cidr | Cidr[]> }).SpecialRanges?.[range];
  const blocks = table === undefined ? [] : Array.isArray(table[0]) ? (table as Cidr[]) : [table as Cidr];
  const block = blocks.find((b) => b[0].kind() === a.kind() && a.match(b));
  const words = RANGE_WORDS[range] ?? range;
  return block ? `${block[0].toString()}/${block[1]} (${words})` : `a ${words} range`;
}

const v4 = (hi: number, lo: number) => new ipaddr.IPv4([hi >> 8, hi & 255, lo >> 8, lo & 255]);

/** The IPv4 addresses an IPv6 address carries, with the form's name; [] when it carries none. */
function embeddedIPv4(a: ipaddr.IPv6, range: string): { form: string; address: ipaddr.IPv4 }[] {
  const p = a.parts as [number, number, number, number, number, number, number, number];
  switch (range) {
    case "ipv4Mapped":
      return [{ form: "an IPv4-mapped form", address: v4(p[6], p[7]) }];
    case "rfc6145":
      return [{ form: "an IPv4-translated form", address: v4(p[6], p[7]) }];
    case "rfc6052":
      return a.match(NAT64_WELL_KNOWN) ? [{ form: "a NAT64 (64:ff9b::/96) form", address: v4(p[6], p[7]) }] : [];
    case "6to4":
      return [{ form: "a 6to4 form", address: v4(p[1], p[2]) }];
    case "teredo": // server in bits 32–63, client obfuscated (inverted) in the last 32 bits
      return [
        { form: "a Teredo form (server)", address: v4(p[2], p[3]) },
        { form: "a Teredo form (client)", address: v4(p[6] ^ 0xffff, p[7] ^ 0xffff) },
      ];
    case "unicast":
      return a.match(IPV4_COMPATIBLE) ? [{ form: "an IPv4-compatible form", address: v4(p[6], p[7]) }] : [];
    default:
      return [];
  }
}

/**
 * Why `address` may not be a fetch target ("is in 127.0.0.0/8 (loopback)"), or null when it is a
 * public unicast address.
 */
export function addressRefusal(address: string | IP): string | null {
  const a = typeof address === "string" ? parseAddress(address) : address;
  if (!a) return "is not an IP address";
  if (a.kind() === "ipv4") {
    const range = a.range();
    return range === "unicast" ? null : `is in ${describeRange(a, range)}`;
  }
  const v6 = a as ipaddr.IPv6;
  const range = v6.range();
  const carried = embeddedIPv4(v6, range);
  if (carried.length) {
    for (const { form, address: inner } of carried) {
      const why = addressRefusal(inner);
      if (why) return `is ${form} of ${inner.toString()}, which ${why}`;
    }
    return null;
  }
  if (range === "rfc6052") return "is in 64:ff9b:1::/48 (local-use NAT64, whose IPv4 mapping only its own network knows)";
  if (range !== "unicast") return `is in ${describeRange(v6, range)}`;
  if (ipaddr.subnetMatch(v6, GLOBAL_UNICAST_V6, "outside") !== "globalUnicast") return "is outside 2000::/3 (global unicast)";
  return null;
}

/** Why a host name may not be fetched from by name (names that only resolve inside a network), or null. */
export function nameRefusal(name: string): string | null {
  const host = normalizeHost(name);
  if (!host) return "is empty";
  if (host.includes(":")) return "is not a valid IP address";
  if (host === "localhost" || host.endsWith(".localhost")) return "is a loopback name (localhost)";
  if (METADATA_NAMES.has(host)) return "is a cloud metadata name";
  const suffix = PRIVATE_SUFFIXES.find((s) => host === s || host.endsWith(`.${s}`));
  if (suffix) return `is a private network name (.${suffix})`;
  if (!host.includes(".")) return "is not a fully qualified name";
  return null;
}

/** Why `host` (a URL's host: a name or an address literal in any form) is refused, or null. */
export function hostRefusal(host: string): string | null {
  const address = parseAddress(host);
  return address ? addressRefusal(address) : nameRefusal(host);
}
