// The fault harness: a workload of streaming tasks, a watcher that sees every sandbox of that
// workload on this machine, and the invariants every fault must leave intact.
import { spawn } from "node:child_process";
import { randomUUID } from "node:crypto";
import { readdirSync, readFileSync, readlinkSync } from "node:fs";
import path from "node:path";
import { createClient, type SupabaseClient } from "@supabase/supabase-js";
import type { Sql } from "postgres";
import WebSocket from "ws";
import { mintUserToken } from "../../embedded/keys.ts";
import { PROJECT_ROOT } from "../../embedded/stack.ts";
import type { OutputChunk } from "../../functions/_shared/schemas.ts";
import { createSandboxClient, type SandboxClient } from "../../sdk/index.ts";
import type { TaskHandle, TaskResult } from "../../sdk/handle.ts";

/** What a harness needs of a stack: the shared test stack or a private one. */
export interface Endpoints {
  apiUrl: string;
  dbUrl: string;
  anonKey: string;
  jwtSecret: string;
}

export const WORKSPACES = "/var/tmp/cogo-test-workspaces";
const MARK_PREFIX = "fault-mark-";

export interface Tenant {
  id: string;
  token: string;
  supabase: SupabaseClient;
  sandbox: SandboxClient;
  close(): Promise<void>;
}

/** A user with the official client (ws transport) and the SDK over it. */
export async function tenant(ep: Endpoints): Promise<Tenant> {
  const id = randomUUID();
  const token = await mintUserToken(ep.jwtSecret, id);
  const supabase = createClient(ep.apiUrl, ep.anonKey, { accessToken: async () => token, realtime: { transport: WebSocket as never } });
  await supabase.realtime.setAuth();
  return {
    id,
    token,
    supabase,
    sandbox: createSandboxClient(supabase),
    close: async () => {
      await supabase.removeAllChannels();
      supabase.realtime.disconnect();
    },
  };
}

/** A task that prints `<mark> <i>` for i = 1..lines, one every `everyMs`: its marker is in its command line. */
export function streamingCommand(mark: string, lines: number, everyMs: number): string {
  return `for i in $(seq 1 ${lines}); do echo "${mark} $i"; sleep ${(everyMs / 1000).toFixed(3)}; done`;
}

export interface Tracked {
  mark: string;
  lines: number;
  handle: TaskHandle;
  /** Every chunk the SDK handed to onOutput, in the order it did. */
  received: OutputChunk[];
  result: Promise<TaskResult>;
}

/** Submits `count` streaming tasks through the SDK and follows each one live. */
export async function submitWorkload(
  t: Tenant,
  opts: { count: number; kind: string; lines?: number; everyMs?: number; maxAttempts?: number; pollIntervalMs?: number },
): Promise<Tracked[]> {
  const lines = opts.lines ?? 60;
  const out: Tracked[] = [];
  for (let i = 0; i < opts.count; i++) {
    const mark = `${MARK_PREFIX}${randomUUID().slice(0, 8)}`;
    const received: OutputChunk[] = [];
    const handle = await t.sandbox.execute(
      { command: streamingCommand(mark, lines, opts.everyMs ?? 50), maxAttempts: opts.maxAttempts ?? 5, requirements: { kind: opts.kind } },
      { onOutput: (c) => received.push(c) },
      { pollIntervalMs: opts.pollIntervalMs ?? 1000 },
    );
    out.push({ mark, lines, handle, received, result: handle.result() });
  }
  return out;
}

/**
 * Samples /proc: for each workload marker, the sandboxes (PID namespaces other than ours) whose
 * processes carry it. Two at once means a task ran twice at the same time.
 */
export class SandboxWatch {
  private readonly hostNs = readlinkSync("/proc/self/ns/pid");
  private timer: ReturnType<typeof setInterval> | undefined;
  /** marker → most sandboxes seen at once */
  readonly peak = new Map<string, number>();
  /** marker → each sandbox (PID namespace) of it: first and last time seen (ms since epoch), oldest first */
  readonly runs = new Map<string, Map<string, { first: number; last: number }>>();

  start(everyMs = 20): this {
    this.timer = setInterval(() => this.sample(), everyMs);
    return this;
  }

  stop(): void {
    clearInterval(this.timer);
  }

  /** marker → sandbox PID namespaces alive now. */
  scan(): Map<string, Set<string>> {
    const now = new Map<string, Set<string>>();
    for (const name of readdirSync("/proc")) {
      if (!/^\d+$/.test(name)) continue;
      try {
        const cmd = readFileSync(`/proc/${name}/cmdline`, "latin1");
        const at = cmd.indexOf(MARK_PREFIX);
        if (at < 0) continue;
        const ns = readlinkSync(`/proc/${name}/ns/pid`);
        if (ns === this.hostNs) continue; // bwrap's outer process, before it enters the sandbox
        if (/^State:\s+Z/m.test(readFileSync(`/proc/${name}/status`, "utf8"))) continue;
        const mark = cmd.slice(at, at + MARK_PREFIX.length + 8);
        now.set(mark, (now.get(mark) ?? new Set()).add(ns));
      } catch {
        // exited while we looked
      }
    }
    return now;
  }

  private sample(): void {
    const t = Date.now();
    for (const [mark, ns] of this.scan()) {
      this.peak.set(mark, Math.max(this.peak.get(mark) ?? 0, ns.size));
      const runs = this.runs.get(mark) ?? new Map<string, { first: number; last: number }>();
      for (const n of ns) runs.set(n, { first: runs.get(n)?.first ?? t, last: t });
      this.runs.set(mark, runs);
    }
  }
}

