import { randomUUID } from 'node:crypto';
import { chown, mkdir, readdir, readFile, rmdir, writeFile } from 'node:fs/promises';
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
    const tag = /^cogo-sandbox-(\d+-\d+)-/.exec(name)?.[1];
    if (tag && !(await ownerAlive(tag))) await rmdir(join(parent, name)).catch(() => {});
  }
}

/** One task's cgroups: one directory per usable controller, joined by the launcher before bwrap. */
export class TaskCgroup {
  private constructor(private readonly dirs: Partial<Record<Controller, string>>) {}

  /**
   * Creates the task's cgroups and hands their cgroup.procs to `owner`, so the launcher can move
   * itself in after dropping root (v1 lets a process move itself into a cgroup whose procs file it
   * may write). The sandbox cannot reach them: /sys is not mounted inside.
   */
  static async create(
    support: CgroupSupport,
    limits: { memoryBytes: number; pids: number },
    owner: { uid: number; gid: number } | null,
  ): Promise<TaskCgroup> {
    const name = `cogo-sandbox-${await ownerTag()}-${randomUUID()}`;
    const cg = new TaskCgroup({});
    try {
      for (const c of CONTROLLERS) {
        const parent = support.usable[c];
        if (!parent) continue;
        const dir = join(parent, name);
        await mkdir(dir);
        cg.dirs[c] = dir;
        if (owner) await chown(join(dir, 'cgroup.procs'), owner.uid, owner.gid);
      }
      if (cg.dirs.memory) {
        await writeFile(join(cg.dirs.memory, 'memory.limit_in_bytes'), String(limits.memoryBytes));
        // No swap escape; absent when the kernel has no swap accounting.
        await writeFile(join(cg.dirs.memory, 'memory.memsw.limit_in_bytes'), String(limits.memoryBytes)).catch(() => {});
      }
      if (cg.dirs.pids) await writeFile(join(cg.dirs.pids, 'pids.max'), String(limits.pids));
    } catch (err) {
      await cg.remove();
      throw err;
    }
    return cg;
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
    for (const f of this.procsFiles) {
      const text = await readFile(f, 'utf8').catch(() => '');
      for (const p of text.split('\n')) if (p) all.add(Number(p));
    }
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
    return { userMs: await read('cpuacct.usage_user'), systemMs: await read('cpuacct.usage_sys') };
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
    for (const c of CONTROLLERS) {
      const dir = this.dirs[c];
      if (!dir) continue;
      for (let i = 0; i < 20; i++) {
        try {
          await rmdir(dir);
          break;
        } catch (err) {
          if ((err as NodeJS.ErrnoException).code === 'ENOENT') break;
          await sleep(50);
        }
      }
    }
  }
}
