// Persistent sandboxes (issue 19, docs/design/persistent-sandboxes.md §5), measured from the SDK
// over real Realtime with user tokens, so what a client meets is what is measured:
//   1. create → ready: POST /sandboxes answers once the worker has the sandbox running;
//   2. command → first stdout byte of `echo` in a ready sandbox, against POST /execute of the same
//      `echo` (a fresh sandbox each), interleaved, ROUNDS rounds, with where the time goes (from the
//      rows' own timestamps: request → row, row → claim, claim → first output row, → callback);
//   3. a 1 MiB file written then read back through the SDK (`sbx.files.write`, `sbx.files.read`),
//      FILE_ROUNDS times, the bytes checked;
//   4. IDLE sandboxes held by one worker process for IDLE_SECONDS: the worker's, the launcher's and
//      the sandboxes' RSS and CPU, and a command's latency among them.
// Nothing here tunes anything; the launcher's costs are in worker/sandbox/README.md.
import { spawn } from "node:child_process";
import { randomUUID } from "node:crypto";
import { readdir, readFile } from "node:fs/promises";
import { loadavg } from "node:os";
import path from "node:path";
import { createClient } from "@supabase/supabase-js";
import type { Sql } from "postgres";
import WebSocket from "ws";
import { mintUserToken } from "../embedded/keys.ts";
import { PROJECT_ROOT, type Stack } from "../embedded/stack.ts";
import { createSandboxClient, type LiveSandbox, type SandboxClient } from "../sdk/index.ts";
import { Worker } from "../worker/worker.ts";
import { ms, percentile, type Row } from "./stats.ts";

const ROUNDS = 3;
/** Creates per round (each then killed). */
const CREATES = 10;
/** Commands and executes per round, alternating. */
const COMMANDS = 20;
/** Write + read round trips of FILE_BYTES. */
const FILE_ROUNDS = 10;
const FILE_BYTES = 1024 * 1024;
/** Idle sandboxes on one worker: 13 tenants × cogo.max_live_sandboxes() (8), the last with 4. */
const IDLE = 100;
const IDLE_SECONDS = 20;
/**
 * Each idle sandbox's memory limit. Host admission charges a sandbox its limit for its whole life:
 * at the default 1 GiB, a 24 GiB host's budget (about 15.6 GiB) holds 15 sandboxes; at 64 MiB, 100
 * take 6.25 GiB of it.
 */
const IDLE_MEMORY_BYTES = 64 * 1024 * 1024;
const COMMAND = "echo hi";
const WORKSPACES = "/var/tmp/cogo-bench-ws";

const load = () =>
  loadavg()
    .map((l) => l.toFixed(2))
    .join(" ");

async function user(stack: Stack): Promise<{ id: string; sandbox: SandboxClient; close: () => Promise<void> }> {
  const id = randomUUID();
  const token = await mintUserToken(stack.keys.jwtSecret, id);
  const supabase = createClient(stack.apiUrl, stack.keys.anonKey, { accessToken: async () => token, realtime: { transport: WebSocket as never } });
  await supabase.realtime.setAuth();
  return {
    id,
    sandbox: createSandboxClient(supabase),
    close: async () => {
      await supabase.removeAllChannels();
      supabase.realtime.disconnect();
    },
  };
}

/** ms from just before the request to the first stdout callback, and the task's id. */
async function firstByte(
  start: (onStdout: (d: string) => void) => Promise<{ taskId: string; result: () => Promise<{ status: string }> }>,
): Promise<{ ms: number; at: number; taskId: string }> {
  const t0 = performance.now();
  let first = 0;
  let firstAt = 0;
  const handle = await start(() => {
    if (!first) {
      first = performance.now();
      firstAt = Date.now();
    }
  });
  const r = await handle.result();
  if (r.status !== "succeeded" || !first) throw new Error(`sandboxes bench: task ${handle.taskId} ${r.status}, first byte seen: ${!!first}`);
  return { ms: first - t0, at: firstAt, taskId: handle.taskId };
}

/**
 * Where the time of each task went, from its rows' timestamps (one clock: the same machine): the
 * API's insert, the worker's claim, the first output row (process started or entered, `echo` ran,
 * the batch written; start_task runs meanwhile, its own phase printed apart), the client's
 * callback. Medians of each phase.
 */