/**
 * The invariants, checked for every tracked task once all have ended:
 * - it ended exactly once (one final task_status event, final status = expected);
 * - its output rows are seqs 1..output_seq, each attempt's lines a gap-free, duplicate-free prefix,
 *   the last attempt complete;
 * - the SDK client received exactly those rows, in order, once;
 * - no two sandboxes of it ever ran at once, and none is left.
 */
export async function checkInvariants(sql: Sql, tasks: Tracked[], watch: SandboxWatch, expect: { status?: string } = {}): Promise<string[]> {
  const problems: string[] = [];
  for (const t of tasks) {
    const r = await t.result;
    const id = t.handle.taskId;
    const label = `task ${id} (${t.mark})`;
    if (r.status !== (expect.status ?? "succeeded")) problems.push(`${label}: status ${r.status} (${r.reason})`);
    const finals = await sql<{ n: number }[]>`
      select count(*)::int as n from public.task_events
       where task_id = ${id} and type = 'task_status' and data->>'status' in ('succeeded', 'failed', 'cancelled', 'timed_out')`;
    if (finals[0]!.n !== 1) problems.push(`${label}: ${finals[0]!.n} final status events`);
    const [task] = await sql<{ outputSeq: string; attempt: number }[]>`select output_seq, attempt from public.tasks where id = ${id}`;
    const rows = await sql<{ seq: string; attempt: number; stream: string; data: string }[]>`
      select seq, attempt, stream, data from public.task_output where task_id = ${id} order by seq`;
    const seqs = rows.map((x) => Number(x.seq));
    if (seqs.length !== Number(task!.outputSeq) || seqs.some((s, i) => s !== i + 1)) {
      problems.push(`${label}: output seqs not 1..${task!.outputSeq}: ${seqs.slice(0, 5).join(",")}… (${seqs.length} rows)`);
    }
    // Lines per attempt: `<mark> 1`, `<mark> 2`, … with nothing skipped or repeated.
    const byAttempt = new Map<number, number[]>();
    for (const row of rows) {
      if (row.stream !== "stdout") continue;
      for (const line of row.data.split("\n")) {
        if (!line) continue;
        const m = new RegExp(`^${t.mark} (\\d+)$`).exec(line);
        if (!m) problems.push(`${label}: unexpected stdout line ${JSON.stringify(line)}`);
        else byAttempt.set(row.attempt, [...(byAttempt.get(row.attempt) ?? []), Number(m[1])]);
      }
    }
    for (const [attempt, nums] of byAttempt) {
      if (nums.some((n, i) => n !== i + 1)) problems.push(`${label}: attempt ${attempt} lines not 1..${nums.length} in order: ${nums.slice(0, 12).join(",")}`);
    }
    if (r.status === "succeeded" && byAttempt.get(task!.attempt)?.length !== t.lines) {
      problems.push(`${label}: final attempt ${task!.attempt} printed ${byAttempt.get(task!.attempt)?.length ?? 0} of ${t.lines} lines`);
    }
    const got = t.received.map((c) => `${c.sequence}:${c.data}`);
    const want = rows.map((x) => `${x.seq}:${x.data}`);
    if (got.length !== want.length || got.some((g, i) => g !== want[i])) {
      const at = got.findIndex((g, i) => g !== want[i]);
      problems.push(`${label}: SDK received ${got.length} chunks, DB has ${want.length}; first difference at ${at}: ${got[at]} vs ${want[at]}`);
    }
    if ((watch.peak.get(t.mark) ?? 0) > 1) problems.push(`${label}: ${watch.peak.get(t.mark)} sandboxes ran it at the same time`);
  }
  const left = watch.scan();
  for (const t of tasks) if (left.has(t.mark)) problems.push(`task ${t.handle.taskId}: a sandbox is still running after it ended`);
  return problems;
}

/** A worker in its own process (so it can be SIGKILLed or SIGTERMed), logging to a string. */
export function spawnWorker(dbUrl: string, kind: string, args: string[] = []) {
  const child = spawn(process.execPath, ["--import", "tsx", path.join(PROJECT_ROOT, "worker/main.ts"), "--kind", kind, ...args], {
    env: { ...process.env, SUPABASE_DB_URL: dbUrl, COGO_WORKSPACE_ROOT: WORKSPACES },
    stdio: ["ignore", "ignore", "pipe"],
    detached: true,
  });
  let log = "";
  child.stderr!.on("data", (d: Buffer) => (log += d));
  const exited = new Promise<number | null>((resolve) => child.on("exit", (code) => resolve(code)));
  const kill = (signal: NodeJS.Signals) => {
    try {
      process.kill(-child.pid!, signal);
    } catch {
      /* already gone */
    }
  };
  return { child, exited, log: () => log, kill };
}

export async function waitFor<T>(fn: () => Promise<T | undefined | false> | T | undefined | false, what: string, timeoutMs = 30_000, everyMs = 50): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}

/** Resolves when every task has printed at least `lines` lines to the SDK client. */
export const streaming = (tasks: Tracked[], lines = 3) =>
  waitFor(() => tasks.every((t) => t.received.filter((c) => c.stream === "stdout").length >= lines), `${tasks.length} tasks to stream`, 60_000);

/** Drops the client's WebSocket without a close frame, as a network failure does. */
export function dropWebSocket(supabase: SupabaseClient): void {
  const conn = (supabase.realtime as unknown as { socketAdapter?: { socket?: { conn?: WebSocket } } }).socketAdapter?.socket?.conn;
  if (!conn || typeof conn.terminate !== "function") throw new Error("no open ws connection inside this realtime-js client (its internals changed?)");
  conn.terminate();
}
