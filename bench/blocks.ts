// Block detection and recovery figures over a corpus of blocking programs and a healthy set:
// onset → block_detected latency, recovery success rate, block_detected → recovered time,
// false positives, and a worker killed with SIGKILL mid-task.
import { spawn } from "node:child_process";
import path from "node:path";
import type { Sql } from "postgres";
import { PROJECT_ROOT, type Stack } from "../embedded/stack.ts";
import { Worker } from "../worker/worker.ts";
import { ms, percentile, type Row } from "./stats.ts";

const ROUNDS = Number(process.env.COGO_BENCH_ROUNDS ?? 3);
const MiB = 1024 * 1024;
/** The bench's per-task windows (defaults are longer; README explains). */
const WINDOWS = { sampleIntervalMs: 100, infiniteLoopMs: 1000, idleStallMs: 1000, waitingForInputMs: 500, deadlockMs: 1000, memoryMs: 300, forkBombMs: 200, outputFloodMs: 1000 };
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
}

const DEADLOCK_PY =
  "import threading, time, sys\na, b = threading.Lock(), threading.Lock()\ndef one():\n    with a:\n        time.sleep(0.1)\n        with b: pass\ndef two():\n    with b:\n        time.sleep(0.1)\n        with a: pass\nt = [threading.Thread(target=f) for f in (one, two)]\n[x.start() for x in t]\n[x.join() for x in t]\n";

const CASES: Case[] = [
  { name: "shell loop + alternative", reason: "infinite_loop", recovers: true, spec: { command: `${ONSET}; while :; do :; done`, recovery: { alternativeCommand: "echo ok" } } },
  { name: "node loop + alternative", reason: "infinite_loop", recovers: true, spec: { command: `${ONSET}; node -e 'for(;;){}'`, recovery: { alternativeCommand: "echo ok" } } },
  {
    name: "bash prompt + answer",
    reason: "waiting_for_input",
    recovers: true,
    spec: { command: `${ONSET}; read -p "Continue? [y/N] " a; echo "$a"`, stdin: "pipe", recovery: { stdinAnswer: "y\n" } },
  },
  {
    name: "python input(), stdin closed",
    reason: "waiting_for_input",
    recovers: true,
    spec: { command: `${ONSET}; python3 -c 'import sys; print(sys.stdin.read() or "default")'`, stdin: "pipe" },
  },
  {
    name: "sleep infinity + alternative",
    reason: "idle_stall",
    recovers: true,
    spec: { command: `${ONSET}; sleep infinity`, recovery: { alternativeCommand: "echo ok" }, maxAttempts: 3 },
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
];

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
  const recoveredIn: number[] = [];
  const misses: string[] = [];
  let recoverable = 0;
  let recovered = 0;
  try {
    for (let round = 1; round <= ROUNDS; round++) {
      for (const c of CASES) {
        progress(`blocks round ${round}/${ROUNDS}: ${c.name}…`);
        const id = await enqueue(sql, { ...c.spec, requirements: { kind }, blockDetection: WINDOWS });
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
        if (onset) latency.push(block.createdAt.getTime() - onset);
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
      const ids = await Promise.all(HEALTHY.map((spec) => enqueue(sql, { ...spec, requirements: { kind }, blockDetection: WINDOWS })));
      for (const [i, id] of ids.entries()) {
        const t = await finished(sql, id);
        const blocks = await sql<{ reason: string; summary: string }[]>`
          select data->>'reason' as reason, data#>>'{evidence,summary}' as summary from public.task_events where task_id = ${id} and type = 'block_detected'`;
        if (blocks.length > 0 || t.status !== "succeeded") falsePositives.push(`healthy #${i + 1}: ${blocks.map((b) => `${b.reason} (${b.summary})`).join(", ") || t.status}`);
      }
    }

    rows.push({ metric: `block onset → block_detected p50 (windows ${WINDOWS.infiniteLoopMs} ms, stdin ${WINDOWS.waitingForInputMs} ms)`, value: ms(percentile(latency, 50)) });
    rows.push({ metric: "block onset → block_detected max", value: ms(Math.max(...latency)), target: "≤ 2000 ms", ok: Math.max(...latency) <= 2000 });
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
