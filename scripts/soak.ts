// `npm run soak -- --minutes N`: a mixed workload of streaming tasks on a private embedded stack
// with three worker processes, while random faults hit it; every finished task is audited with
// the fault harness's invariants (tests/faults/harness.ts). Exits 1 if any row was lost or
// duplicated, a task ran twice at once, or a sandbox was left behind.
import { randomUUID } from "node:crypto";
import { createWriteStream } from "node:fs";
import { rm } from "node:fs/promises";
import { parseArgs } from "node:util";
import { freePort } from "../embedded/ports.ts";
import { startStack, type StackPart } from "../embedded/stack.ts";
import { connect } from "../functions/_shared/db.ts";
import { auditTask, dropWebSocket, newMark, SandboxWatch, spawnWorker, submitTask, tenant, type Tracked } from "../tests/faults/harness.ts";
import { TcpProxy } from "../tests/faults/tcp-proxy.ts";
import { ignorePostgresClosedSocketWrites } from "../worker/process-guard.ts";

const USAGE = `Usage: npm run soak -- [--minutes N] [--tasks N] [--fault-every-s N]

Starts a private embedded stack (Postgres, functions, Realtime) and three worker processes (one
of them behind a TCP proxy), runs a mixed workload of streaming tasks (most succeed, some exit
non-zero, some are cancelled) and injects a random fault every few seconds: kill -9 or SIGTERM
of a worker, Postgres / Realtime / functions / gateway restart, a dropped client WebSocket,
killed worker database connections, a blackholed worker connection. Every task is checked as it
ends; totals are printed at the end. Exit code 1 if rows were lost or duplicated, a task ran
twice at once, or anything was left running.

Options:
  --minutes N        how long to inject faults and submit work (default 5)
  --tasks N          tasks kept in flight (default 8)
  --fault-every-s N  mean seconds between faults (default 20)
  -h, --help         this text
`;

const { values } = parseArgs({
  options: {
    minutes: { type: "string", default: "5" },
    tasks: { type: "string", default: "8" },
    "fault-every-s": { type: "string", default: "20" },
    help: { type: "boolean", short: "h" },
  },
});
if (values.help) {
  console.log(USAGE);
  process.exit(0);
}
const num = (name: string, v: string, min: number) => {
  const n = Number(v);
  if (!Number.isFinite(n) || n < min) {
    console.error(`--${name} ${v}: expected a number ≥ ${min}\n\n${USAGE}`);
    process.exit(2);
  }
  return n;
};
const minutes = num("minutes", values.minutes, 0.1);
const inFlightTarget = num("tasks", values.tasks, 1);
const faultEveryS = num("fault-every-s", values["fault-every-s"], 1);

const KIND = "soak";
const LEASE_MS = 3000;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const pick = <T>(xs: readonly T[]): T => xs[Math.floor(Math.random() * xs.length)]!;
const between = (a: number, b: number) => a + Math.floor(Math.random() * (b - a + 1));
const t0 = Date.now();
const clock = () => {
  const s = Math.floor((Date.now() - t0) / 1000);
  return `${String(Math.floor(s / 60)).padStart(2, "0")}:${String(s % 60).padStart(2, "0")}`;
};
const dataDir = `/var/tmp/cogo-soak-${process.pid}`;
const logPath = `${dataDir}.log`;
const logFile = createWriteStream(logPath);
const log = (line: string) => logFile.write(`${new Date().toISOString()} ${line}\n`);
ignorePostgresClosedSocketWrites((l) => log(l));
const say = (line: string) => {
  process.stderr.write(`[${clock()}] ${line}\n`);
  log(`soak: ${line}`);
};

