// Reads one task's process tree from /proc (and its cgroups when it has them): CPU, memory,
// processes, I/O counters, and, when the task is quiet, what each thread is waiting in.
import { readFile, readdir, readlink } from "node:fs/promises";
import type { TaskCgroup } from "../sandbox/cgroups.ts";
import { processTree } from "../sandbox/procfs.ts";

const TICK_MS = 10; // USER_HZ is 100 everywhere we run
const PAGE_SIZE = 4096;

/** The syscalls that tell what a quiet thread waits for (numbers per architecture). */
const SYSCALLS = {
  x64: { read: [0, 19, 17], write: [1, 20, 18], poll: [7, 23, 270, 271], epoll: [232, 281, 441], lock: [202, 72, 73], child: [61, 247] },
  arm64: { read: [63, 65, 67], write: [64, 66, 68], poll: [72, 73], epoll: [22, 441], lock: [98, 25, 32], child: [260, 95] },
}[process.arch === "arm64" ? "arm64" : "x64"];

export interface ProcessInfo {
  pid: number;
  comm: string;
  state: string;
  threads: number;
  cpuMs: number;
  rssBytes: number;
  /** rchar + wchar: bytes read and written through syscalls (files, pipes, sockets). */
  ioBytes: number;
  startTime: number;
}

export interface ThreadWait {
  pid: number;
  tid: number;
  comm: string;
  state: string;
  wchan: string;
  syscall: number | null;
  /** What the wait is about, from the syscall and its descriptor. */
  kind: "stdin" | "output" | "lock" | "child" | "other" | "running";
}

export interface TreeSample {
  at: number;
  /** The task's processes (bwrap's own two are left out). */
  processes: ProcessInfo[];
  /** Total CPU of the task so far (cgroup if any, else the live tree's own + reaped children's). */
  cpuMs: number;
  /** Resident memory: cgroup rss + shmem (tmpfs files count: they are RAM) or the tree's RSS sum. */
  memoryBytes: number;
  /** Processes + threads (pids cgroup, else summed from /proc). */
  tasks: number;
  oomKills: number;
  /** Times a fork was refused at the pids limit. */
  forkFailures: number;
}

const readText = (path: string) => readFile(path, "utf8").catch(() => null);

async function readProcess(pid: number): Promise<ProcessInfo | null> {
  const [stat, io] = await Promise.all([readText(`/proc/${pid}/stat`), readText(`/proc/${pid}/io`)]);
  if (!stat) return null;
  const close = stat.lastIndexOf(")");
  const comm = stat.slice(stat.indexOf("(") + 1, close);
  const f = stat.slice(close + 2).split(" ");
  const n = (field: number) => Number(f[field - 3]);
  const io2 = io ? Number(/rchar: (\d+)/.exec(io)?.[1] ?? 0) + Number(/wchar: (\d+)/.exec(io)?.[1] ?? 0) : 0;
  return {
    pid,
    comm,
    state: f[0] ?? "?",
    threads: n(20),
    cpuMs: (n(14) + n(15) + n(16) + n(17)) * TICK_MS,
    rssBytes: n(24) * PAGE_SIZE,
    ioBytes: io2,
    startTime: n(22),
  };
}

export class TreeSampler {
  private peakProcfsCpu = 0;

  constructor(
    private readonly rootPid: number,
    private readonly cgroup: TaskCgroup | null,
    /** Link target of the task's stdin pipe as seen in /proc (e.g. "pipe:[123]"), or null if stdin is closed. */
    readonly stdinLink: string | null,
    /** Link targets of the task's stdout and stderr pipes (the worker reads their other ends). */
    readonly outputLinks: string[] = [],
  ) {}

  /** The stdin pipe's identity, read from the sandbox's outer process (it holds fd 0 for the task). */
  static async stdinLinkOf(pid: number, fd = 0): Promise<string | null> {
    const link = await readlink(`/proc/${pid}/fd/${fd}`).catch(() => null);
    // Node gives a child a socketpair for stdio "pipe"; either way the link names that one object.
    return link?.startsWith("pipe:") || link?.startsWith("socket:") ? link : null;
  }

