// The fault harness: a workload of streaming tasks, a watcher that sees every sandbox of that
// workload on this machine, and the invariants every fault must leave intact.
import { randomUUID } from "node:crypto";
import { readdirSync, readFileSync, readlinkSync } from "node:fs";
import { createClient, type SupabaseClient } from "@supabase/supabase-js";
import type { Sql } from "postgres";
import WebSocket from "ws";
import { mintUserToken } from "../../embedded/keys.ts";
import type { OutputChunk } from "../../functions/_shared/schemas.ts";
import { createSandboxClient, type SandboxClient } from "../../sdk/index.ts";
import type { TaskHandle, TaskResult } from "../../sdk/handle.ts";
import { waitFor } from "../helpers/wait.ts";
import { spawnWorker, WORKSPACES } from "../helpers/worker-process.ts";

export { spawnWorker, waitFor, WORKSPACES };

/** What a harness needs of a stack: the shared test stack or a private one. */
export interface Endpoints {
  apiUrl: string;
  dbUrl: string;
  anonKey: string;
  jwtSecret: string;
}

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

export interface WorkloadOptions {
  kind: string;
  /** Lines each task prints. @default 60 */
  lines?: number;
  /** Pause between lines. @default 50 */
  everyMs?: number;
  /** Exit with this code after the last line. @default 0 */
  exitCode?: number;
  /** @default 5 */
  maxAttempts?: number;
  /** The SDK's HTTP catch-up interval. @default 1000 */
  pollIntervalMs?: number;
  /** Marker in the command (retries of one submission must reuse it). @default a new one */
  mark?: string;
  /** Makes the submission safe to retry. @default none */
  idempotencyKey?: string;
}

export const newMark = () => `${MARK_PREFIX}${randomUUID().slice(0, 8)}`;

/** Submits one streaming task through the SDK and follows it live. */
export async function submitTask(t: Tenant, opts: WorkloadOptions): Promise<Tracked> {
  const lines = opts.lines ?? 60;
  const mark = opts.mark ?? newMark();
  const received: OutputChunk[] = [];
  const command = streamingCommand(mark, lines, opts.everyMs ?? 50) + (opts.exitCode ? `; exit ${opts.exitCode}` : "");
  const handle = await t.sandbox.execute(
    { command, maxAttempts: opts.maxAttempts ?? 5, requirements: { kind: opts.kind }, ...(opts.idempotencyKey ? { idempotencyKey: opts.idempotencyKey } : {}) },
    { onOutput: (c) => received.push(c) },
    { pollIntervalMs: opts.pollIntervalMs ?? 1000 },
  );
  return { mark, lines, handle, received, result: handle.result() };
}

/** Submits `count` streaming tasks, one after another. */
export async function submitWorkload(t: Tenant, opts: WorkloadOptions & { count: number }): Promise<Tracked[]> {
  const out: Tracked[] = [];
  for (let i = 0; i < opts.count; i++) out.push(await submitTask(t, opts));
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
  /** marker → each sandbox of it: first and last time seen (ms since epoch), oldest first */
  readonly runs = new Map<string, Map<string, { first: number; last: number }>>();

  start(everyMs = 20): this {
    this.timer = setInterval(() => this.sample(), everyMs);
    return this;
  }

  stop(): void {
    clearInterval(this.timer);
  }

  /**
   * marker → sandboxes alive now, each named by its PID namespace and the lowest host pid in it
   * (namespace inode numbers are reused once a namespace is gone; the pair is not, within a run).
   */
  scan(): Map<string, Set<string>> {
    const lowest = new Map<string, Map<string, number>>();
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
        const byNs = lowest.get(mark) ?? new Map<string, number>();
        byNs.set(ns, Math.min(byNs.get(ns) ?? Infinity, Number(name)));
        lowest.set(mark, byNs);
      } catch {
        // exited while we looked
      }
    }
    return new Map([...lowest].map(([mark, byNs]) => [mark, new Set([...byNs].map(([ns, pid]) => `${ns}@${pid}`))]));
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

export interface Audit {
  /** Output rows missing: seq gaps in the database, lines skipped within an attempt, chunks the client never got. */
  lost: number;
  /** Output delivered twice: a line repeated within an attempt, a chunk the client got twice. */
  duplicates: number;
  /** Most sandboxes of the task seen running at the same time (must be ≤ 1). */
  concurrentRuns: number;
  problems: string[];
}

