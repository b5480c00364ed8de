// No network: the stack's own Postgres and functions ports on 127.0.0.1, a listener on all host
// interfaces, the outside world and DNS are all unreachable, with every tool a task might use.
import { createServer, type AddressInfo, type Server } from "node:net";
import { networkInterfaces } from "node:os";
import { readFileSync } from "node:fs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { stack } from "../helpers/env.ts";
import { py, securitySuite } from "./helpers.ts";

const s = securitySuite("net");
const dbPort = Number(new URL(stack.dbUrl).port);
const apiPort = Number(new URL(stack.apiUrl).port);
/** A non-loopback address of this host (reaching it would mean the host's network is shared). */
const hostIp =
  Object.values(networkInterfaces())
    .flat()
    .find((a) => a && a.family === "IPv4" && !a.internal)?.address ?? "192.0.2.1";

let server: Server;
let port = 0;
let accepted = 0;
beforeAll(async () => {
  server = createServer((c) => {
    accepted++;
    c.end();
  });
  await new Promise<void>((resolve) => server.listen(0, "0.0.0.0", resolve));
  port = (server.address() as AddressInfo).port;
});
afterAll(() => new Promise<void>((resolve) => server.close(() => resolve())));

const PROBE = py(
  "probe.py",
  `
import errno, socket, sys
for host, port in [(h, int(p)) for h, p in (a.rsplit(":", 1) for a in sys.argv[1:])]:
    fam = socket.AF_INET6 if ":" in host else socket.AF_INET
    s = socket.socket(fam, socket.SOCK_STREAM)
    s.settimeout(3)
    try:
        s.connect((host, port))
        print(f"tcp {host}:{port} CONNECTED")
    except OSError as e:
        print(f"tcp {host}:{port} {errno.errorcode.get(e.errno, e)}")
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
try:
    u.sendto(b"x", ("8.8.8.8", 53))
    print("udp SENT")
except OSError as e:
    print("udp", errno.errorcode.get(e.errno, e))
try:
    socket.getaddrinfo("example.com", 443)
    print("dns RESOLVED")
except socket.gaierror as e:
    print("dns", e.args[1])
`,
);

describe("network", () => {
  it("python3: the stack's ports, a host listener, the internet and UDP are unreachable; DNS fails", async () => {
    const targets = [`127.0.0.1:${dbPort}`, `127.0.0.1:${apiPort}`, `127.0.0.1:${port}`, `::1:${dbPort}`, `${hostIp}:${port}`, `${hostIp}:${dbPort}`, "1.1.1.1:443"];
    const r = await s.run({ command: `python3 probe.py ${targets.join(" ")}`, files: [PROBE], timeoutMs: 15_000 });
    expect(r).toMatchObject({ status: "succeeded", stderr: "" });
    expect(r.stdout).toBe(
      [
        `tcp 127.0.0.1:${dbPort} ECONNREFUSED`,
        `tcp 127.0.0.1:${apiPort} ECONNREFUSED`,
        `tcp 127.0.0.1:${port} ECONNREFUSED`,
        `tcp ::1:${dbPort} ECONNREFUSED`,
        `tcp ${hostIp}:${port} ENETUNREACH`,
        `tcp ${hostIp}:${dbPort} ENETUNREACH`,
        "tcp 1.1.1.1:443 ENETUNREACH",
        "udp ENETUNREACH",
        "dns Temporary failure in name resolution",
        "",
      ].join("\n"),
    );
    expect(accepted).toBe(0);
    await s.expectHealthy();
  });

  it("a task asking for network on a worker without --allow-network gets none either", async () => {
    const r = await s.run({ command: `python3 probe.py 127.0.0.1:${port} 1.1.1.1:443`, files: [PROBE], network: true, timeoutMs: 15_000 });
    expect(r).toMatchObject({ status: "succeeded", stderr: "" });
    expect(r.task.network).toBe(true);
    expect(r.stdout).toBe([`tcp 127.0.0.1:${port} ECONNREFUSED`, "tcp 1.1.1.1:443 ENETUNREACH", "udp ENETUNREACH", "dns Temporary failure in name resolution", ""].join("\n"));
    expect(accepted).toBe(0);
  });

  it("bash /dev/tcp, node and curl: the same", async () => {
    const node = `const net = require('net');
      for (const [h, p] of [['127.0.0.1', ${dbPort}], ['${hostIp}', ${port}]])
        net.connect(p, h).on('connect', () => console.log('node', h, 'CONNECTED')).on('error', (e) => console.log('node', h, e.code));
      require('dns').lookup('example.com', (e) => console.log('node dns', e ? e.code : 'RESOLVED'));`;
    const r = await s.run({
      files: [{ path: "probe.js", content: node }],
      argv: [
        "bash",
        "-c",
        [
          `(echo > /dev/tcp/127.0.0.1/${dbPort}) 2>/dev/null; echo "bash db=$?"`,
          `(echo > /dev/tcp/127.0.0.1/${apiPort}) 2>/dev/null; echo "bash api=$?"`,
          `(echo > /dev/tcp/${hostIp}/${port}) 2>&1 | grep -o 'Network is unreachable' | head -1`,
          `curl -sS -m 3 http://127.0.0.1:${apiPort}/functions/v1/sandbox/health 2>&1 | sed 's/ after .*//'`,
          `curl -sS -m 3 https://example.com/ 2>&1`,
          `getent hosts example.com; echo "getent=$?"`,
          "node probe.js | sort",
        ].join("\n"),
      ],
      timeoutMs: 15_000,
    });
    expect(r).toMatchObject({ status: "succeeded", stderr: "" });
    expect(r.stdout).toBe(
      [
        "bash db=1",
        "bash api=1",
        "Network is unreachable",
        `curl: (7) Failed to connect to 127.0.0.1 port ${apiPort}`,
        "curl: (6) Could not resolve host: example.com",
        "getent=2",
        `node 127.0.0.1 ECONNREFUSED`,
        `node ${hostIp} ENETUNREACH`,
        "node dns EAI_AGAIN",
        "",
      ].join("\n"),
    );
    expect(accepted).toBe(0);
    await s.expectHealthy();
  });

  it("sees only its own loopback: no host listeners, no host unix sockets, no resolver config", async () => {
    const hex = (p: number) => p.toString(16).toUpperCase().padStart(4, "0");
    // Control: the host's own tables do list the stack's listening ports.
    const hostTcp = readFileSync("/proc/net/tcp", "utf8") + readFileSync("/proc/net/tcp6", "utf8");
    expect(hostTcp).toContain(`:${hex(dbPort)} `);
    expect(readFileSync("/proc/net/unix", "utf8").split("\n").length).toBeGreaterThan(2);
    const r = await s.run({
      command:
        "cat /proc/net/tcp /proc/net/tcp6 | awk '$4 == \"0A\"' | wc -l; tail -n +2 /proc/net/unix | wc -l; tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d ' '; test -e /etc/resolv.conf || echo no-resolv-conf",
    });
    expect(r).toMatchObject({ status: "succeeded", stdout: "0\n0\nlo\nno-resolv-conf\n", stderr: "" });
    await s.expectHealthy();
  });
});
