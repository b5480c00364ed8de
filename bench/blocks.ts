// Block detection and recovery figures over a corpus of blocking programs and a healthy set, on
// the DEFAULT detection settings (no per-task windows, as a user gets them): onset →
// block_detected latency per kind, recovery success rate, block_detected → recovered time, false
// positives, and a worker killed with SIGKILL mid-task. Loops and stalls run a command that
// succeeded before (history present), so their learned windows apply.
import { spawn } from "node:child_process";
import path from "node:path";
import type { Sql } from "postgres";
import { PROJECT_ROOT, type Stack } from "../embedded/stack.ts";
import { BLOCK_DETECTION_DEFAULTS } from "../functions/_shared/recovery/options.ts";
import { commandKey, learnedWindows } from "../worker/blocks/history.ts";
import { Worker } from "../worker/worker.ts";
import { ms, percentile, type Row } from "./stats.ts";

const ROUNDS = Number(process.env.COGO_BENCH_ROUNDS ?? 3);
const MiB = 1024 * 1024;
/** Floods use 4 KB lines: millions of 2-byte lines would measure the worker's per-line diagnostics scan instead. */
const LONG_LINE = "$(head -c 4000 /dev/zero | tr '\\0' y)";
/** Prints the block's onset (ms since the epoch) on stderr, then the program blocks. */
const ONSET = "echo ONSET $(date +%s%3N) >&2";

interface Case {
  name: string;
  spec: Record<string, unknown>;
  reason: string;
  /** The corpus expects the task to end succeeded after recovery. */
  recovers: boolean;
  /** Onset is a limit the sandbox enforces: started_at + this many ms. */
  onsetAfterStartMs?: number;
  /** Run first (round 1) with these fields instead: the same command succeeding, so it has history. */
  prime?: Record<string, unknown>;
}

/** Prints the onset from Python, then the program blocks or not. */
const PY_ONSET = "import sys, time\nprint('ONSET', int(time.time() * 1000), file=sys.stderr, flush=True)\n";
const JS_ONSET = "console.error('ONSET', Date.now());\n";

const DEADLOCK_PY =
  "import threading, time, sys\na, b = threading.Lock(), threading.Lock()\ndef one():\n    with a:\n        time.sleep(0.1)\n        with b: pass\ndef two():\n    with b:\n        time.sleep(0.1)\n        with a: pass\nt = [threading.Thread(target=f) for f in (one, two)]\n[x.start() for x in t]\n[x.join() for x in t]\n";

