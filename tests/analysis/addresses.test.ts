// The source guard's address and name rules (pure, no stack): every special-purpose range ipaddr.js
// names, IPv6 forms that carry an IPv4 address, unusual IPv4 spellings, private names with and
// without trailing dots; and the worker's one DNS lookup, checked and pinned for git.
import { describe, expect, it } from "vitest";
import { addressRefusal, hostRefusal, nameRefusal, normalizeHost, parseAddress } from "../../functions/_shared/analysis/addresses.ts";
import { checkSource, SourceRefused } from "../../functions/_shared/analysis/source.ts";
import { CloneFailed, COULD_NOT_FETCH, pinAddresses, type Resolver } from "../../worker/analysis/clone.ts";

const closed = { allowPrivateHosts: false, localRoots: [] };
const open = { allowPrivateHosts: true, localRoots: [] };
const PUBLIC_ONLY = "refused: this deployment fetches repositories from public hosts only";

describe("addresses", () => {
  it.each([
    // IPv4 ranges as ipaddr.js names them, "reserved" blocks by purpose
    ["0.0.0.0", "is in 0.0.0.0/8 (unspecified)"],
    ["10.1.2.3", "is in 10.0.0.0/8 (private)"],
    ["172.31.255.255", "is in 172.16.0.0/12 (private)"],
    ["192.168.0.1", "is in 192.168.0.0/16 (private)"],
    ["100.64.0.1", "is in 100.64.0.0/10 (carrier-grade NAT)"],
    ["100.127.255.254", "is in 100.64.0.0/10 (carrier-grade NAT)"],
    ["127.0.0.53", "is in 127.0.0.0/8 (loopback)"],
    ["169.254.169.254", "is in 169.254.0.0/16 (link-local)"],
    ["192.0.0.1", "is in 192.0.0.0/24 (IETF protocol assignments)"],
    ["192.0.0.170", "is in 192.0.0.0/24 (IETF protocol assignments)"],
    ["192.0.2.1", "is in 192.0.2.0/24 (documentation)"],
    ["198.51.100.7", "is in 198.51.100.0/24 (documentation)"],
    ["203.0.113.9", "is in 203.0.113.0/24 (documentation)"],
    ["198.18.0.1", "is in 198.18.0.0/15 (benchmarking)"],
    ["198.19.255.255", "is in 198.18.0.0/15 (benchmarking)"],
    ["192.88.99.1", "is in 192.88.99.0/24 (6to4 relay anycast)"],
    ["192.175.48.1", "is in 192.175.48.0/24 (AS112 DNS sink)"],
    ["192.52.193.1", "is in 192.52.193.0/24 (AMT relay)"],
    ["224.0.0.1", "is in 224.0.0.0/4 (multicast)"],
    ["240.0.0.1", "is in 240.0.0.0/4 (reserved for future use)"],
    ["255.255.255.255", "is in 255.255.255.255/32 (broadcast)"],
    // unusual IPv4 spellings are the address they denote
    ["2130706433", "is in 127.0.0.0/8 (loopback)"],
    ["0177.0.0.1", "is in 127.0.0.0/8 (loopback)"],
    ["0x7f.1", "is in 127.0.0.0/8 (loopback)"],
    ["0x7f000001", "is in 127.0.0.0/8 (loopback)"],
    ["127.1", "is in 127.0.0.0/8 (loopback)"],
    ["10.1", "is in 10.0.0.0/8 (private)"],
    // IPv6 ranges
    ["::", "is in ::/128 (unspecified)"],
    ["::1", "is in ::1/128 (loopback)"],
    ["[::1]", "is in ::1/128 (loopback)"],
    ["fe80::1", "is in fe80::/10 (link-local)"],
    ["fec0::1", "is in fec0::/10 (site-local)"],
    ["fd00:ec2::254", "is in fc00::/7 (unique local)"],
    ["fc00::1", "is in fc00::/7 (unique local)"],
    ["ff02::1", "is in ff00::/8 (multicast)"],
    ["100::1", "is in 100::/64 (discard-only)"],
    ["2001:db8::1", "is in 2001:db8::/32 (documentation)"],
    ["3fff::1", "is in 3fff::/20 (documentation)"],
    ["2001:2::1", "is in 2001:2::/48 (benchmarking)"],
    ["2001:1::1", "is in 2001::/23 (IETF protocol assignments)"],
    ["5f00::1", "is in 5f00::/16 (segment routing (SRv6))"],
    ["4000::1", "is outside 2000::/3 (global unicast)"],
    // IPv6 forms that carry an IPv4 address are judged by it
    ["::7f00:1", "is an IPv4-compatible form of 127.0.0.1, which is in 127.0.0.0/8 (loopback)"],
    ["::127.0.0.1", "is an IPv4-compatible form of 127.0.0.1, which is in 127.0.0.0/8 (loopback)"],
    ["0:0:0:0:0:0:10.0.0.1", "is an IPv4-compatible form of 10.0.0.1, which is in 10.0.0.0/8 (private)"],
    ["::2", "is an IPv4-compatible form of 0.0.0.2, which is in 0.0.0.0/8 (unspecified)"],
    ["::ffff:127.0.0.1", "is an IPv4-mapped form of 127.0.0.1, which is in 127.0.0.0/8 (loopback)"],
    ["::ffff:a9fe:a9fe", "is an IPv4-mapped form of 169.254.169.254, which is in 169.254.0.0/16 (link-local)"],
    ["::ffff:0:192.168.1.1", "is an IPv4-translated form of 192.168.1.1, which is in 192.168.0.0/16 (private)"],
    ["64:ff9b::127.0.0.1", "is a NAT64 (64:ff9b::/96) form of 127.0.0.1, which is in 127.0.0.0/8 (loopback)"],
    ["64:ff9b::c612:1", "is a NAT64 (64:ff9b::/96) form of 198.18.0.1, which is in 198.18.0.0/15 (benchmarking)"],
    ["64:ff9b:1::8c52:7003", "is in 64:ff9b:1::/48 (local-use NAT64, whose IPv4 mapping only its own network knows)"],
    ["2002:7f00:1::", "is a 6to4 form of 127.0.0.1, which is in 127.0.0.0/8 (loopback)"],
    ["2002:a9fe:a9fe:1::1", "is a 6to4 form of 169.254.169.254, which is in 169.254.0.0/16 (link-local)"],
    // Teredo: server 65.54.227.120 (public), client 192.0.2.45 stored inverted
    ["2001:0:4136:e378:8000:63bf:3fff:fdd2", "is a Teredo form (client) of 192.0.2.45, which is in 192.0.2.0/24 (documentation)"],
    ["2001:0:a00:1::73ad:8ffc", "is a Teredo form (server) of 10.0.0.1, which is in 10.0.0.0/8 (private)"],
  ])("refuses %s", (address, why) => {
    expect(addressRefusal(address)).toBe(why);
  });

  it.each([
    "140.82.112.3",
    "8.8.8.8",
    "1.1.1.1",
    "100.63.255.255", // just below 100.64.0.0/10
    "198.17.255.255", // just below 198.18.0.0/15
    "2606:4700::1111",
    "2a00:1450:4001:80b::200e",
    "::ffff:140.82.112.3", // IPv4-mapped public
    "64:ff9b::8c52:7003", // NAT64 of 140.82.112.3
    "2002:8c52:7003::1", // 6to4 of 140.82.112.3
    "2001:0:4136:e378:8000:63bf:73ad:8ffc", // Teredo: server 65.54.227.120, client 140.82.112.3
  ])("allows the public address %s", (address) => {
    expect(addressRefusal(address)).toBeNull();
  });

  it("reads addresses in every spelling and names as names", () => {
    expect(parseAddress("0x7f.1")?.toString()).toBe("127.0.0.1");
    expect(parseAddress("017700000001")?.toString()).toBe("127.0.0.1");
    expect(parseAddress("[::ffff:7f00:1]")?.toString()).toBe("::ffff:7f00:1");
    expect(parseAddress("github.com")).toBeNull();
    expect(normalizeHost("LocalHost..")).toBe("localhost");
    expect(normalizeHost("[::1]")).toBe("::1");
  });
});