/**
 * The invariants for one tracked task, once it has ended:
 * - it ended exactly once (one final task_status event) with the expected status;
 * - its output rows are seqs 1..output_seq; each attempt's lines are `<mark> 1..k` with nothing
 *   skipped or repeated; a succeeded task's last attempt printed every line;
 * - the SDK client received exactly those rows, in order, once;
 * - no two sandboxes of it ran at once, and none is left.
 */
export async function auditTask(sql: Sql, t: Tracked, watch: SandboxWatch, expectStatus = "succeeded"): Promise<Audit> {
  const audit: Audit = { lost: 0, duplicates: 0, concurrentRuns: watch.peak.get(t.mark) ?? 0, problems: [] };
  const r = await t.result;
  const id = t.handle.taskId;
  const problem = (s: string) => audit.problems.push(`task ${id} (${t.mark}): ${s}`);
  if (r.status !== expectStatus) problem(`status ${r.status} (${r.reason}), expected ${expectStatus}`);
  const [finals] = await sql<{ n: number }[]>`
    select count(*)::int as n from public.task_events
     where task_id = ${id} and type = 'task_status' and data->>'status' in ('succeeded', 'failed', 'cancelled', 'timed_out')`;
  if (finals!.n !== 1) problem(`${finals!.n} final status events`);
  const [task] = await sql<{ outputSeq: string; attempt: number }[]>`select output_seq, attempt from public.tasks where id = ${id}`;
  const rows = await sql<{ seq: string; attempt: number; stream: string; data: string }[]>`
    select seq, attempt, stream, data from public.task_output where task_id = ${id} order by seq`;
  const gaps = Number(task!.outputSeq) - rows.length;
  if (gaps || rows.some((x, i) => Number(x.seq) !== i + 1)) {
    audit.lost += Math.max(1, gaps);
    problem(`output seqs are not 1..${task!.outputSeq} (${rows.length} rows)`);
  }
  const byAttempt = new Map<number, number[]>();
  for (const row of rows) {
    if (row.stream !== "stdout") continue;
    for (const line of row.data.split("\n")) {
      if (!line) continue;
      const m = new RegExp(`^${t.mark} (\\d+)$`).exec(line);
      if (!m) problem(`unexpected stdout line ${JSON.stringify(line)}`);
      else byAttempt.set(row.attempt, [...(byAttempt.get(row.attempt) ?? []), Number(m[1])]);
    }
  }
  for (const [attempt, nums] of byAttempt) {
    const dup = nums.length - new Set(nums).size;
    const skipped = Math.max(...nums) - new Set(nums).size;
    audit.duplicates += dup;
    audit.lost += skipped;
    if (nums.some((n, i) => n !== i + 1)) problem(`attempt ${attempt}: lines not 1..${nums.length} in order: ${nums.slice(0, 12).join(",")}`);
  }
  if (r.status === "succeeded" && byAttempt.get(task!.attempt)?.length !== t.lines) {
    audit.lost += t.lines - (byAttempt.get(task!.attempt)?.length ?? 0);
    problem(`final attempt ${task!.attempt} printed ${byAttempt.get(task!.attempt)?.length ?? 0} of ${t.lines} lines`);
  }
  const got = t.received.map((c) => `${c.sequence}:${c.data}`);
  const want = rows.map((x) => `${x.seq}:${x.data}`);
  if (got.length !== want.length || got.some((g, i) => g !== want[i])) {
    const seen = new Set(got);
    audit.duplicates += got.length - seen.size;
    audit.lost += want.filter((w) => !seen.has(w)).length;
    const at = got.findIndex((g, i) => g !== want[i]);
    problem(`SDK received ${got.length} chunks, DB has ${want.length}; first difference at ${at}: ${got[at]} vs ${want[at]}`);
  }
  if (audit.concurrentRuns > 1) problem(`${audit.concurrentRuns} sandboxes ran it at the same time`);
  if (watch.scan().has(t.mark)) problem("a sandbox is still running after it ended");
  return audit;
}

/** Every tracked task audited; the problems found, none when the invariants hold. */
export async function checkInvariants(sql: Sql, tasks: Tracked[], watch: SandboxWatch, expect: { status?: string } = {}): Promise<string[]> {
  const problems: string[] = [];
  for (const t of tasks) problems.push(...(await auditTask(sql, t, watch, expect.status)).problems);
  return problems;
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
