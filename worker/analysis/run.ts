// Analysis tasks (kind `analysis`): the clone task lists the repository in a sandbox and stores
// new blob contents, then SQL plans batch tasks; a batch task counts lines and parses symbols and
// imports of its blobs, and the worker that lands the last batch resolves the import graph.
import { createHash } from "node:crypto";
import type { Sql } from "postgres";
import { AnalysisOptionsSchema } from "../../functions/_shared/analysis/schemas.ts";
import { pathFilter } from "../../functions/_shared/analysis/globs.ts";
import { resolveImports, type FileImports } from "../../functions/_shared/analysis/imports.ts";
import { countLines } from "../../functions/_shared/analysis/lines.ts";
import type { AnalysisPolicy } from "../../functions/_shared/analysis/source.ts";
import { CogoError } from "../../functions/_shared/errors.ts";
import { validateWorkspacePath } from "../../functions/_shared/paths.ts";
import type { TaskRow } from "../../functions/_shared/views.ts";
import { Attempt } from "../attempt.ts";
import { fenced, LeaseLostError, type Lease } from "../db.ts";
import type { Queue } from "../queue.ts";
import type { RunningTask } from "../run-task.ts";
import type { SandboxOptions } from "../sandbox/index.ts";
import { cloneInSandbox, type CloneResult, type TreeEntry } from "./clone.ts";
import { detectLanguage } from "./languages.ts";
import { parseSource } from "./parse.ts";

/** Analysis writes are not repeated on a lost connection: the attempt fails over instead. */
const ONCE = { retry: false } as const;

export class AnalysisFailed extends CogoError {}
class Stopped extends Error {}

/** Content sent to the database per call while storing blobs. */
const STORE_CHUNK_BYTES = 4 * 1024 * 1024;
const STORE_CHUNK_ROWS = 2000;
/** Blob chunks being stored at once, each on its own connection of the pool. */
const STORE_IN_FLIGHT = 2;
/** Source bytes whose results a batch sends to the database at a time. */
const RESULTS_PART_BYTES = 256 * 1024;

/**
 * Whether the system made this task as a step of a repository analysis: tasks.internal, which only
 * cogo.start_analysis and cogo.plan_analysis set. Never the kind or step name, which users choose.
 */
export function isAnalysisTask(task: TaskRow): boolean {
  return task.internal === "analysis-clone" || task.internal === "analysis-batch";
}

export function runAnalysisTask(task: TaskRow, workerId: string, queue: Queue, sandboxOptions: SandboxOptions, log: (l: string) => void): RunningTask {
  const attempt = new Attempt(task, workerId, queue, log);
  const lease: Lease = attempt.lease;
  let stopReason: "cancelled" | "lease_lost" | "shutdown" | undefined;
  let killSandbox: (() => void) | undefined;
  const checkStop = () => {
    if (stopReason) throw new Stopped(stopReason);
  };

  const done = (async () => {
    try {
      await attempt.start();
      const result =
        task.internal === "analysis-clone" ? await cloneStep(queue.sql, lease, sandboxOptions, (kill) => (killSandbox = kill)) : await batchStep(queue.sql, lease, checkStop);
      checkStop();
      await attempt.end({ kind: "finish", status: "succeeded", exitCode: 0, signal: null, reason: result.reason, usage: {}, result });
    } catch (err) {
      if (err instanceof LeaseLostError || stopReason === "lease_lost") {
        log(`analysis task ${task.id} attempt ${task.attempt}: lease lost; stopped`);
        if (err instanceof LeaseLostError) attempt.lost();
        await attempt.end({ kind: "release", reason: "worker lost contact with the database; re-queued" }).catch(() => {});
        return;
      }
      if (stopReason === "shutdown") {
        await attempt.end({ kind: "release", reason: "worker shut down before the task finished; re-queued" }).catch((e) => log(`task ${task.id}: release: ${e}`));
        return;
      }
      const status = stopReason === "cancelled" ? "cancelled" : "failed";
      const reason = stopReason === "cancelled" ? "cancelled while running" : err instanceof Error ? err.message : String(err);
      if (!(err instanceof CogoError) && !(err instanceof Stopped)) log(`analysis task ${task.id}: ${err instanceof Error ? err.stack : err}`);
      // What the network said (DNS, git's stderr, the address refused) is for the operator only.
      else if (err instanceof CogoError && err.details) log(`analysis task ${task.id}: ${err.code}: ${JSON.stringify(err.details)}`);
      await attempt.end({ kind: "finish", status, exitCode: null, signal: null, reason, usage: {} }).catch((e) => log(`task ${task.id}: finishing failed: ${e}`));
    }
  })();

  return {
    lease,
    stop(reason) {
      stopReason ??= reason;
      killSandbox?.();
    },
    stdinReady() {},
    // Analysis steps run no user program: they are bounded by their own timeouts, not block-monitored.
    recover() {
      log(`analysis task ${task.id}: recovery requested; analysis steps are not block-monitored, ignored`);
    },
    done,
  };
}

