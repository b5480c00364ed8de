// Repository sources through the real stack (HTTP API → Postgres → analysis worker → sandbox):
// every special-purpose address form and private name is refused at submit with a 400 naming it
// and nothing stored; the worker refuses again before connecting (sources that skip the API);
// and what a user reads of a failed fetch is one message, whatever the network said.
import { createServer, type AddressInfo, type Server, type Socket } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { COULD_NOT_FETCH } from "../../worker/analysis/clone.ts";
import { api, newUser, sql, startWorker, waitFor } from "../helpers/env.ts";
import { setPolicy } from "../analysis/helpers.ts";

const PUBLIC_ONLY = "refused: this deployment fetches repositories from public hosts only";
const refused = (host: string, why: string) => `source: host ${host} ${why}; ${PUBLIC_ONLY}`;
const LOOPBACK = "is in 127.0.0.0/8 (loopback)";

const AT_SUBMIT: [source: string, message: string][] = [
  // the reported bypasses
  ["https://localhost./r", refused("localhost.", "is a loopback name (localhost)")],
  ["https://metadata.google.internal./computeMetadata/v1/", refused("metadata.google.internal.", "is a cloud metadata name")],
  ["https://[::127.0.0.1]/r", refused("[::7f00:1]", `is an IPv4-compatible form of 127.0.0.1, which ${LOOPBACK}`)],
  ["https://[::7f00:1]/r", refused("[::7f00:1]", `is an IPv4-compatible form of 127.0.0.1, which ${LOOPBACK}`)],
  ["https://198.18.0.1/r", refused("198.18.0.1", "is in 198.18.0.0/15 (benchmarking)")],
  ["https://192.0.0.1/r", refused("192.0.0.1", "is in 192.0.0.0/24 (IETF protocol assignments)")],
  // names
  ["https://LOCALHOST../r", refused("localhost..", "is a loopback name (localhost)")],
  ["https://api.localhost/r", refused("api.localhost", "is a loopback name (localhost)")],
  ["https://db.internal/r", refused("db.internal", "is a private network name (.internal)")],
  ["https://printer.local./r", refused("printer.local.", "is a private network name (.local)")],
  ["https://intranet/r", refused("intranet", "is not a fully qualified name")],
  // IPv4 spellings (WHATWG URL parsing in the Deno function reads them as 127.0.0.1)
  ["https://2130706433/r", refused("127.0.0.1", LOOPBACK)],
  ["https://0177.0.0.1/r", refused("127.0.0.1", LOOPBACK)],
  ["https://0x7f.1/r", refused("127.0.0.1", LOOPBACK)],
  ["https://127.1/r", refused("127.0.0.1", LOOPBACK)],
  ["https://127.0.0.1./r", refused("127.0.0.1", LOOPBACK)],
  // IPv6 forms carrying an IPv4 address
  ["https://[::ffff:127.0.0.1]/r", refused("[::ffff:7f00:1]", `is an IPv4-mapped form of 127.0.0.1, which ${LOOPBACK}`)],
  ["https://[64:ff9b::169.254.169.254]/r", refused("[64:ff9b::a9fe:a9fe]", "is a NAT64 (64:ff9b::/96) form of 169.254.169.254, which is in 169.254.0.0/16 (link-local)")],
  ["https://[64:ff9b:1::a00:1]/r", refused("[64:ff9b:1::a00:1]", "is in 64:ff9b:1::/48 (local-use NAT64, whose IPv4 mapping only its own network knows)")],
  ["https://[2002:a00:1::1]/r", refused("[2002:a00:1::1]", "is a 6to4 form of 10.0.0.1, which is in 10.0.0.0/8 (private)")],
  [
    "https://[2001:0:4136:e378:8000:63bf:3fff:fdd2]/r",
    refused("[2001:0:4136:e378:8000:63bf:3fff:fdd2]", "is a Teredo form (client) of 192.0.2.45, which is in 192.0.2.0/24 (documentation)"),
  ],
  // the other special-purpose ranges
  ["https://0.0.0.0/r", refused("0.0.0.0", "is in 0.0.0.0/8 (unspecified)")],
  ["https://10.0.0.1/r", refused("10.0.0.1", "is in 10.0.0.0/8 (private)")],
  ["https://172.16.0.1/r", refused("172.16.0.1", "is in 172.16.0.0/12 (private)")],
  ["https://192.168.1.1/r", refused("192.168.1.1", "is in 192.168.0.0/16 (private)")],
  ["https://100.64.0.1/r", refused("100.64.0.1", "is in 100.64.0.0/10 (carrier-grade NAT)")],
  ["https://169.254.169.254/latest/meta-data/", refused("169.254.169.254", "is in 169.254.0.0/16 (link-local)")],
  ["https://192.0.2.1/r", refused("192.0.2.1", "is in 192.0.2.0/24 (documentation)")],
  ["https://198.51.100.1/r", refused("198.51.100.1", "is in 198.51.100.0/24 (documentation)")],
  ["https://203.0.113.1/r", refused("203.0.113.1", "is in 203.0.113.0/24 (documentation)")],
  ["https://224.0.0.1/r", refused("224.0.0.1", "is in 224.0.0.0/4 (multicast)")],
  ["https://240.0.0.1/r", refused("240.0.0.1", "is in 240.0.0.0/4 (reserved for future use)")],
  ["https://255.255.255.255/r", refused("255.255.255.255", "is in 255.255.255.255/32 (broadcast)")],
  ["https://[::]/r", refused("[::]", "is in ::/128 (unspecified)")],
  ["https://[::1]/r", refused("[::1]", "is in ::1/128 (loopback)")],
  ["https://[fe80::1]/r", refused("[fe80::1]", "is in fe80::/10 (link-local)")],
  ["https://[fd00:ec2::254]/r", refused("[fd00:ec2::254]", "is in fc00::/7 (unique local)")],
  ["https://[ff02::1]/r", refused("[ff02::1]", "is in ff00::/8 (multicast)")],
  ["https://[2001:db8::1]/r", refused("[2001:db8::1]", "is in 2001:db8::/32 (documentation)")],
];