describe("names", () => {
  it.each([
    ["localhost", "is a loopback name (localhost)"],
    ["localhost.", "is a loopback name (localhost)"],
    ["LOCALHOST..", "is a loopback name (localhost)"],
    ["api.localhost", "is a loopback name (localhost)"],
    ["metadata.google.internal", "is a cloud metadata name"],
    ["metadata.google.internal.", "is a cloud metadata name"],
    ["metadata", "is a cloud metadata name"],
    ["db.internal", "is a private network name (.internal)"],
    ["internal", "is a private network name (.internal)"],
    ["printer.local.", "is a private network name (.local)"],
    ["nas.lan", "is a private network name (.lan)"],
    ["router.home.arpa", "is a private network name (.home.arpa)"],
    ["host.localdomain", "is a private network name (.localdomain)"],
    ["intranet", "is not a fully qualified name"],
    ["intranet.", "is not a fully qualified name"],
    [".", "is empty"],
    ["::0177.0.0.1.1", "is not a valid IP address"],
  ])("refuses %s", (name, why) => {
    expect(nameRefusal(name)).toBe(why);
  });

  it.each(["github.com", "github.com.", "GitLab.COM", "codeberg.org", "git.sr.ht", "internal.example.com", "localhost.example.com"])("allows %s", (name) => {
    expect(hostRefusal(name)).toBeNull();
  });
});