async function breakdown(sql: Sql, samples: { taskId: string; at: number; ms: number }[]): Promise<string> {
  const rows = await sql<{ id: string; created: number; claimed: number; started: number; firstRow: number }[]>`
    select t.id, extract(epoch from t.created_at) * 1000 as created, extract(epoch from t.claimed_at) * 1000 as claimed,
           extract(epoch from t.started_at) * 1000 as started,
           (select extract(epoch from o.created_at) * 1000 from public.task_output o where o.task_id = t.id order by o.seq limit 1) as first_row
      from public.tasks t where t.id = any(${samples.map((s) => s.taskId)})`;
  const byId = new Map(rows.map((r) => [r.id, r]));
  const phase = { request: [] as number[], claim: [] as number[], start: [] as number[], run: [] as number[], deliver: [] as number[] };
  for (const s of samples) {
    const r = byId.get(s.taskId)!;
    const sent = s.at - s.ms;
    phase.request.push(Number(r.created) - sent);
    phase.claim.push(Number(r.claimed) - Number(r.created));
    phase.start.push(Number(r.started) - Number(r.claimed));
    phase.run.push(Number(r.firstRow) - Number(r.claimed));
    phase.deliver.push(s.at - Number(r.firstRow));
  }
  const p50 = (xs: number[]) => percentile(xs, 50).toFixed(1);
  return `request → row ${p50(phase.request)}, → claimed ${p50(phase.claim)}, → first output row ${p50(phase.run)} (start_task meanwhile: ${p50(phase.start)}), → callback ${p50(phase.deliver)} ms`;
}

/** RSS (bytes) and CPU time (s) of each process in `pid`'s tree, with its name. */
async function tree(pid: number): Promise<{ pid: number; comm: string; rss: number; cpuS: number }[]> {
  const all: { pid: number; ppid: number; comm: string; rss: number; cpuS: number }[] = [];
  for (const name of await readdir("/proc")) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const stat = await readFile(`/proc/${name}/stat`, "utf8");
      const comm = stat.slice(stat.indexOf("(") + 1, stat.lastIndexOf(")"));
      const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
      const status = await readFile(`/proc/${name}/status`, "utf8");
      all.push({ pid: Number(name), ppid: Number(f[1]), comm, rss: Number(/VmRSS:\s+(\d+) kB/.exec(status)?.[1] ?? 0) * 1024, cpuS: (Number(f[11]) + Number(f[12])) / 100 });
    } catch {
      // gone meanwhile
    }
  }
  const mine = new Set([pid]);
  for (let grew = true; grew; ) {
    grew = false;
    for (const p of all) if (!mine.has(p.pid) && mine.has(p.ppid)) grew = mine.add(p.pid).size > 0;
  }
  // Proportional set size: a page shared by n processes (the launcher's forks share python's)
  // counts 1/n to each, so the sums are what the processes hold, not n copies of the shared part.
  const out = all.filter((p) => mine.has(p.pid));
  for (const p of out) {
    const rollup = await readFile(`/proc/${p.pid}/smaps_rollup`, "utf8").catch(() => "");
    const pss = /^Pss:\s+(\d+) kB/m.exec(rollup)?.[1];
    if (pss !== undefined) p.rss = Number(pss) * 1024;
  }
  return out;
}

/**
 * Worker (node), launcher (python3), each sandbox's prepared spare and its waiting process (both
 * renamed `cogo-next-command`, launcher.py name_process) and sandbox processes (everything else).
 */
function classify(procs: Awaited<ReturnType<typeof tree>>, workerPid: number) {
  const sum = (f: (p: (typeof procs)[number]) => boolean) => {
    const ps = procs.filter(f);
    return { n: ps.length, rss: ps.reduce((a, p) => a + p.rss, 0), cpuS: ps.reduce((a, p) => a + p.cpuS, 0) };
  };
  return {
    worker: sum((p) => p.pid === workerPid),
    launcher: sum((p) => p.pid !== workerPid && p.comm.startsWith("python")),
    spares: sum((p) => p.comm.startsWith("cogo-next")),
    sandboxes: sum((p) => p.pid !== workerPid && !p.comm.startsWith("python") && !p.comm.startsWith("cogo-next")),
  };
}