interface AnalysisRecord {
  id: string;
  repoId: string;
  phase: string;
  source: string;
  ref: string;
  include: string[];
  exclude: string[];
  options: Record<string, unknown>;
}

async function cloneStep(sql: Sql, l: Lease, sandboxOptions: SandboxOptions, onSandbox: (kill: () => void) => void) {
  const [a] = await fenced(() => sql<AnalysisRecord[]>`select * from cogo.begin_analysis_clone(${l.taskId}, ${l.attempt}, ${l.workerId})`, ONCE);
  if (a!.phase !== "cloning") {
    // An earlier attempt listed and planned it, then lost its lease before it finished.
    if (a!.phase === "finalizing") await finalize(sql, l, a!.id);
    return { reason: `listed and planned by an earlier attempt (analysis ${a!.phase})`, analysisId: a!.id };
  }
  const options = AnalysisOptionsSchema.parse(a!.options);
  const [pol] = await sql<{ policy: AnalysisPolicy }[]>`select cogo.analysis_policy() as policy`;
  const policy = pol!.policy;
  const stored = await sql<{ hash: string; language: string }[]>`select hash, language from public.analysis_blobs where repo_id = ${a!.repoId}`;
  const t0 = performance.now();
  const known = new Set(stored.map((s) => s.hash));
  const clone = a!.source.startsWith("workspace:")
    ? await readWorkspace(sql, a!.source.slice("workspace:".length), known, options.maxFileBytes)
    : await cloneInSandbox(
        {
          source: a!.source,
          ref: a!.ref,
          known: [...known],
          maxFileBytes: options.maxFileBytes,
          maxTotalBytes: options.maxTotalBytes,
          timeoutMs: options.cloneTimeoutMs,
          policy,
        },
        sandboxOptions,
        onSandbox,
      );

  const t1 = performance.now();
  // Only regular files at valid paths that the globs keep; links and submodules are never followed.
  const keep = pathFilter(a!.include, a!.exclude);
  let skipped = 0;
  const files: { path: string; hash: string; language: string; size: number }[] = [];
  for (const e of clone.entries) {
    let path: string;
    try {
      path = validateWorkspacePath(e.path);
    } catch {
      skipped++;
      continue;
    }
    if (e.type !== "blob" || (e.mode !== "100644" && e.mode !== "100755") || path !== e.path || !keep(path)) {
      skipped++;
      continue;
    }
    const head = clone.blobs.get(e.hash)?.subarray(0, 200).toString("latin1") ?? "";
    files.push({ path, hash: e.hash, language: detectLanguage(path, head), size: e.size });
  }
  if (files.length > options.maxFiles)
    throw new AnalysisFailed(
      "too_many_files",
      `the repository has ${files.length} files to analyse, more than options.maxFiles (${options.maxFiles}); narrow it with include/exclude`,
    );
  const total = files.reduce((n, f) => n + f.size, 0);
  if (total > options.maxTotalBytes) throw new AnalysisFailed("too_large", `the files to analyse total ${total} bytes, more than options.maxTotalBytes (${options.maxTotalBytes})`);

  // New (blob, language) pairs: contents stored once per repository.
  const have = new Set(stored.map((s) => `${s.hash} ${s.language}`));
  const fresh = new Map<string, { hash: string; language: string; size: number; binary: boolean; content: string | null }>();
  for (const f of files) {
    const key = `${f.hash} ${f.language}`;
    if (have.has(key) || fresh.has(key)) continue;
    const buf = clone.blobs.get(f.hash);
    const binary = buf !== undefined && buf.indexOf(0) >= 0;
    fresh.set(key, { hash: f.hash, language: f.language, size: f.size, binary, content: buf && !binary ? buf.toString("utf8") : null });
  }
  let chunk: typeof fresh extends Map<string, infer V> ? V[] : never = [];
  let bytes = 0;
  // Chunks are stored STORE_IN_FLIGHT at a time, on separate connections: Postgres compresses
  // and writes them on more than one core while the other workers wait for the plan.
  const inFlight = new Set<Promise<void>>();
  let failure: { error: unknown } | undefined;
  const settle = async (all: boolean) => {
    while (inFlight.size >= (all ? 1 : STORE_IN_FLIGHT)) await Promise.race(inFlight);
    if (failure) throw failure.error;
  };
  const flush = async () => {
    if (!chunk.length) return;
    const c = chunk;
    chunk = [];
    bytes = 0;
    await settle(false);
    const stored: Promise<void> = fenced(
      () => sql`select cogo.store_analysis_blobs(${l.taskId}, ${l.attempt}, ${l.workerId}, ${a!.repoId},
      ${c.map((x) => x.hash)}::text[], ${c.map((x) => x.language)}::text[], ${c.map((x) => x.size)}::bigint[],
      ${c.map((x) => (x.binary ? "t" : "f"))}::text[]::boolean[], ${c.map((x) => x.content) as string[]}::text[])`,
      ONCE,
    )
      .then(
        () => {},
        (error: unknown) => void (failure ??= { error }),
      )
      .finally(() => inFlight.delete(stored));
    inFlight.add(stored);
  };
  try {
    for (const b of fresh.values()) {
      chunk.push(b);
      bytes += b.content?.length ?? 0;
      if (bytes >= STORE_CHUNK_BYTES || chunk.length >= STORE_CHUNK_ROWS) await flush();
    }
    await flush();
  } finally {
    await settle(true); // every chunk has landed before the plan (or the first error goes up)
  }
  const t2 = performance.now();

  const [plan] = await fenced(
    () => sql<{ batches: number }[]>`
    select cogo.plan_analysis(${l.taskId}, ${l.attempt}, ${l.workerId}, ${clone.commit}, ${sql.json(files as never)},
                              ${skipped}, ${options.batchBytes}, ${options.batchFiles}) as batches`,
    ONCE,
  );
  const t3 = performance.now();
  if (plan!.batches === 0) await finalize(sql, l, a!.id);
  return {
    reason: `listed ${files.length} files at ${clone.commit.slice(0, 12)}; ${fresh.size} new blobs; ${plan!.batches} batches`,
    analysisId: a!.id,
    commit: clone.commit,
    files: files.length,
    skipped,
    newBlobs: fresh.size,
    batches: plan!.batches,
    timingsMs: { sandbox: Math.round(t1 - t0), store: Math.round(t2 - t1), plan: Math.round(t3 - t2) },
  };
}