const CASES: Case[] = [
  {
    name: "python loop (history: 1.5 s silent CPU) + alternative",
    reason: "infinite_loop",
    recovers: true,
    prime: { files: [{ path: "job.py", content: `${PY_ONSET}e = time.time() + 1.5\nwhile time.time() < e: pass\nprint('done')\n` }] },
    spec: { command: "python3 job.py", files: [{ path: "job.py", content: `${PY_ONSET}while True: pass\n` }], recovery: { alternativeCommand: "echo ok" } },
  },
  {
    name: "node loop (history: 1.5 s silent CPU) + alternative",
    reason: "infinite_loop",
    recovers: true,
    prime: { files: [{ path: "job.js", content: `${JS_ONSET}const e = Date.now() + 1500; while (Date.now() < e) {}\nconsole.log('done');\n` }] },
    spec: { command: "node job.js", files: [{ path: "job.js", content: `${JS_ONSET}for (;;) {}\n` }], recovery: { alternativeCommand: "echo ok" } },
  },
  {
    name: "shell prompt + answer",
    reason: "waiting_for_input",
    recovers: true,
    // bash's `read -p` prints its prompt only on a terminal: printf it, as scripts on a pipe do.
    spec: { command: `${ONSET}; printf "Continue? [y/N] "; read a; echo "$a"`, stdin: "pipe", recovery: { stdinAnswer: "y\n" } },
  },
  {
    name: "python input('Name: '), stdin closed",
    reason: "waiting_for_input",
    recovers: true,
    spec: { command: `${ONSET}; python3 -c 'import sys\ntry: print("hello", input("Name: "))\nexcept EOFError: print("default")'`, stdin: "pipe" },
  },
  {
    name: "sleep (history: 1 s silent sleep) + alternative",
    reason: "idle_stall",
    recovers: true,
    prime: { files: [{ path: "job.sh", content: `${ONSET}\nsleep 1\necho done\n` }] },
    spec: { command: "sh job.sh", files: [{ path: "job.sh", content: `${ONSET}\nsleep infinity\n` }], recovery: { alternativeCommand: "echo ok" }, maxAttempts: 3 },
  },
  {
    name: "python deadlock + alternative",
    reason: "deadlock",
    recovers: true,
    spec: { command: `${ONSET}; python3 dl.py`, files: [{ path: "dl.py", content: DEADLOCK_PY }], recovery: { alternativeCommand: "echo ok", backoffMs: 0 }, maxAttempts: 3 },
  },
  {
    name: "python OOM + raise_limit",
    reason: "memory_exhausted",
    recovers: true,
    spec: { command: `${ONSET}; python3 -c 'b = bytearray(96 << 20); print(len(b))'`, limits: { memoryBytes: 64 * MiB }, recovery: { limitCeilings: { memoryBytes: 256 * MiB } } },
  },
  {
    name: "sleep past timeout + raise_limit",
    reason: "timeout",
    recovers: true,
    onsetAfterStartMs: 1000,
    spec: { command: "for i in $(seq 15); do sleep 0.1; echo .; done", timeoutMs: 1000, maxAttempts: 4, recovery: { limitCeilings: { wallTimeMs: 10_000 } } },
  },
  { name: "bash fork bomb", reason: "fork_bomb", recovers: false, spec: { command: `${ONSET}; bash -c ':(){ :|:& };:; sleep 30'`, limits: { processes: 64 } } },
  { name: "yes flood", reason: "output_flood", recovers: false, spec: { command: `${ONSET}; yes "${LONG_LINE}"`, limits: { outputBytes: 8 * MiB } } },
  {
    name: "yes flood + alternative",
    reason: "output_flood",
    recovers: true,
    spec: { command: `${ONSET}; yes "${LONG_LINE}"`, limits: { outputBytes: 8 * MiB }, recovery: { alternativeCommand: "echo ok" } },
  },
];

const HEALTHY: Record<string, unknown>[] = [
  { command: "for i in $(seq 1 12); do timeout 0.25 sh -c 'while :; do :; done'; echo step $i; done" },
  {
    command:
      'python3 -c \'import time\nwith open("o","w") as f:\n  e=time.time()+3\n  while time.time()<e:\n    t=time.time()+0.2\n    while time.time()<t: pass\n    f.write("x\\n"); f.flush()\'',
  },
  { command: "node -e 'const e=Date.now()+3000; while(Date.now()<e){const t=Date.now()+200; while(Date.now()<t){} console.log(\".\")}'" },
  { command: "for i in 1 2 3 4 5 6; do sleep 0.4; echo tick; done" },
  { command: "printf 'int main(){return 0;}' > a.c && for i in 1 2 3; do gcc -O2 -o a a.c; done && ./a" },
  // Silent for seconds: cc1 busy on a large file (the default loop window, no history, holds).
  {
    command:
      "python3 -c \"print('#include <stdio.h>')\nfor i in range(300): print('int f%d(int x){int s=0; for(int k=0;k<x;k++){s+=k*%d^(s>>3);} return s;}' % (i, i))\nprint('int main(void){return f1(3)>0?0:0;}')\" > big.c && gcc -O2 -o big big.c && ./big",
  },
  {
    command:
      "python3 -m pip install -q --no-index --no-build-isolation --no-cache-dir --disable-pip-version-check --target site ./pkg && PYTHONPATH=site python3 -c 'import hello'",
    files: [
      { path: "pkg/setup.py", content: "from setuptools import setup\nsetup(name='hello', version='1.0', packages=['hello'])\n" },
      { path: "pkg/hello/__init__.py", content: "" },
    ],
  },
  {
    command: "cd app && HOME=$PWD/.home npm install --offline --no-audit --no-fund --loglevel=error ../lib && node -e 'require(\"lib\")'",
    files: [
      { path: "app/package.json", content: '{"name":"app","version":"1.0.0","private":true}\n' },
      { path: "lib/package.json", content: '{"name":"lib","version":"1.0.0","main":"index.js"}\n' },
      { path: "lib/index.js", content: "module.exports = 1;\n" },
    ],
  },
  // A prompt-looking line, then a sleep: stdin is a pipe nobody reads.
  { command: "for t in 1 2; do printf 'test_%s ... Continue? [y/N] ' $t; sleep 2.5; echo ok; done", stdin: "pipe" },
  { command: "head -c 100000000 /dev/urandom > big.bin && sha256sum big.bin | wc -c" },
  { command: "for i in 1 2 3 4; do dd if=/dev/urandom of=p$i bs=64k count=500 status=none; done && tar cf all.tar p* && mkdir x && tar xf all.tar -C x" },
];