describe("checkSource", () => {
  const refused = (host: string, why: string) => `source: host ${host} ${why}; ${PUBLIC_ONLY}`;
  it.each([
    // the reported bypasses
    ["https://localhost./", refused("localhost.", "is a loopback name (localhost)")],
    ["https://metadata.google.internal./", refused("metadata.google.internal.", "is a cloud metadata name")],
    ["https://[::127.0.0.1]/", refused("[::7f00:1]", "is an IPv4-compatible form of 127.0.0.1, which is in 127.0.0.0/8 (loopback)")],
    ["https://[::7f00:1]/", refused("[::7f00:1]", "is an IPv4-compatible form of 127.0.0.1, which is in 127.0.0.0/8 (loopback)")],
    ["https://198.18.0.1/", refused("198.18.0.1", "is in 198.18.0.0/15 (benchmarking)")],
    ["https://192.0.0.1/", refused("192.0.0.1", "is in 192.0.0.0/24 (IETF protocol assignments)")],
    // WHATWG URL parsing turns these into 127.0.0.1 (the same in Deno), then refused as such
    ["https://2130706433/r", refused("127.0.0.1", "is in 127.0.0.0/8 (loopback)")],
    ["https://0177.0.0.1/r", refused("127.0.0.1", "is in 127.0.0.0/8 (loopback)")],
    ["https://0x7f.1/r", refused("127.0.0.1", "is in 127.0.0.0/8 (loopback)")],
    ["https://127.1/r", refused("127.0.0.1", "is in 127.0.0.0/8 (loopback)")],
    ["https://127.0.0.1./r", refused("127.0.0.1", "is in 127.0.0.0/8 (loopback)")],
    ["https://[::ffff:127.0.0.1]/r", refused("[::ffff:7f00:1]", "is an IPv4-mapped form of 127.0.0.1, which is in 127.0.0.0/8 (loopback)")],
    ["https://[64:ff9b::169.254.169.254]/r", refused("[64:ff9b::a9fe:a9fe]", "is a NAT64 (64:ff9b::/96) form of 169.254.169.254, which is in 169.254.0.0/16 (link-local)")],
    ["https://[2002:a00:1::1]/r", refused("[2002:a00:1::1]", "is a 6to4 form of 10.0.0.1, which is in 10.0.0.0/8 (private)")],
    ["https://LocalHost../r", refused("localhost..", "is a loopback name (localhost)")],
    ["https://%6c%6fcalhost/r", refused("localhost", "is a loopback name (localhost)")],
  ])("refuses %s", (source, message) => {
    let err: unknown;
    try {
      checkSource(source, closed);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(SourceRefused);
    expect((err as SourceRefused).message).toBe(message);
  });

  it("drops trailing dots from the URL git is given, and keeps public hosts", () => {
    expect(checkSource("https://GitHub.com./a/b", closed)).toEqual({ kind: "url", url: "https://github.com/a/b", host: "github.com", port: 443 });
    expect(checkSource("https://140.82.112.3/a/b", closed)).toEqual({ kind: "url", url: "https://140.82.112.3/a/b", host: "140.82.112.3", port: 443 });
    expect(checkSource("https://[2606:4700::1111]:8443/a", closed)).toEqual({ kind: "url", url: "https://[2606:4700::1111]:8443/a", host: "2606:4700::1111", port: 8443 });
  });
});

describe("the worker's lookup", () => {
  const resolver = (addresses: string[] | Error) => {
    const calls: string[] = [];
    const resolve: Resolver = async (host) => {
      calls.push(host);
      if (addresses instanceof Error) throw addresses;
      return addresses;
    };
    return { calls, resolve };
  };

  it("resolves once and pins git to exactly the addresses it checked", async () => {
    const r = resolver(["140.82.112.3", "2606:4700::1111"]);
    expect(await pinAddresses("github.com", 443, closed, r.resolve)).toBe("github.com:443:140.82.112.3,[2606:4700::1111]");
    expect(r.calls).toEqual(["github.com"]);
  });

  it.each([["10.0.0.1"], ["127.0.0.1"], ["::ffff:127.0.0.1"], ["::7f00:1"], ["64:ff9b::a9fe:a9fe"], ["198.18.0.1"], ["fd00::1"]])(
    "refuses a name that resolves to %s, naming no address",
    async (bad) => {
      const r = resolver(["140.82.112.3", bad]);
      const err = await pinAddresses("repo.example.com", 443, closed, r.resolve).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(SourceRefused);
      expect((err as SourceRefused).message).toBe(`source: host repo.example.com resolves to an address that is not public; ${PUBLIC_ONLY}`);
      expect((err as SourceRefused).details).toEqual({ host: "repo.example.com", address: bad, why: addressRefusal(bad) });
    },
  );

  it("says only 'could not fetch' when DNS fails; what DNS said is in the details for the log", async () => {
    const dns = Object.assign(new Error("getaddrinfo ENOTFOUND repo.example.com"), { code: "ENOTFOUND" });
    const err = await pinAddresses("repo.example.com", 443, closed, resolver(dns).resolve).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(CloneFailed);
    expect((err as CloneFailed).message).toBe(COULD_NOT_FETCH);
    expect((err as CloneFailed).details).toEqual({ host: "repo.example.com", resolve: "getaddrinfo ENOTFOUND repo.example.com" });
    expect(COULD_NOT_FETCH).not.toMatch(/ENOTFOUND|ECONN|refused|reset|timed? ?out|port|resolve/i);
    const none = await pinAddresses("repo.example.com", 443, closed, resolver([]).resolve).catch((e: unknown) => e);
    expect((none as CloneFailed).message).toBe(COULD_NOT_FETCH);
  });

  it("pins private addresses too where the operator allows private hosts", async () => {
    expect(await pinAddresses("git.corp.example", 8080, open, resolver(["10.0.0.5"]).resolve)).toBe("git.corp.example:8080:10.0.0.5");
  });
});
