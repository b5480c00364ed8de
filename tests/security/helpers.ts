// Shared by the security corpus: one worker per file with its own kind and workspace root, a user,
// a runner that sends attacks through the real stack (HTTP API → Postgres → worker → bubblewrap),
// and the checks every attack ends with: the worker is healthy and the host is clean.
import { execFileSync } from "node:child_process";
import { randomUUID } from "node:crypto";
import { existsSync, readdirSync, readFileSync, rmSync, statSync } from "node:fs";
import { afterAll, beforeAll, expect } from "vitest";
import type { ExecuteRequest, TaskCallbacks, TaskResult } from "../../sdk/index.ts";
import type { Worker } from "../../worker/worker.ts";
import { envCgroups } from "../../worker/config.ts";
import { detectCgroups } from "../../worker/sandbox/cgroups.ts";
import { ownerTag } from "../../worker/sandbox/procfs.ts";
import { newUser, startWorker, uniqueKind, waitFor } from "../helpers/env.ts";

/** Slot uids of the corpus's workers (apart from the default range other sessions' workers use). */
export const SECURITY_UID_BASE = 420_000;

/** A trivial task must go from queued to finished within this (the API, claim, sandbox) ... */
export const NORMAL_E2E_MS = 2500;
/**
 * ... and reach the client within this: a final message Realtime delivers late (the shared test
 * stack decodes every test's WAL in one stream) is covered by the SDK's 3 s HTTP poll.
 */
const CLIENT_E2E_MS = NORMAL_E2E_MS + 3000;
/** ... and its sandbox run (bwrap start to exit) within this. */
export const NORMAL_WALL_MS = 700;

type Spec = Omit<ExecuteRequest, "requirements">;
export interface Ran extends TaskResult {
  elapsedMs: number;
}

/**
 * One worker of a kind no other file uses, with a workspace root of its own (so leftovers are
 * ours), and one user. Everything is torn down after the file.
 */
export function securitySuite(prefix: string, options: { concurrency?: number; beforeStart?: () => void; allowNetwork?: boolean } = {}) {
  const kind = uniqueKind(`sec-${prefix}`);
  const root = `/var/tmp/cogo-sec-${kind}`;
  const ctx = {
    kind,
    root,
    worker: undefined as unknown as Worker,
    user: undefined as unknown as Awaited<ReturnType<typeof newUser>>,
    /** Runs `spec` as a task of this file's kind and waits for its final result. */
    async run(spec: Spec, callbacks?: TaskCallbacks): Promise<Ran> {
      const t0 = performance.now();
      const handle = await ctx.user.sandbox.execute({ ...spec, requirements: { kind } }, callbacks);
      const r = await handle.result();
      return { ...r, elapsedMs: performance.now() - t0 };
    },
    /**
     * The next ordinary task on the same worker succeeds at normal speed, and the attack left
     * nothing: no process or cgroup of this process's sandboxes, no task workspace under our root.
     */
    async expectHealthy(): Promise<void> {
      const marker = randomUUID();
      const r = await ctx.run({ command: `echo ok-${marker}`, timeoutMs: 10_000 });
      expect(r).toMatchObject({ status: "succeeded", exitCode: 0, stdout: `ok-${marker}\n`, stderr: "", reason: "exited with code 0" });
      expect(r.task.workerId).toBe(ctx.worker.workerId);
      expect(Date.parse(r.task.finishedAt!) - Date.parse(r.task.createdAt!)).toBeLessThan(NORMAL_E2E_MS);
      expect(r.elapsedMs).toBeLessThan(CLIENT_E2E_MS);
      expect((r.usage as { wallMs: number }).wallMs).toBeLessThan(NORMAL_WALL_MS);
      expect(sandboxProcesses()).toEqual([]);
      expect(leftoverCgroups()).toEqual([]);
      await waitFor(() => taskWorkspaces(root).length === 0, "task workspaces to be removed", 5000);
    },
  };
  beforeAll(async () => {
    options.beforeStart?.();
    // Slot uids apart from the default range: no other session's worker takes a uid we just freed.
    ctx.worker = await startWorker({
      kind,
      concurrency: options.concurrency ?? 2,
      workspaceRoot: root,
      allowNetwork: options.allowNetwork ?? false,
      sandboxUidBase: SECURITY_UID_BASE,
    });
    ctx.user = await newUser();
  });
  afterAll(async () => {
    // Hooks run in reverse: this runs before env.ts stops the worker, so stop it here first.
    await ctx.worker?.stop(0);
    for (const ws of workspacesUnder(root)) {
      try {
        execFileSync("umount", ["--lazy", `${root}/${ws}`], { stdio: "ignore" });
      } catch {
        // not a mount (any more)
      }
    }
    rmSync(root, { recursive: true, force: true });
  });
  return ctx;
}

export function workspacesUnder(root: string): string[] {
  return existsSync(root) ? readdirSync(root).filter((n) => n.startsWith("ws-")) : [];
}