async function latencies(stack: Stack, sql: Sql, progress: (s: string) => void): Promise<Row[]> {
  const kind = "bench-sandboxes";
  const worker = new Worker({ databaseUrl: stack.dbUrl, kind, concurrency: 4, workspaceRoot: WORKSPACES, log: () => {} });
  await worker.start();
  const u = await user(stack);
  const create: number[] = [];
  const command: Awaited<ReturnType<typeof firstByte>>[] = [];
  const execute: Awaited<ReturnType<typeof firstByte>>[] = [];
  const loads: string[] = [];
  try {
    // Warm-up: the first sandbox and task pay for the launcher and the workspace pool.
    await (await u.sandbox.sandboxes.create({ requirements: { kind } })).kill();
    await (await u.sandbox.execute({ command: COMMAND, requirements: { kind } })).result();
    for (let round = 1; round <= ROUNDS; round++) {
      loads.push(load());
      progress(`sandboxes: round ${round} of ${ROUNDS}: ${CREATES} creates, ${COMMANDS} commands and executes, interleaved (load ${load()})…`);
      for (let i = 0; i < CREATES; i++) {
        const t0 = performance.now();
        const sbx = await u.sandbox.sandboxes.create({ requirements: { kind } });
        create.push(performance.now() - t0);
        if (sbx.info.status !== "ready") throw new Error(`sandboxes bench: created ${sbx.sandboxId} ${sbx.info.status}`);
        await sbx.kill();
      }
      const sbx = await u.sandbox.sandboxes.create({ requirements: { kind } });
      for (let i = 0; i < COMMANDS; i++) {
        command.push(await firstByte((onStdout) => sbx.commands.start(COMMAND, { onStdout }, false)));
        execute.push(await firstByte((onStdout) => u.sandbox.execute({ command: COMMAND, requirements: { kind } }, { onStdout })));
      }
      await sbx.kill();
    }
    loads.push(load());
    progress(`sandboxes: ${FILE_ROUNDS} write + read round trips of ${FILE_BYTES / 1024} KiB (load ${load()})…`);
    const file = await fileRoundTrips(u.sandbox, kind);
    const p = (xs: number[]) => `${ms(percentile(xs, 50))} / ${ms(percentile(xs, 99))}`;
    const cmd = command.map((c) => c.ms);
    const exe = execute.map((c) => c.ms);
    return [
      { metric: "load average (1/5/15 min) at each round", value: loads.join("; ") },
      { metric: `create → ready p50 / p99 (${create.length}, POST /sandboxes → 201)`, value: p(create), target: "p50 < 50 ms", ok: percentile(create, 50) < 50 },
      { metric: `command → first stdout byte p50 / p99 (${cmd.length}, ready sandbox)`, value: p(cmd), target: "p50 < 15 ms", ok: percentile(cmd, 50) < 15 },
      { metric: `POST /execute → first stdout byte p50 / p99 (${exe.length}, fresh sandbox)`, value: p(exe) },
      {
        metric: `file write + read of 1 MiB p50 / p99 (${file.trip.length}, sbx.files, bytes checked)`,
        value: `${p(file.trip)} (write ${ms(percentile(file.write, 50))}, read ${ms(percentile(file.read, 50))} p50)`,
      },
      { metric: "command vs execute, p50", value: `${(percentile(cmd, 50) / percentile(exe, 50)).toFixed(2)}×` },
      { metric: "command: where the time goes (p50 each)", value: await breakdown(sql, command) },
      { metric: "execute: where the time goes (p50 each)", value: await breakdown(sql, execute) },
    ];
  } finally {
    await u.close();
    await worker.stop(0);
  }
}

/** FILE_ROUNDS times: FILE_BYTES of random bytes written, read back and compared (after a warm-up). */
async function fileRoundTrips(client: SandboxClient, kind: string): Promise<{ write: number[]; read: number[]; trip: number[] }> {
  const sbx = await client.sandboxes.create({ requirements: { kind } });
  const out = { write: [] as number[], read: [] as number[], trip: [] as number[] };
  try {
    for (let i = 0; i <= FILE_ROUNDS; i++) {
      const data = new Uint8Array(FILE_BYTES);
      for (let o = 0; o < FILE_BYTES; o += 65536) crypto.getRandomValues(data.subarray(o, o + 65536));
      const t0 = performance.now();
      await sbx.files.write(`bench/f${i}.bin`, data);
      const t1 = performance.now();
      const back = await sbx.files.read(`bench/f${i}.bin`);
      const t2 = performance.now();
      if (!Buffer.from(back).equals(data)) throw new Error(`sandboxes bench: ${FILE_BYTES} bytes written, ${back.length} read back, not the same`);
      if (i === 0) continue; // warm-up
      out.write.push(t1 - t0);
      out.read.push(t2 - t1);
      out.trip.push(t2 - t0);
    }
  } finally {
    await sbx.kill();
  }
  return out;
}

