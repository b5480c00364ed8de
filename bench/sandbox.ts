// Sandbox figures: start overhead of `true` in bwrap vs a plain spawn (and bwrap alone, to tell
// bwrap's own cost on this machine from ours), and 10, 50 and 200 concurrent sandboxed
// `sleep 5` tasks through one worker process, with that process's RSS and CPU.
import { spawn } from "node:child_process";
import { chmod, mkdtemp, readFile, rm } from "node:fs/promises";
import path from "node:path";
import type { Sql } from "postgres";
import { envCgroups } from "../worker/config.ts";
import { drainWorkspacePool, SANDBOX_DEFAULTS, sandboxFacts, startSandbox } from "../worker/sandbox/index.ts";
import { bwrapCommand, bwrapInfo } from "../worker/sandbox/bwrap.ts";
import { seccompFilter } from "../worker/sandbox/launcher.ts";
import { PROJECT_ROOT, type Stack } from "../embedded/stack.ts";
import { ms, percentile, type Row } from "./stats.ts";

const RUNS = 50;

/** Spawns `file`; `fds` are written to pipes at those descriptors (as the launcher's memory files). */
function timedSpawn(file: string, args: string[] = [], ids: { uid?: number; gid?: number } = {}, fds = new Map<number, Buffer>()): Promise<number> {
  const t0 = performance.now();
  const top = Math.max(2, ...fds.keys());
  const stdio = Array.from({ length: top + 1 }, (_, fd) => (fds.has(fd) ? "pipe" : "ignore")) as ("pipe" | "ignore")[];
  return new Promise((resolve, reject) => {
    const child = spawn(file, args, { stdio, env: { PATH: "/usr/bin:/bin" }, ...ids })
      .on("error", reject)
      .on("exit", (code) => (code === 0 ? resolve(performance.now() - t0) : reject(new Error(`${file} exited ${code}`))));
    for (const [fd, data] of fds) (child.stdio[fd] as NodeJS.WritableStream).end(data);
  });
}

/** bwrap with a task's arguments, spawned directly (no launcher, slot, cgroup or pooled workspace). */
async function bareBwrap(root: string): Promise<() => Promise<number>> {
  const workspace = await mkdtemp(path.join(root, "bare-"));
  await chmod(workspace, 0o777);
  const cmd = await bwrapCommand({ workspace, hostname: "sandbox", network: false, tmpBytes: 1 << 30, env: {}, argv: ["true"], statusFd: 3 });
  const noStatus = cmd.args.filter((a, i) => a !== "--json-status-fd" && cmd.args[i - 1] !== "--json-status-fd");
  // The same descriptors the launcher prepares: the arguments (less the status fd), /etc files, seccomp programs.
  const { programs } = await seccompFilter();
  const argsFd = Number(cmd.argv[cmd.argv.indexOf("--args") + 1]);
  const fds = new Map<number, Buffer>([
    ...cmd.fds.map((f): [number, Buffer] => [f.fd, Buffer.from(f.fd === argsFd ? noStatus.map((a) => `${a}\0`).join("") : f.data)]),
    ...cmd.filterFds.map((fd, i): [number, Buffer] => [fd, Buffer.from(programs[i]!, "base64")]),
  ]);
  // As root, bwrap runs as an unprivileged uid just below the slot range, as sandboxes do.
  const ids = process.geteuid?.() === 0 ? { uid: SANDBOX_DEFAULTS.uid - 1, gid: SANDBOX_DEFAULTS.uid - 1 } : {};
  const { path: bwrap } = await bwrapInfo();
  return () => timedSpawn(bwrap, cmd.argv, ids, fds);
}