/** Per-kind targets (issue 20): these kinds ≤ 2 s; loops and stalls ≤ their learned window + 5 s. */
const FAST_KINDS = new Set(["waiting_for_input", "deadlock", "fork_bomb", "memory_exhausted", "output_flood"]);

/** As POST /execute does it: the task and its block options in one transaction, so no worker claims it without them. */
async function enqueue(sql: Sql, spec: Record<string, unknown>): Promise<string> {
  return (await sql.begin(async (tx) => {
    const [r] = await tx<{ id: string }[]>`select id from cogo.enqueue_task(${tx.json(spec as never)})`;
    await tx`select cogo.set_block_options(${r!.id}, ${tx.json((spec.blockDetection ?? {}) as never)}, ${tx.json((spec.recovery ?? {}) as never)})`;
    return r!.id;
  })) as string;
}

async function finished(sql: Sql, id: string, timeoutMs = 60_000) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const [t] = await sql<{ status: string; startedAt: Date | null; finishedAt: Date | null }[]>`select status, started_at, finished_at from public.tasks where id = ${id}`;
    if (["succeeded", "failed", "cancelled", "timed_out"].includes(t!.status)) return t!;
    if (Date.now() > deadline) {
      // Missed: end it so the next case has the worker to itself.
      await sql`select 1 from cogo.cancel_task(${id})`;
      await new Promise((r) => setTimeout(r, 1500));
      return { ...t!, status: `still ${t!.status} after ${timeoutMs} ms` };
    }
    await new Promise((r) => setTimeout(r, 50));
  }
}

interface EventRow {
  type: string;
  data: { reason?: string };
  createdAt: Date;
}