/** IDLE sandboxes on one worker process (13 tenants, each at its live-sandbox limit). */
async function idle(stack: Stack, sql: Sql, progress: (s: string) => void): Promise<Row[]> {
  const kind = "bench-sandboxes-idle";
  const [limit] = await sql<{ n: number }[]>`select cogo.max_live_sandboxes() as n`;
  const perTenant = limit!.n;
  const child = spawn(process.execPath, ["--import", "tsx", path.join(PROJECT_ROOT, "worker", "main.ts"), "--kind", kind, "--concurrency", String(IDLE)], {
    env: { ...process.env, SUPABASE_DB_URL: stack.dbUrl, COGO_WORKSPACE_ROOT: WORKSPACES },
    stdio: ["ignore", "ignore", "pipe"],
  });
  let log = "";
  child.stderr!.on("data", (d: Buffer) => (log += d));
  const exited = new Promise<void>((r) => child.once("exit", () => r()));
  const users: Awaited<ReturnType<typeof user>>[] = [];
  try {
    for (const deadline = Date.now() + 60_000; !/online/.test(log); await new Promise((r) => setTimeout(r, 50))) {
      if (Date.now() > deadline || child.exitCode !== null) throw new Error(`worker did not come online: ${log.slice(-2000)}`);
    }
    const before = classify(await tree(child.pid!), child.pid!);
    progress(`sandboxes: ${IDLE} idle sandboxes on one worker (${Math.ceil(IDLE / perTenant)} tenants × ${perTenant})…`);
    const held: LiveSandbox[] = [];
    const t0 = performance.now();
    while (held.length < IDLE) {
      const u = await user(stack);
      users.push(u);
      await sql`select cogo.set_tenant_limits(${u.id}, ${sql.json({ maxRunning: IDLE })})`;
      for (let i = 0; i < perTenant && held.length < IDLE; i++)
        held.push(await u.sandbox.sandboxes.create({ requirements: { kind }, limits: { memoryBytes: IDLE_MEMORY_BYTES }, idleTimeoutMs: 600_000 }));
    }
    const createdS = (performance.now() - t0) / 1000;
    const ready = held.filter((s) => s.info.status === "ready").length;
    // Why any is not ready (its status and reason), and what the worker said.
    const notReady = [...new Set(held.filter((s) => s.info.status !== "ready").map((s) => `${s.info.status}: ${s.info.reason ?? "no reason"}`))];
    if (notReady.length) progress(`sandboxes: not ready: ${notReady.join("; ")}\nworker log (tail):\n${log.slice(-3000)}`);
    await new Promise((r) => setTimeout(r, 1000));
    const start = classify(await tree(child.pid!), child.pid!);
    const loadStart = load();
    await new Promise((r) => setTimeout(r, IDLE_SECONDS * 1000));
    const end = classify(await tree(child.pid!), child.pid!);
    const cpu = (k: keyof typeof end) => `${(((end[k].cpuS - start[k].cpuS) / IDLE_SECONDS) * 100).toFixed(1)} %`;
    // A command in one of them, with the others idle beside it.
    const among: number[] = [];
    for (let i = 0; i < 20; i++) among.push((await firstByte((onStdout) => held[i % held.length]!.commands.start(COMMAND, { onStdout }, false))).ms);
    for (const s of held) await s.kill();
    const mib = (b: number) => `${(b / 1024 / 1024).toFixed(0)} MiB`;
    return [
      {
        metric: `${IDLE} idle sandboxes (memory limit ${mib(IDLE_MEMORY_BYTES)} each): created in`,
        value: `${createdS.toFixed(1)} s (${ready} ready${notReady.length ? `; others ${notReady.join("; ")}` : ""})`,
        target: `${IDLE} ready`,
        ok: ready === IDLE,
      },
      { metric: "worker (node) PSS before → with them", value: `${mib(before.worker.rss)} → ${mib(end.worker.rss)}` },
      { metric: "launcher (python, with its command helpers) PSS with them", value: `${mib(end.launcher.rss)} (${end.launcher.n} process${end.launcher.n === 1 ? "" : "es"})` },
      {
        metric: "prepared spares and their waiting processes PSS with them",
        value: `${mib(end.spares.rss)} (${end.spares.n} processes, ${(end.spares.rss / IDLE / 1024 / 1024).toFixed(1)} MiB a sandbox)`,
      },
      {
        metric: "sandbox processes PSS with them",
        value: `${mib(end.sandboxes.rss)} (${end.sandboxes.n} processes, ${(end.sandboxes.rss / IDLE / 1024 / 1024).toFixed(1)} MiB a sandbox)`,
      },
      {
        metric: `CPU over ${IDLE_SECONDS} s idle: worker / launcher / spares / sandboxes (load ${loadStart})`,
        value: `${cpu("worker")} / ${cpu("launcher")} / ${cpu("spares")} / ${cpu("sandboxes")} of a core`,
      },
      { metric: `command → first stdout byte among ${IDLE} p50 / p99 (${among.length})`, value: `${ms(percentile(among, 50))} / ${ms(percentile(among, 99))}` },
    ];
  } finally {
    for (const u of users) await u.close();
    child.kill("SIGTERM");
    const t = setTimeout(() => child.kill("SIGKILL"), 15_000);
    await exited;
    clearTimeout(t);
  }
}

export async function benchSandboxes(stack: Stack, sql: Sql, progress: (s: string) => void): Promise<Row[]> {
  if (process.geteuid?.() !== 0) throw new Error("sandboxes bench: persistent sandboxes need root (cgroups and per-slot uids)");
  return [...(await latencies(stack, sql, progress)), ...(await idle(stack, sql, progress))];
}