async function sandboxTrue(root: string): Promise<{ running: number; exited: number; total: number }> {
  const t0 = performance.now();
  // Pooled and with COGO_CGROUPS, as workers run.
  const p = await startSandbox({ command: ["true"] }, { root, workspacePool: 1, cgroups: envCgroups() });
  const t1 = performance.now();
  p.stdout.resume();
  p.stderr.resume();
  const exit = await p.exited;
  const t2 = performance.now();
  await p.cleanup();
  if (exit.exitCode !== 0) throw new Error(`sandboxed true failed: ${JSON.stringify(exit)}`);
  return { running: t1 - t0, exited: t2 - t0, total: performance.now() - t0 };
}

export async function benchSandbox(stack: Stack, sql: Sql, progress: (s: string) => void, concurrency = [10, 50, 200]): Promise<Row[]> {
  const rows: Row[] = [];
  progress(`sandbox start overhead (${RUNS} runs)…`);
  const root = await mkdtemp("/var/tmp/cogo-bench-sandbox-");
  try {
    const plainTrue = () => timedSpawn("/usr/bin/true");
    await sandboxTrue(root); // also makes root traversable for the sandbox uids
    const bwrapTrue = await bareBwrap(root);
    await Promise.all([plainTrue(), bwrapTrue()]);
    const plain: number[] = [];
    const bare: number[] = [];
    const sb = { running: [] as number[], exited: [] as number[], total: [] as number[] };
    // Interleaved, so load from other processes hits both series alike.
    for (let i = 0; i < RUNS; i++) {
      plain.push(await plainTrue());
      bare.push(await bwrapTrue());
      const r = await sandboxTrue(root);
      sb.running.push(r.running);
      sb.exited.push(r.exited);
      sb.total.push(r.total);
    }
    const overhead = percentile(sb.exited, 50) - percentile(plain, 50);
    const facts = await sandboxFacts(envCgroups());
    rows.push({ metric: "cgroups in use (COGO_CGROUPS)", value: facts.cgroupsUsed ?? "none (rlimits)" });
    rows.push({ metric: "plain spawn true p50 / p99", value: `${ms(percentile(plain, 50))} / ${ms(percentile(plain, 99))}` });
    rows.push({ metric: "bwrap alone true p50 / p99 (same args, direct spawn)", value: `${ms(percentile(bare, 50))} / ${ms(percentile(bare, 99))}` });
    rows.push({ metric: "sandbox true start→exit p50 / p99", value: `${ms(percentile(sb.exited, 50))} / ${ms(percentile(sb.exited, 99))}` });
    rows.push({ metric: "sandbox overhead p50 (vs plain)", value: ms(overhead), target: "< 10 ms", ok: overhead < 10 });
    rows.push({ metric: "sandbox incl. workspace cleanup p50", value: ms(percentile(sb.total, 50)) });
  } finally {
    await drainWorkspacePool(root);
    await rm(root, { recursive: true, force: true });
  }

  for (const n of concurrency) rows.push(...(await concurrentSleeps(stack, sql, n, progress)));
  return rows;
}

/** RSS (bytes) and CPU time (s) of a process, from /proc. */
async function procUsage(pid: number): Promise<{ rss: number; cpuS: number } | undefined> {
  try {
    const status = await readFile(`/proc/${pid}/status`, "utf8");
    const stat = (await readFile(`/proc/${pid}/stat`, "utf8")).split(") ")[1]!.split(" ");
    const ticks = Number(stat[11]) + Number(stat[12]); // utime + stime
    return { rss: Number(/VmRSS:\s+(\d+) kB/.exec(status)?.[1] ?? 0) * 1024, cpuS: ticks / 100 };
  } catch {
    return undefined;
  }
}

