// Network granted: a worker started with --allow-network gives a task that asks for network the
// host's network (host loopback included) and DNS; a task that does not ask still gets none.
import { lookup } from "node:dns/promises";
import { createServer, type AddressInfo, type Server } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { py, securitySuite } from "./helpers.ts";

const s = securitySuite("netok", { allowNetwork: true });

/** Names tried, in order, for one the host itself resolves (the sandbox then must too). */
const DNS_CANDIDATES = ["registry.npmjs.org", "deb.debian.org", "github.com", "example.com"];

let server: Server;
let port = 0;
let accepted = 0;
let resolvable: string | undefined;
beforeAll(async () => {
  server = createServer((c) => {
    accepted++;
    c.end("hello from the host\n");
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  port = (server.address() as AddressInfo).port;
  for (const name of DNS_CANDIDATES) {
    if (
      await lookup(name).then(
        () => true,
        () => false,
      )
    ) {
      resolvable = name;
      break;
    }
  }
});
afterAll(() => new Promise<void>((resolve) => server.close(() => resolve())));

const PROBE = py(
  "probe.py",
  `
import errno, socket, sys
port, name = int(sys.argv[1]), sys.argv[2]
s = socket.socket()
s.settimeout(5)
try:
    s.connect(("127.0.0.1", port))
    print("tcp", s.recv(100).decode().strip())
except OSError as e:
    print("tcp", errno.errorcode.get(e.errno, e))
try:
    print("dns", "RESOLVED" if socket.getaddrinfo(name, 443) else "EMPTY")
except socket.gaierror as e:
    print("dns", e.args[1])
`,
);

describe("network when asked and allowed", () => {
  it("a task with network: true reaches a host listener and resolves names", async () => {
    expect(resolvable, `the host resolves none of ${DNS_CANDIDATES.join(", ")}: this test needs working DNS on the machine`).toBeDefined();
    const r = await s.run({ command: `python3 probe.py ${port} ${resolvable}`, files: [PROBE], network: true, timeoutMs: 20_000 });
    expect(r).toMatchObject({ status: "succeeded", stderr: "" });
    expect(r.stdout).toBe("tcp hello from the host\ndns RESOLVED\n");
    expect(accepted).toBe(1);
    await s.expectHealthy();
  });

  it("a task that does not ask gets no network on the same worker", async () => {
    const before = accepted;
    const r = await s.run({ command: `python3 probe.py ${port} ${resolvable ?? "example.com"}`, files: [PROBE], timeoutMs: 20_000 });
    expect(r).toMatchObject({ status: "succeeded", stderr: "" });
    expect(r.stdout).toBe("tcp ECONNREFUSED\ndns Temporary failure in name resolution\n");
    expect(accepted).toBe(before);
  });
});