export async function benchBlocks(stack: Stack, sql: Sql, progress: (s: string) => void): Promise<Row[]> {
  const rows: Row[] = [];
  const kind = "bench-blocks";
  const worker = new Worker({ databaseUrl: stack.dbUrl, kind, concurrency: 2, workspaceRoot: "/var/tmp/cogo-bench-ws", log: (l) => process.env.COGO_BENCH_DEBUG && progress(l) });
  await worker.start();
  const latency: number[] = [];
  const byKind = new Map<string, number[]>();
  const learned = new Map<string, number>();
  const recoveredIn: number[] = [];
  const misses: string[] = [];
  let recoverable = 0;
  let recovered = 0;
  try {
    for (let round = 1; round <= ROUNDS; round++) {
      for (const c of CASES) {
        progress(`blocks round ${round}/${ROUNDS}: ${c.name}…`);
        if (c.prime && round === 1) {
          const p = await finished(sql, await enqueue(sql, { ...c.spec, ...c.prime, recovery: {}, requirements: { kind } }));
          if (p.status !== "succeeded") misses.push(`${c.name}: the priming run ended ${p.status}`);
        }
        if (c.prime) {
          const [h] = await sql<{ runs: number; maxBusyMs: number; maxQuietMs: number }[]>`
            select runs, max_busy_ms, max_quiet_ms from cogo.command_history
             where owner is null and command_key = ${commandKey({ command: c.spec.command as string, argv: null, planId: null, step: null })}`;
          const w = learnedWindows(BLOCK_DETECTION_DEFAULTS, undefined, h ?? null);
          learned.set(c.reason, Math.max(learned.get(c.reason) ?? 0, c.reason === "idle_stall" ? w.idleStallMs : w.infiniteLoopMs));
        }
        const id = await enqueue(sql, { ...c.spec, requirements: { kind } });
        const task = await finished(sql, id);
        const events = await sql<EventRow[]>`select type, data, created_at from public.task_events where task_id = ${id} order by seq`;
        const block = events.find((e) => e.type === "block_detected");
        const story = events
          .filter((e) => e.type === "block_detected" || e.type.startsWith("recovery_"))
          .map((e) => (e.data as { reason?: string; action?: string }).action ?? e.data.reason)
          .join(" → ");
        if (!block || block.data.reason !== c.reason) {
          misses.push(`${c.name}: ${story || "nothing detected"}`);
          continue;
        }
        let onset: number | undefined;
        if (c.onsetAfterStartMs !== undefined) {
          const [first] = await sql<
            { at: Date }[]
          >`select created_at as at from public.task_events where task_id = ${id} and type = 'task_status' and data->>'status' = 'running' order by seq limit 1`;
          onset = first!.at.getTime() + c.onsetAfterStartMs;
        } else {
          const [line] = await sql<{ data: string }[]>`select data from public.task_output where task_id = ${id} and data like 'ONSET %' order by seq limit 1`;
          onset = line ? Number(/ONSET (\d+)/.exec(line.data)?.[1]) : undefined;
        }
        if (onset) {
          latency.push(block.createdAt.getTime() - onset);
          byKind.set(c.reason, [...(byKind.get(c.reason) ?? []), block.createdAt.getTime() - onset]);
        }
        if (c.recovers) {
          recoverable++;
          if (task.status === "succeeded") {
            recovered++;
            recoveredIn.push(task.finishedAt!.getTime() - block.createdAt.getTime());
          } else misses.push(`${c.name}: ended ${task.status} (${story})`);
        }
      }
    }
    progress("healthy set…");
    const falsePositives: string[] = [];
    for (let round = 1; round <= ROUNDS; round++) {
      const ids = await Promise.all(HEALTHY.map((spec) => enqueue(sql, { ...spec, requirements: { kind } })));
      for (const [i, id] of ids.entries()) {
        const t = await finished(sql, id);
        const blocks = await sql<{ reason: string; summary: string }[]>`
          select data->>'reason' as reason, data#>>'{evidence,summary}' as summary from public.task_events where task_id = ${id} and type = 'block_detected'`;
        if (blocks.length > 0 || t.status !== "succeeded") falsePositives.push(`healthy #${i + 1}: ${blocks.map((b) => `${b.reason} (${b.summary})`).join(", ") || t.status}`);
      }
    }

    for (const [reason, values] of byKind) {
      const window = learned.get(reason);
      const limit = FAST_KINDS.has(reason) ? 2000 : window !== undefined ? window + 5000 : undefined;
      rows.push({
        metric: `${reason}: onset → block_detected p50 / max (default settings${window !== undefined ? `, learned window ${window} ms` : ""})`,
        value: `${ms(percentile(values, 50))} / ${ms(Math.max(...values))}`,
        ...(limit !== undefined ? { target: `≤ ${limit} ms`, ok: Math.max(...values) <= limit } : {}),
      });
    }
    rows.push({ metric: "block onset → block_detected p50, all kinds", value: ms(percentile(latency, 50)), target: "< 5000 ms", ok: percentile(latency, 50) < 5000 });
    rows.push({
      metric: "recovery success, recoverable cases",
      value: `${((100 * recovered) / Math.max(1, recoverable)).toFixed(1)} % (${recovered}/${recoverable})`,
      target: "≥ 99 %",
      ok: recovered / Math.max(1, recoverable) >= 0.99,
    });
    rows.push({ metric: "block_detected → recovered p50", value: ms(percentile(recoveredIn, 50)) });
    rows.push({ metric: "block_detected → recovered max", value: ms(Math.max(...recoveredIn)), target: "< 10 s", ok: Math.max(...recoveredIn) < 10_000 });
    rows.push({
      metric: "false positives, healthy set",
      value: `${falsePositives.length} of ${HEALTHY.length * ROUNDS}${falsePositives.length ? `: ${falsePositives.join("; ")}` : ""}`,
      target: "0",
      ok: falsePositives.length === 0,
    });
    rows.push({ metric: "wrong or missed detections", value: misses.length ? misses.join("; ") : "0", target: "0", ok: misses.length === 0 });
  } finally {
    await worker.stop(0);
  }

  progress("worker kill -9 mid-task…");
  rows.push(...(await workerLoss(stack, sql)));
  return rows;
}