say(`starting a private embedded stack in ${dataDir} (its log and the workers': ${logPath})…`);
const stack = await startStack({ dataDir, reset: true, dbPort: await freePort(), apiPort: 0, watch: false, log });
const sql = connect(stack.dbUrl, { max: 2 });
const { proxy, url: proxiedUrl } = await TcpProxy.start(stack.dbUrl);
const watch = new SandboxWatch().start();
const user = await tenant({ apiUrl: stack.apiUrl, dbUrl: stack.dbUrl, anonKey: stack.keys.anonKey, jwtSecret: stack.keys.jwtSecret });

// ── workers: slot 2 reaches the database through the proxy ──────────────────────────────────
type WorkerProc = ReturnType<typeof spawnWorker>;
const workerArgs = ["--concurrency", "4", "--lease-ms", String(LEASE_MS), "--grace-ms", "2000"];
const workers: WorkerProc[] = [];
const spawnSlot = (i: number) => {
  const w = spawnWorker(i === 2 ? proxiedUrl : stack.dbUrl, KIND, [...workerArgs, "--name", `soak-${i}`]);
  w.child.stderr!.on("data", (d: Buffer) => log(`[worker soak-${i}] ${String(d).trimEnd()}`));
  workers[i] = w;
};
for (let i = 0; i < 3; i++) spawnSlot(i);

// ── totals ──────────────────────────────────────────────────────────────────────────────────
const totals = { submitted: 0, audited: 0, succeeded: 0, failed: 0, cancelled: 0, lost: 0, duplicates: 0, doubleRuns: 0, problems: 0, orphans: 0 };
const faults = new Map<string, number>();
const problems: string[] = [];

/** A call that may hit a restart: retried until it works or a minute passes. */
async function retry<T>(what: string, fn: () => Promise<T>): Promise<T> {
  for (let i = 0; ; i++) {
    try {
      return await fn();
    } catch (err) {
      if (i >= 120) throw new Error(`${what}: ${err instanceof Error ? err.message : err}`);
      await sleep(500);
    }
  }
}

type Expected = "succeeded" | "failed" | "cancelled";
const inFlight = new Set<Promise<void>>();

async function oneTask(): Promise<void> {
  const roll = Math.random();
  const expected: Expected = roll < 0.7 ? "succeeded" : roll < 0.85 ? "failed" : "cancelled";
  const mark = newMark();
  const key = randomUUID();
  const lines = expected === "cancelled" ? 2000 : between(20, 150);
  totals.submitted++;
  const task: Tracked = await retry("submit", () =>
    submitTask(user, { kind: KIND, mark, idempotencyKey: key, lines, everyMs: between(10, 60), exitCode: expected === "failed" ? 3 : 0, maxAttempts: 20 }),
  );
  if (expected === "cancelled") {
    await sleep(between(500, 4000));
    await retry("cancel", () => task.handle.cancel());
  }
  await task.result;
  const a = await auditTask(sql, task, watch, expected);
  totals.audited++;
  totals[expected]++;
  totals.lost += a.lost;
  totals.duplicates += a.duplicates;
  if (a.concurrentRuns > 1) totals.doubleRuns++;
  totals.problems += a.problems.length;
  for (const p of a.problems) {
    problems.push(p);
    say(`PROBLEM ${p}`);
  }
}

// ── faults ──────────────────────────────────────────────────────────────────────────────────
const FAULTS = [
  "kill -9 worker",
  "SIGTERM worker",
  "postgres restart",
  "realtime restart",
  "functions restart",
  "gateway restart",
  "client websocket drop",
  "worker db connections killed",
  "worker db connection blackholed",
] as const;