/**
 * A plan workspace (files API) as the clone step would list a repository: its files, with git
 * blob hashes so results are shared with any other source of the same contents, at "revision N".
 */
async function readWorkspace(sql: Sql, workspaceId: string, known: Set<string>, maxFileBytes: number): Promise<CloneResult> {
  const [ws] = await sql<{ revision: string }[]>`select revision from public.workspaces where id = ${workspaceId}`;
  if (!ws) throw new AnalysisFailed("workspace_not_found", `workspace ${workspaceId} no longer exists`);
  const rows = await sql<{ path: string; content: Buffer; executable: boolean }[]>`
    select path, content, executable from public.workspace_files where workspace_id = ${workspaceId} order by path`;
  const entries: TreeEntry[] = [];
  const blobs = new Map<string, Buffer>();
  for (const r of rows) {
    const hash = createHash("sha1").update(`blob ${r.content.length}\0`).update(r.content).digest("hex");
    entries.push({ mode: r.executable ? "100755" : "100644", type: "blob", hash, size: r.content.length, path: r.path });
    if (!known.has(hash) && r.content.length <= maxFileBytes) blobs.set(hash, r.content);
  }
  return { commit: `workspace revision ${ws.revision}`, entries, blobs };
}

async function batchStep(sql: Sql, l: Lease, checkStop: () => void) {
  const [bt] = await sql<{ analysisId: string; batch: number; repoId: string }[]>`
    select b.analysis_id, b.batch, a.repo_id from public.analysis_batches b join public.analyses a on a.id = b.analysis_id
     where b.task_id = ${l.taskId}`;
  if (!bt) throw new AnalysisFailed("not_a_batch", `task ${l.taskId} is not an analysis batch`);
  const blobs = await sql<{ hash: string; language: string; content: string | null; binary: boolean }[]>`
    select bl.hash, bl.language, bl.content, bl.is_binary as binary from public.analysis_blobs bl
     where bl.repo_id = ${bt.repoId}
       and (bl.hash, bl.language) in (select f.hash, f.language from public.analysis_files f where f.analysis_id = ${bt.analysisId} and f.batch = ${bt.batch})`;
  // Results go to the database in parts of about RESULTS_PART_BYTES of source, one part in flight:
  // Postgres stores a part (on its own core) while the next is parsed here.
  let results = [];
  let partBytes = 0;
  let storing: Promise<unknown> = Promise.resolve();
  let waitedMs = 0;
  const landed = async () => {
    const w0 = performance.now();
    await storing; // its error, if any, goes up here
    waitedMs += performance.now() - w0;
  };
  const t0 = performance.now();
  let sinceYield = performance.now();
  for (const b of blobs) {
    checkStop();
    const counts = b.content === null ? { code: null, comment: null, blank: null } : countLines(b.content, b.language);
    let parsed = null;
    let parseError: string | null = null;
    let skipped: string | null = null;
    if (b.content !== null && isMinified(b.content, b.language)) {
      skipped = "none:minified";
    } else if (b.content !== null) {
      try {
        parsed = parseSource(b.content, b.language);
      } catch (err) {
        parseError = err instanceof Error ? err.message.slice(0, 500) : String(err);
      }
    }
    results.push({
      hash: b.hash,
      language: b.language,
      ...counts,
      symbols: parsed?.symbols ?? [],
      imports: parsed?.imports ?? [],
      parser: parsed?.parser ?? skipped,
      parseError,
      terms: b.content === null ? "" : searchTerms(b.content),
    });
    partBytes += b.content?.length ?? 0;
    if (partBytes >= RESULTS_PART_BYTES && b !== blobs[blobs.length - 1]) {
      await landed();
      const part = results;
      storing = fenced(() => sql`select cogo.store_analysis_batch_results(${l.taskId}, ${l.attempt}, ${l.workerId}, ${sql.json(part as never)})`, ONCE);
      storing.catch(() => {}); // handled when awaited
      results = [];
      partBytes = 0;
    }
    // Parsing is synchronous: let heartbeats, stores and other tasks run between files.
    if (performance.now() - sinceYield > 50) {
      await new Promise((r) => setImmediate(r));
      sinceYield = performance.now();
    }
  }
  checkStop();
  await landed();
  const t1 = performance.now();
  const [r] = await fenced(
    () => sql<{ last: boolean }[]>`select cogo.complete_analysis_batch(${l.taskId}, ${l.attempt}, ${l.workerId}, ${sql.json(results as never)}) as last`,
    ONCE,
  );
  const t2 = performance.now();
  if (r!.last) await finalize(sql, l, bt.analysisId);
  return {
    reason: `batch ${bt.batch}: ${blobs.length} blobs parsed${r!.last ? "; analysis complete" : ""}`,
    analysisId: bt.analysisId,
    batch: bt.batch,
    blobs: blobs.length,
    // store: the time the batch waited for its results to land (parts mostly land while it parses)
    timingsMs: { parse: Math.round(t1 - t0 - waitedMs), store: Math.round(waitedMs + t2 - t1) },
  };
}