/**
 * Task workspaces still under `root`: anything within two levels owned by a sandbox slot uid (a
 * per-task tmpfs is, and so is a task directory inside a pooled mount that outlives the task).
 */
export function taskWorkspaces(root: string): string[] {
  const out: string[] = [];
  for (const ws of workspacesUnder(root)) {
    const dir = `${root}/${ws}`;
    let inside: string[] = [];
    try {
      inside = readdirSync(dir).map((n) => `${dir}/${n}`);
    } catch {
      // removed while we looked
    }
    for (const p of [dir, ...inside]) {
      const uid = statSync(p, { throwIfNoEntry: false })?.uid;
      if (uid !== undefined && uid >= SECURITY_UID_BASE && uid < SECURITY_UID_BASE + 10_000) out.push(p);
    }
  }
  return out;
}

/** Names of everything the worker in this process creates: cgroups `cogo-sandbox-<tag>-…`. */
const tag = await ownerTag();
// The mode the workers of these tests use (COGO_CGROUPS, as the worker reads it).
const cgroupSupport = await detectCgroups(envCgroups());
const cgroupParents = Object.values(cgroupSupport.usable);

/** For attacks only a memory cgroup stops exactly (the rlimit fallback bounds one process's address space, not tmpfs). */
export function requireMemoryCgroup(): void {
  if (!cgroupSupport.usable.memory) {
    throw new Error(
      `this case needs a memory cgroup (a cgroup v1 memory hierarchy, or the v2 memory controller delegated to the worker's cgroup): ${cgroupSupport.notes.join("; ") || "none found"}`,
    );
  }
}

/**
 * Live host processes (not zombies) of the sandboxes of this process's workers: those in one of
 * their task cgroups (a sandboxed process cannot leave it: no /sys inside). Other sessions on the
 * machine run sandboxes too, so the slot uid alone would not say whose a process is.
 */
export function sandboxProcesses(): { pid: number; cmd: string }[] {
  const out: { pid: number; cmd: string }[] = [];
  for (const name of readdirSync("/proc")) {
    if (!/^\d+$/.test(name)) continue;
    try {
      if (!readFileSync(`/proc/${name}/cgroup`, "utf8").includes(`/cogo-sandbox-${tag}-`)) continue;
      if (/^State:\s+Z/m.test(readFileSync(`/proc/${name}/status`, "utf8"))) continue;
      if (isSpare(name)) continue;
      out.push({ pid: Number(name), cmd: readFileSync(`/proc/${name}/cmdline`, "utf8").replaceAll("\0", " ").trim().slice(0, 200) });
    } catch {
      // exited while we looked
    }
  }
  return out;
}

/**
 * A launcher spare waiting for a task (a fork of launcher.py). Under cgroup v2, which cannot rename
 * a cgroup, spares wait in cgroups already named for a task.
 */
function isSpare(pid: string): boolean {
  // The worker's uid (a task runs as a slot uid and cannot become it) and the launcher's command line.
  const uid = Number(/^Uid:\s+(\d+)/m.exec(readFileSync(`/proc/${pid}/status`, "utf8"))?.[1]);
  return uid === process.getuid!() && readFileSync(`/proc/${pid}/cmdline`, "utf8").includes("/worker/sandbox/launcher.py");
}

/** Task cgroups of this process still present (the worker removes them once they are empty). */
export function leftoverCgroups(): string[] {
  const spareOnly = (dir: string) => {
    try {
      const pids = readFileSync(`${dir}/cgroup.procs`, "utf8").split("\n").filter(Boolean);
      return pids.length > 0 && pids.every(isSpare);
    } catch {
      return false; // changed while we looked: count it, the caller's check will say what it is
    }
  };
  const dirs = [...new Set(cgroupParents)].flatMap((dir) =>
    readdirSync(dir)
      .filter((n) => n.startsWith(`cogo-sandbox-${tag}-`))
      .map((n) => `${dir}/${n}`),
  );
  return dirs.filter((d) => !spareOnly(d));
}

/** Polls while `during` runs; returns the peak number of processes in this process's sandboxes. */
export async function peakSandboxProcesses<T>(during: Promise<T>, everyMs = 20): Promise<{ value: T; peak: number }> {
  let peak = 0;
  let done = false;
  const watcher = (async () => {
    while (!done) {
      peak = Math.max(peak, sandboxProcesses().length);
      await new Promise((r) => setTimeout(r, everyMs));
    }
  })();
  try {
    const value = await during;
    return { value, peak };
  } finally {
    done = true;
    await watcher;
  }
}

/** A host path that must never come to exist: it would mean a payload ran on the host. */
export const pwnedPath = (dir = "/tmp") => `${dir}/cogo-pwned-${randomUUID()}`;

/** A Python script delivered as a workspace file (no shell quoting between us and python). */
export const py = (path: string, source: string) => ({ path, content: source.replace(/^\n/, "") });