/** Rows a user's analysis requests leave: analyses, repositories, tasks. */
async function rowsOf(userId: string): Promise<number> {
  const [r] = await sql<{ n: number }[]>`
    select (select count(*) from public.analyses where owner = ${userId})
         + (select count(*) from public.analysis_repos where owner = ${userId})
         + (select count(*) from public.tasks where owner = ${userId}) as n`;
  return Number(r!.n);
}

/** Starts an analysis in SQL as `userId`, as the API would after its check: the worker's check is all that is left. */
async function startPastTheApi(userId: string, source: string, options: Record<string, unknown> = {}): Promise<string> {
  const [a] = await sql.begin(async (tx) => {
    await tx`select set_config('role', 'authenticated', true), set_config('request.jwt.claims', ${JSON.stringify({ sub: userId, role: "authenticated" })}, true)`;
    return await tx<{ id: string }[]>`select id from cogo.start_analysis(${tx.json({ source, ref: "HEAD", options } as never)})`;
  });
  return a!.id;
}

async function failure(token: string, id: string): Promise<string> {
  return await waitFor(
    async () => {
      const r = await api("GET", `/analysis/${id}/status`, { token });
      if (r.body.phase === "completed") throw new Error(`analysis ${id} completed`);
      return r.body.phase === "failed" ? (r.body.error as string) : undefined;
    },
    `analysis ${id} to fail`,
    60_000,
    100,
  );
}