/** A worker process killed with SIGKILL mid-task: time until its task is re-queued and done elsewhere. */
async function workerLoss(stack: Stack, sql: Sql): Promise<Row[]> {
  const kind = "bench-worker-loss";
  const leaseMs = 2000;
  const child = spawn(process.execPath, ["--import", "tsx", path.join(PROJECT_ROOT, "worker/main.ts"), "--kind", kind, "--concurrency", "1", "--lease-ms", String(leaseMs)], {
    env: { ...process.env, SUPABASE_DB_URL: stack.dbUrl, COGO_WORKSPACE_ROOT: "/var/tmp/cogo-bench-ws" },
    stdio: "ignore",
    detached: true,
  });
  try {
    const id = await enqueue(sql, { command: "echo started; sleep 2; echo done", requirements: { kind } });
    const deadline = Date.now() + 30_000;
    while (!(await sql`select 1 from public.task_output where task_id = ${id} and data like 'started%'`).length) {
      if (Date.now() > deadline) throw new Error("the worker-loss task never started");
      await new Promise((r) => setTimeout(r, 20));
    }
    const killedAt = Date.now();
    process.kill(-child.pid!, "SIGKILL");
    // Another worker: its lease rescuer re-queues the task, then it runs it.
    const other = new Worker({ databaseUrl: stack.dbUrl, kind, concurrency: 1, leaseMs, workspaceRoot: "/var/tmp/cogo-bench-ws", log: () => {} });
    await other.start();
    const t = await finished(sql, id);
    await other.stop(0);
    const [b] = await sql<{ at: Date }[]>`select created_at as at from public.task_events where task_id = ${id} and type = 'block_detected' and data->>'reason' = 'worker_lost'`;
    return [
      {
        metric: `worker SIGKILL → worker_lost block (lease ${leaseMs} ms)`,
        value: b ? ms(b.at.getTime() - killedAt) : "not detected",
        target: `< lease + 1 s`,
        ok: !!b && b.at.getTime() - killedAt < leaseMs + 1000,
      },
      {
        metric: "worker SIGKILL → task succeeded elsewhere",
        value: t.status === "succeeded" ? ms(t.finishedAt!.getTime() - killedAt) : t.status,
        target: "< 10 s",
        ok: t.status === "succeeded" && t.finishedAt!.getTime() - killedAt < 10_000,
      },
    ];
  } finally {
    try {
      process.kill(-child.pid!, "SIGKILL");
    } catch {
      /* gone */
    }
  }
}