/**
 * Linguist's rule for minified files (it leaves them out of language statistics as generated):
 * JavaScript or CSS whose lines average more than 110 characters. Their symbols are a bundler's
 * output, so they are counted but not parsed.
 */
export function isMinified(content: string, language: string): boolean {
  if (language !== "JavaScript" && language !== "CSS") return false;
  const lines = content.split("\n").length;
  return lines > 0 && content.length / lines > 110;
}

/** Text scanned for search terms per file (snippets still come from the whole stored content). */
const SEARCH_SCAN_CHARS = 1024 * 1024;

/**
 * The distinct words of a file, which Postgres indexes instead of the whole text: tokenizing the
 * full content there costs several times more and adds nothing to a word search.
 */
export function searchTerms(content: string): string {
  return [...new Set(content.slice(0, SEARCH_SCAN_CHARS).match(/[\p{L}\p{N}_]+/gu) ?? [])].join(" ");
}

/** Resolves the import graph over every file of the analysis and completes it. */
async function finalize(sql: Sql, l: Lease, analysisId: string): Promise<void> {
  const files = await sql<FileImports[]>`
    select f.path, f.language, coalesce(b.imports, '[]') as imports
      from public.analysis_files f join public.analyses a on a.id = f.analysis_id
      join public.analysis_blobs b on b.repo_id = a.repo_id and b.hash = f.hash and b.language = f.language
     where f.analysis_id = ${analysisId}`;
  const edges = resolveImports(files);
  await fenced(() => sql`select cogo.finish_analysis(${l.taskId}, ${l.attempt}, ${l.workerId}, ${analysisId}, ${sql.json(edges as never)})`, ONCE);
}