  async sample(): Promise<TreeSample> {
    const at = performance.now();
    const pids = await processTree(this.rootPid);
    const all = (await Promise.all(pids.map(readProcess))).filter((p) => p !== null);
    const processes = all.filter((p) => p.comm !== "bwrap");
    const cg = this.cgroup;
    const [cgCpu, cgMemory, cgTasks, oomKills, forkFailures] = await Promise.all([
      cg?.cpuTotalMs().catch(() => null) ?? null,
      cg?.memoryBytes().catch(() => null) ?? null,
      cg?.tasks().catch(() => null) ?? null,
      cg?.oomKills().catch(() => null) ?? null,
      cg?.forkFailures().catch(() => 0) ?? 0,
    ]);
    const procfsCpu = all.reduce((s, p) => s + p.cpuMs, 0);
    this.peakProcfsCpu = Math.max(this.peakProcfsCpu, procfsCpu);
    return {
      at,
      processes,
      cpuMs: cgCpu ?? this.peakProcfsCpu,
      memoryBytes: cgMemory ?? processes.reduce((s, p) => s + p.rssBytes, 0),
      // The cgroup also counts bwrap's two helpers.
      tasks: cgTasks !== null ? Math.max(0, cgTasks - 2) : processes.reduce((s, p) => s + p.threads, 0),
      oomKills: oomKills ?? 0,
      forkFailures,
    };
  }

  /** What every thread of the task is doing; only read when the task is quiet (it costs a few files per thread). */
  async waits(processes: ProcessInfo[], limit = 64): Promise<ThreadWait[]> {
    const out: ThreadWait[] = [];
    for (const p of processes.slice(0, limit)) {
      const tids = await readdir(`/proc/${p.pid}/task`).catch(() => [] as string[]);
      for (const tid of tids.slice(0, limit)) {
        const base = `/proc/${p.pid}/task/${tid}`;
        const [stat, wchan, syscall] = await Promise.all([readText(`${base}/stat`), readText(`${base}/wchan`), readText(`${base}/syscall`)]);
        if (!stat) continue;
        const state = stat.slice(stat.lastIndexOf(")") + 2).split(" ")[0] ?? "?";
        const fields = syscall?.trim().split(" ") ?? [];
        const nr = fields[0] === "running" || fields.length === 0 ? null : Number(fields[0]);
        out.push({
          pid: p.pid,
          tid: Number(tid),
          comm: p.comm,
          state,
          wchan: wchan && wchan !== "0" ? wchan : "",
          syscall: nr,
          kind: state === "R" ? "running" : await this.waitKind(p.pid, nr, fields[1], fields[4]),
        });
      }
    }
    return out;
  }

  private async waitKind(pid: number, nr: number | null, arg0: string | undefined, arg3: string | undefined): Promise<ThreadWait["kind"]> {
    if (nr === null) return "other";
    // A futex wait with a timeout (arg 3) wakes by itself (Python's Event.wait(5), a Go timer):
    // not a lock that only another thread can release.
    if (nr === SYSCALLS.lock[0] && arg3 !== undefined && Number.parseInt(arg3, 16) !== 0) return "other";
    if (SYSCALLS.lock.includes(nr)) return "lock";
    if (SYSCALLS.child.includes(nr)) return "child";
    const fd = arg0 ? Number.parseInt(arg0, 16) : NaN;
    if (SYSCALLS.write.includes(nr)) {
      // Blocked writing output the worker has not read yet: back-pressure, not a stall.
      const link = await readlink(`/proc/${pid}/fd/${fd}`).catch(() => null);
      return link !== null && this.outputLinks.includes(link) ? "output" : "other";
    }
    if (!this.stdinLink) return "other";
    if (SYSCALLS.read.includes(nr)) {
      return (await readlink(`/proc/${pid}/fd/${fd}`).catch(() => null)) === this.stdinLink ? "stdin" : "other";
    }
    if (SYSCALLS.epoll.includes(nr)) {
      // The epoll set lists the descriptors it watches ("tfd: N").
      const info = (await readText(`/proc/${pid}/fdinfo/${fd}`)) ?? "";
      for (const m of info.matchAll(/^tfd:\s+(\d+)/gm)) {
        if ((await readlink(`/proc/${pid}/fd/${m[1]}`).catch(() => null)) === this.stdinLink) return "stdin";
      }
      return "other";
    }
    if (SYSCALLS.poll.includes(nr)) {
      // poll/select arguments live in the process's memory; a poller holding our stdin pipe counts.
      return (await readlink(`/proc/${pid}/fd/0`).catch(() => null)) === this.stdinLink ? "stdin" : "other";
    }
    return "other";
  }
}