/** n `sleep 5` tasks through one worker process with concurrency n; its RSS and CPU from /proc. */
async function concurrentSleeps(stack: Stack, sql: Sql, n: number, progress: (s: string) => void): Promise<Row[]> {
  progress(`${n} concurrent sandboxed 'sleep 5' tasks through one worker process…`);
  const kind = `bench-concurrent-${n}`;
  const child = spawn(process.execPath, ["--import", "tsx", path.join(PROJECT_ROOT, "worker", "main.ts"), "--kind", kind, "--concurrency", String(n)], {
    env: { ...process.env, SUPABASE_DB_URL: stack.dbUrl, COGO_WORKSPACE_ROOT: "/var/tmp/cogo-bench-ws" },
    stdio: ["ignore", "ignore", "pipe"],
  });
  let log = "";
  child.stderr!.on("data", (d: Buffer) => (log += d));
  const exited = new Promise<void>((r) => child.once("exit", () => r()));
  try {
    for (const deadline = Date.now() + 60_000; !/online/.test(log); await new Promise((r) => setTimeout(r, 50))) {
      if (Date.now() > deadline || child.exitCode !== null) throw new Error(`worker did not come online: ${log.slice(-2000)}`);
    }
    const idle = (await procUsage(child.pid!))!;
    const [first] = await sql<{ ids: string[] }[]>`
      select array_agg((cogo.enqueue_task(jsonb_build_object('command', 'sleep 5', 'requirements', jsonb_build_object('kind', ${kind}::text)))).id) as ids
        from generate_series(1, ${n})`;
    const ids = first!.ids;
    const t0 = performance.now();
    let peakRunning = 0;
    let peakRss = idle.rss;
    for (;;) {
      const [r] = await sql<{ running: number; done: number }[]>`
        select count(*) filter (where status = 'running')::int as running, count(*) filter (where finished_at is not null)::int as done
          from public.tasks where id = any(${ids})`;
      peakRunning = Math.max(peakRunning, r!.running);
      peakRss = Math.max(peakRss, (await procUsage(child.pid!))?.rss ?? 0);
      if (r!.done === n) break;
      if (performance.now() - t0 > 120_000) throw new Error(`${n} sleep tasks not done in 120 s`);
      await new Promise((res) => setTimeout(res, 100));
    }
    const secs = (performance.now() - t0) / 1000;
    const cpuS = ((await procUsage(child.pid!))?.cpuS ?? idle.cpuS) - idle.cpuS;
    const [ok] = await sql<{ n: number }[]>`select count(*)::int as n from public.tasks where id = any(${ids}) and status = 'succeeded'`;
    const failures = await sql<{ reason: string; n: number }[]>`
      select reason, count(*)::int as n from public.tasks where id = any(${ids}) and status <> 'succeeded' group by reason`;
    // A sandbox started when its task finished minus the sandbox's own wall time.
    const [spread] = await sql<{ allStartedS: number }[]>`
      select extract(epoch from max(finished_at - make_interval(secs => (usage ->> 'wallMs')::float8 / 1000)) - min(created_at))::float8 as all_started_s
        from public.tasks where id = any(${ids})`;
    const mib = (b: number) => `${(b / 1024 / 1024).toFixed(0)} MiB`;
    return [
      { metric: `${n} × sleep 5: peak running`, value: `${peakRunning} of ${n}`, target: `${n} held`, ok: peakRunning === n && ok!.n === n },
      { metric: `${n} × sleep 5: all done in`, value: `${secs.toFixed(1)} s (${ok!.n} succeeded)` },
      { metric: `${n} × sleep 5: enqueued → last sandbox started`, value: `${spread!.allStartedS.toFixed(1)} s` },
      ...failures.map((f) => ({ metric: `${n} × sleep 5: not succeeded`, value: `${f.n}: ${f.reason}` })),
      { metric: `${n} × sleep 5: worker RSS idle → peak`, value: `${mib(idle.rss)} → ${mib(peakRss)}` },
      { metric: `${n} × sleep 5: worker CPU`, value: `${cpuS.toFixed(1)} s = ${((cpuS / secs) * 100).toFixed(0)} % of a core over ${secs.toFixed(1)} s` },
    ];
  } finally {
    child.kill("SIGTERM");
    const t = setTimeout(() => child.kill("SIGKILL"), 10_000);
    await exited;
    clearTimeout(t);
  }
}