/** A TCP listener on 127.0.0.1 that counts connections and does `onConnection` with each. */
async function listener(onConnection: (c: Socket) => void): Promise<{ server: Server; port: number; accepted: () => number }> {
  let accepted = 0;
  const server = createServer((c) => {
    accepted++;
    c.on("error", () => {});
    onConnection(c);
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return { server, port: (server.address() as AddressInfo).port, accepted: () => accepted };
}

const logs: string[] = [];
const servers: Server[] = [];
beforeAll(async () => {
  await setPolicy([], false);
  await startWorker({ kind: "analysis", concurrency: 2, allowNetwork: true, log: (l) => logs.push(l) });
});
afterAll(async () => {
  await setPolicy([], false);
  for (const s of servers) s.close();
});

describe("repository source addresses", () => {
  it("refuses every special-purpose address form and private name at submit, naming it, and stores nothing", async () => {
    const user = await newUser();
    const wrong: string[] = [];
    for (const [source, message] of AT_SUBMIT) {
      const r = await api("POST", "/analyze/repository", { token: user.token, body: { source } });
      if (r.status !== 400 || r.body.error?.code !== "source_refused" || r.body.error?.message !== message) {
        wrong.push(`${source}: ${r.status} ${JSON.stringify(r.body)}`);
      }
    }
    expect(wrong).toEqual([]);
    expect(await rowsOf(user.id)).toBe(0);

    // The same count sees what an accepted source writes (an analysis, its repository, a task).
    const control = await newUser();
    const ok = await api("POST", "/analyze/repository", { token: control.token, body: { source: "https://repo.example.invalid/r" } });
    expect(ok.status, JSON.stringify(ok.body)).toBe(202);
    expect(await rowsOf(control.id)).toBe(3);
    expect(await failure(control.token, ok.body.analysisId)).toBe(`analysis-clone failed: ${COULD_NOT_FETCH}`);
  });

  it("the worker refuses sources that skipped the API before connecting, and says refused", async () => {
    const target = await listener((c) => c.destroy());
    servers.push(target.server);
    const user = await newUser();
    const cases: [string, string][] = [
      [`https://127.0.0.1:${target.port}/r`, refused("127.0.0.1", LOOPBACK)],
      [`https://[::7f00:1]:${target.port}/r`, refused("[::7f00:1]", `is an IPv4-compatible form of 127.0.0.1, which ${LOOPBACK}`)],
      [`https://[::ffff:127.0.0.1]:${target.port}/r`, refused("[::ffff:7f00:1]", `is an IPv4-mapped form of 127.0.0.1, which ${LOOPBACK}`)],
      [`https://localhost.:${target.port}/r`, refused("localhost.", "is a loopback name (localhost)")],
      [`https://198.18.0.1:${target.port}/r`, refused("198.18.0.1", "is in 198.18.0.0/15 (benchmarking)")],
    ];
    const ids = await Promise.all(cases.map(([source]) => startPastTheApi(user.id, source)));
    for (const [i, [source, message]] of cases.entries()) {
      expect(await failure(user.token, ids[i]!), source).toBe(`analysis-clone failed: ${message}`);
    }
    expect(target.accepted()).toBe(0);
  });

  it("tells a user the same thing for a closed port, a dropped connection, a silent port and no DNS; details only in the worker's log", async () => {
    // Private hosts allowed, so the worker does connect: this is about what the reasons say.
    await setPolicy([], true);
    try {
      const closed = await listener(() => {});
      const closedPort = closed.port;
      await new Promise<void>((resolve) => closed.server.close(() => resolve()));
      const dropping = await listener((c) => c.destroy());
      const silent = await listener(() => {}); // accepts and never answers: the clone times out
      servers.push(dropping.server, silent.server);
      const user = await newUser();
      const sources = [`https://127.0.0.1:${closedPort}/r`, `https://127.0.0.1:${dropping.port}/r`, `https://127.0.0.1:${silent.port}/r`, "https://no-such-host.invalid/r"];
      const ids: string[] = [];
      for (const source of sources) {
        const r = await api("POST", "/analyze/repository", { token: user.token, body: { source, options: { cloneTimeoutMs: 3000 } } });
        expect(r.status, JSON.stringify(r.body)).toBe(202);
        ids.push(r.body.analysisId);
      }
      const reasons = await Promise.all(ids.map((id) => failure(user.token, id)));
      expect(reasons).toEqual(sources.map(() => `analysis-clone failed: ${COULD_NOT_FETCH}`));
      for (const r of reasons) expect(r).not.toMatch(/ECONN|ENOTFOUND|EAI_|refused|reset|timed? ?out|port|resolve|127\.0\.0\.1/i);
      for (const id of ids) {
        const [task] = await sql<{ reason: string }[]>`select t.reason from public.tasks t join public.analyses a on a.clone_task_id = t.id where a.id = ${id}`;
        expect(task!.reason).toBe(COULD_NOT_FETCH);
      }
      expect(dropping.accepted()).toBeGreaterThan(0);
      expect(silent.accepted()).toBeGreaterThan(0);
      // The operator still learns what happened.
      const log = logs.join("\n");
      expect(log).toMatch(new RegExp(`clone_failed: .*127\\.0\\.0\\.1:${closedPort}.*(Connection refused|Failed to connect)`));
      expect(log).toMatch(/source_unreachable: .*no-such-host\.invalid.*(ENOTFOUND|EAI_AGAIN)/);
    } finally {
      await setPolicy([], false);
    }
  });
});
