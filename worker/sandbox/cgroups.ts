import { randomUUID } from 'node:crypto';
import { mkdir, readdir, readFile, rmdir } from 'node:fs/promises';
import { join, relative } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { killQuietly, ownerAlive, ownerTag } from './procfs.ts';

/** The v1 controllers we use: memory (limit, peak, OOM count), pids (limit), cpuacct (CPU time). */
export type Controller = 'memory' | 'pids' | 'cpuacct';
const CONTROLLERS: Controller[] = ['memory', 'pids', 'cpuacct'];

export interface CgroupSupport {
  /** What the machine mounts: v1 if any v1 controller hierarchy exists (hybrid counts as v1). */
  version: 'v1' | 'v2' | 'none';
  /** Controllers under which we proved we can create a child cgroup, with our own cgroup's directory. */
  usable: Partial<Record<Controller, string>>;
}

let detected: Promise<CgroupSupport> | undefined;

/**
 * Detects once per process. Only cgroup v1 child creation is implemented: under v2 a worker would
 * first have to move itself into a leaf cgroup to enable controllers for siblings, which we do not
 * do, so v2 machines use the rlimit fallback.
 */
export function detectCgroups(): Promise<CgroupSupport> {
  detected ??= detect();
  return detected;
}

async function detect(): Promise<CgroupSupport> {
  const [mountinfo, own] = await Promise.all([
    readFile('/proc/self/mountinfo', 'utf8').catch(() => ''),
    readFile('/proc/self/cgroup', 'utf8').catch(() => ''),
  ]);
  const mounts = mountinfo.split('\n').flatMap((line) => {
    const [left, right] = line.split(' - ');
    if (!left || !right) return [];
    const l = left.split(' ');
    const [fstype, , superOpts = ''] = right.split(' ');
    return [{ root: l[3] ?? '/', point: l[4] ?? '', fstype, opts: superOpts.split(',') }];
  });
  const v1 = mounts.filter((m) => m.fstype === 'cgroup');
  const version = v1.length > 0 ? 'v1' : mounts.some((m) => m.fstype === 'cgroup2') ? 'v2' : 'none';
  const usable: CgroupSupport['usable'] = {};
  for (const c of CONTROLLERS) {
    const mount = v1.find((m) => m.opts.includes(c));
    const path = own.split('\n').map((l) => l.split(':')).find((f) => f[1]?.split(',').includes(c))?.[2];
    if (!mount || path === undefined) continue;
    const rel = relative(mount.root, path);
    if (rel.startsWith('..')) continue;
    const dir = join(mount.point, rel);
    const probe = join(dir, `cogo-probe-${randomUUID()}`);
    try {
      await mkdir(probe);
      await rmdir(probe);
      usable[c] = dir;
    } catch {
      continue; // not delegated to us
    }
    await reapStale(dir);
  }
  return { version, usable };
}

/** Removes task cgroups a crashed worker left; rmdir only succeeds on empty ones. */
async function reapStale(parent: string): Promise<void> {
  for (const name of await readdir(parent).catch(() => [])) {
    const tag = /^cogo-(?:sandbox|spare)-(\d+-\d+)-/.exec(name)?.[1];
    if (tag && !(await ownerAlive(tag))) await rmdir(join(parent, name)).catch(() => {});
  }
}

/**
 * How the launcher makes a task's cgroups: one directory per usable controller under these
 * parents, named with this worker's tag (so a crashed worker's are reaped), with these limits.
 */
export async function cgroupRequest(support: CgroupSupport, limits: { memoryBytes: number; pids: number }) {
  const limitFiles: Record<string, number> = {};
  if (support.usable.memory) {
    limitFiles['memory.limit_in_bytes'] = limits.memoryBytes;
    // No swap escape; skipped when the kernel has no swap accounting.
    limitFiles['memory.memsw.limit_in_bytes'] = limits.memoryBytes;
  }
  if (support.usable.pids) limitFiles['pids.max'] = limits.pids;
  const tag = await ownerTag();
  // Spares waiting in the launcher are named apart and renamed when a task gets them.
  return { parents: { ...support.usable }, prefix: `cogo-sandbox-${tag}-`, sparePrefix: `cogo-spare-${tag}-`, limits: limitFiles };
}

/** One task's cgroups: one directory per usable controller, joined before bwrap starts. */
export class TaskCgroup {
  private constructor(private readonly dirs: Partial<Record<Controller, string>>) {}

  /** The cgroups the launcher made for one task (a spare it forked into them ahead of time). */
  static adopt(dirs: Partial<Record<Controller, string>>): TaskCgroup {
    return new TaskCgroup({ ...dirs });
  }

  get controllers(): Controller[] {
    return CONTROLLERS.filter((c) => this.dirs[c]);
  }

  get directories(): Readonly<Partial<Record<Controller, string>>> {
    return { ...this.dirs };
  }

  get procsFiles(): string[] {
    return Object.values(this.dirs).map((d) => join(d, 'cgroup.procs'));
  }

  async pids(): Promise<number[]> {
    const all = new Set<number>();
    const texts = await Promise.all(this.procsFiles.map((f) => readFile(f, 'utf8').catch(() => '')));
    for (const text of texts) for (const p of text.split('\n')) if (p) all.add(Number(p));
    return [...all];
  }

  /** SIGKILLs members until none is left; false if some survived `timeoutMs`. */
  async killAll(timeoutMs = 3000): Promise<boolean> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const pids = await this.pids();
      if (pids.length === 0) return true;
      if (Date.now() > deadline) return false;
      for (const p of pids) killQuietly(p);
      await sleep(10);
    }
  }

  async cpu(): Promise<{ userMs: number; systemMs: number } | null> {
    if (!this.dirs.cpuacct) return null;
    const read = async (f: string) => Number(await readFile(join(this.dirs.cpuacct!, f), 'utf8')) / 1e6;
    const [userMs, systemMs] = await Promise.all([read('cpuacct.usage_user'), read('cpuacct.usage_sys')]);
    return { userMs, systemMs };
  }

  /** Total CPU ms (user + system) so far: one read, for polling the limit. */
  async cpuTotalMs(): Promise<number | null> {
    if (!this.dirs.cpuacct) return null;
    return Number(await readFile(join(this.dirs.cpuacct, 'cpuacct.usage'), 'utf8')) / 1e6;
  }

  async peakMemoryBytes(): Promise<number | null> {
    if (!this.dirs.memory) return null;
    return Number(await readFile(join(this.dirs.memory, 'memory.max_usage_in_bytes'), 'utf8'));
  }

  /** Processes the kernel OOM-killed in this cgroup (needs Linux ≥ 4.13), or null without one. */
  async oomKills(): Promise<number | null> {
    if (!this.dirs.memory) return null;
    const text = await readFile(join(this.dirs.memory, 'memory.oom_control'), 'utf8');
    const m = /^oom_kill (\d+)$/m.exec(text);
    return m ? Number(m[1]) : null;
  }

  /** Removes the (empty) cgroups; a busy one is retried for a second, then left behind. */
  async remove(): Promise<void> {
    await Promise.all(
      Object.values(this.dirs).map(async (dir) => {
        for (let i = 0; i < 20; i++) {
          try {
            return await rmdir(dir);
          } catch (err) {
            if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
            await sleep(50);
          }
        }
      }),
    );
  }
}
