import type { TaskCgroup } from './cgroups.ts';
import { processTree, readStat } from './procfs.ts';

export interface UsageFigures {
  cpuUserMs: number;
  cpuSystemMs: number;
  /** Peak memory charged to the memory cgroup, else peak of the summed RSS of the tree. */
  maxRssBytes: number;
  /** Largest address space one process reached (sampled); what RLIMIT_AS applies to. */
  maxVsizeBytes: number;
}

/**
 * CPU and memory of one task. The cgroup counters are exact; without them the process tree is
 * sampled from /proc (Node's child_process gives no rusage), so work done between the last sample
 * and exit, and processes living shorter than a poll interval, are missed.
 */
export class UsageMonitor {
  private readonly sampled: UsageFigures = { cpuUserMs: 0, cpuSystemMs: 0, maxRssBytes: 0, maxVsizeBytes: 0 };
  /** Whether the memory cgroup records its peak (null until the first sample asks). */
  private hasPeak: boolean | null = null;

  constructor(
    private readonly rootPid: number,
    private readonly cgroup: TaskCgroup | null,
  ) {}

  /**
   * Whether the cgroup alone gives exact CPU and peak memory, so sampling only serves the CPU
   * limit check (known after the first sample).
   */
  get exact(): boolean {
    return !this.needsProcfs && this.hasPeak === true;
  }

  private get needsProcfs(): boolean {
    return !this.cgroup?.controllers.includes('cpu') || !this.cgroup.controllers.includes('memory');
  }

  /** Updates the figures while the task runs; returns total CPU ms so far. */
  async sample(): Promise<number> {
    if (this.needsProcfs) {
      let user = 0;
      let system = 0;
      let rss = 0;
      for (const pid of await processTree(this.rootPid)) {
        const st = await readStat(pid);
        if (!st) continue;
        user += st.userMs + st.childUserMs;
        system += st.systemMs + st.childSystemMs;
        rss += st.rssBytes;
        this.sampled.maxVsizeBytes = Math.max(this.sampled.maxVsizeBytes, st.vsizeBytes);
      }
      // A reaped process's CPU moves into its parent's child counters, so totals only grow
      // unless the sample raced an exit; keep the highest.
      if (user + system > this.sampled.cpuUserMs + this.sampled.cpuSystemMs) {
        this.sampled.cpuUserMs = user;
        this.sampled.cpuSystemMs = system;
      }
      this.sampled.maxRssBytes = Math.max(this.sampled.maxRssBytes, rss);
    } else if (this.cgroup) {
      this.hasPeak ??= (await this.cgroup.peakMemoryBytes()) !== null;
      // v2 before Linux 5.19 keeps no peak: track the highest charge seen.
      if (!this.hasPeak) this.sampled.maxRssBytes = Math.max(this.sampled.maxRssBytes, (await this.cgroup.memoryCurrentBytes()) ?? 0);
    }
    return (await this.cgroup?.cpuTotalMs()) ?? this.sampled.cpuUserMs + this.sampled.cpuSystemMs;
  }

  /** Final figures; call once the task's processes are gone and before its cgroup is removed. */
  async final(): Promise<UsageFigures> {
    const out = { ...this.sampled };
    const [cpu, peak] = await Promise.all([this.cgroup?.cpu().catch(() => null), this.cgroup?.peakMemoryBytes().catch(() => null)]);
    if (cpu) {
      out.cpuUserMs = cpu.userMs;
      out.cpuSystemMs = cpu.systemMs;
    }
    if (peak != null) out.maxRssBytes = peak;
    return out;
  }
}