async function inject(fault: (typeof FAULTS)[number]): Promise<void> {
  const restarts: Record<string, StackPart> = { "postgres restart": "postgres", "realtime restart": "realtime", "functions restart": "functions", "gateway restart": "gateway" };
  if (restarts[fault]) return stack.restart(restarts[fault]!);
  if (fault === "kill -9 worker" || fault === "SIGTERM worker") {
    const i = between(0, workers.length - 1);
    const w = workers[i]!;
    w.kill(fault === "kill -9 worker" ? "SIGKILL" : "SIGTERM");
    await w.exited;
    spawnSlot(i);
    return;
  }
  if (fault === "client websocket drop") return dropWebSocket(user.supabase);
  if (fault === "worker db connections killed") {
    await retry("pg_terminate_backend", () => sql`select pg_terminate_backend(pid) from pg_stat_activity where application_name like 'cogo-worker soak-%'`);
    return;
  }
  proxy.blackhole();
  await sleep(LEASE_MS * 2);
  proxy.heal();
}

// ── run ─────────────────────────────────────────────────────────────────────────────────────
const endAt = Date.now() + minutes * 60_000;
let stopping = false;
process.once("SIGINT", () => {
  say("SIGINT: no new work or faults; finishing what runs (Ctrl-C again to abort)");
  stopping = true;
  process.once("SIGINT", () => process.exit(130));
});

const status = () =>
  `tasks ${totals.audited} checked, ${inFlight.size} in flight · faults ${[...faults.values()].reduce((a, b) => a + b, 0)} · lost ${totals.lost} · duplicates ${totals.duplicates} · double runs ${totals.doubleRuns} · problems ${totals.problems}`;
const ticker = setInterval(() => say(status()), 5000);

const faultLoop = (async () => {
  while (!stopping && Date.now() < endAt) {
    await sleep(between(faultEveryS * 500, faultEveryS * 1500));
    if (stopping || Date.now() >= endAt) break;
    const f = pick(FAULTS);
    say(`fault: ${f}`);
    try {
      await inject(f);
      faults.set(f, (faults.get(f) ?? 0) + 1);
    } catch (err) {
      say(`fault ${f} could not be injected: ${err instanceof Error ? err.message : err}`);
    }
  }
})();

while (!stopping && Date.now() < endAt) {
  while (inFlight.size < inFlightTarget) {
    const p: Promise<void> = oneTask()
      .catch((err) => {
        totals.problems++;
        problems.push(String(err));
        say(`PROBLEM ${err instanceof Error ? err.message : err}`);
      })
      .finally(() => inFlight.delete(p));
    inFlight.add(p);
  }
  await sleep(100);
}
stopping = true;
await faultLoop;
say(`no more work or faults; waiting for ${inFlight.size} task(s) in flight…`);
await Promise.race([Promise.all(inFlight), sleep(180_000)]);
clearInterval(ticker);

for (const w of workers) w.kill("SIGTERM");
await Promise.race([Promise.all(workers.map((w) => w.exited)), sleep(15_000)]);
for (const w of workers) w.kill("SIGKILL");
await sleep(500);
totals.orphans = watch.scan().size;
watch.stop();
await user.close();
await sql.end({ timeout: 5 });
await proxy.close();
await stack.stop();
await rm(dataDir, { recursive: true, force: true });

const ok = totals.lost === 0 && totals.duplicates === 0 && totals.doubleRuns === 0 && totals.problems === 0 && totals.orphans === 0 && inFlight.size === 0;
console.log(`
soak: ${minutes} min, ${inFlightTarget} tasks in flight, a fault every ~${faultEveryS} s
  tasks run        ${totals.audited} (${totals.succeeded} succeeded, ${totals.failed} failed as asked, ${totals.cancelled} cancelled as asked)${inFlight.size ? `; ${inFlight.size} never ended` : ""}
  faults injected  ${[...faults.values()].reduce((a, b) => a + b, 0)}${faults.size ? ` (${[...faults].map(([f, n]) => `${f} ×${n}`).join(", ")})` : ""}
  rows lost        ${totals.lost}
  duplicates       ${totals.duplicates}
  double runs      ${totals.doubleRuns}
  left running     ${totals.orphans}
  other problems   ${totals.problems}
${ok ? "OK" : "FAILED:\n  " + problems.slice(0, 20).join("\n  ")}`);
process.exit(ok ? 0 : 1);
