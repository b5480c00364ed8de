import { randomUUID } from 'node:crypto';
import { mkdir, readdir, readFile, rmdir, writeFile } from 'node:fs/promises';
import { basename, dirname, join, relative } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { killQuietly, ownerAlive, ownerTag } from './procfs.ts';

/**
 * What a task cgroup gives us: memory (limit, peak, OOM count), pids (limit, refused forks), cpu
 * (exact CPU time: v1 `cpuacct`, v2 the `cpu.stat` every cgroup has).
 */
export type Controller = 'memory' | 'pids' | 'cpu';
const CONTROLLERS: Controller[] = ['memory', 'pids', 'cpu'];
/** v2 controllers a worker enables for its task cgroups (cpu needs none). */
const V2_WANTED = ['memory', 'pids'];

/** `true`/'auto' picks the hierarchy that has the controllers; 'v1'/'v2' insist; false: rlimits only. */
export type CgroupMode = boolean | 'auto' | 'v1' | 'v2';

export interface CgroupSupport {
  /** What the machine mounts: v1 if any v1 controller hierarchy exists (hybrid counts as v1). */
  version: 'v1' | 'v2' | 'none';
  /** The hierarchy task cgroups are made in, or null (rlimits only). */
  using: 'v1' | 'v2' | null;
  /** Controllers under which we proved we can create a child cgroup, with the parent directory. */
  usable: Partial<Record<Controller, string>>;
  /** Why a controller is not usable, or what setting it up took; shown at worker start. */
  notes: string[];
}

interface Mount {
  root: string;
  point: string;
  fstype: string;
  opts: string[];
}

const detected = new Map<string, Promise<CgroupSupport>>();

/** Detects once per process and mode. */
export function detectCgroups(mode: CgroupMode = 'auto'): Promise<CgroupSupport> {
  const key = String(mode === true ? 'auto' : mode);
  let found = detected.get(key);
  if (!found) {
    found = detect(mode === true ? 'auto' : mode).catch((err: Error) => ({ version: 'none' as const, using: null, usable: {}, notes: [`cgroup setup failed: ${err.message}`] }));
    detected.set(key, found);
  }
  return found;
}

async function detect(mode: Exclude<CgroupMode, true>): Promise<CgroupSupport> {
  const [mountinfo, own] = await Promise.all([readFile('/proc/self/mountinfo', 'utf8').catch(() => ''), readFile('/proc/self/cgroup', 'utf8').catch(() => '')]);
  const mounts: Mount[] = mountinfo.split('\n').flatMap((line) => {
    const [left, right] = line.split(' - ');
    if (!left || !right) return [];
    const l = left.split(' ');
    const [fstype = '', , superOpts = ''] = right.split(' ');
    return [{ root: l[3] ?? '/', point: l[4] ?? '', fstype, opts: superOpts.split(',') }];
  });
  // hierarchy-id:controllers:path (the path itself may contain ':')
  const ownPaths = own
    .split('\n')
    .map((l) => l.split(':'))
    .map(([id = '', ctl = '', ...path]) => [id, ctl, path.join(':')]);
  const v1Mounts = mounts.filter((m) => m.fstype === 'cgroup');
  const v2Mount = mounts.find((m) => m.fstype === 'cgroup2');
  const version = v1Mounts.length > 0 ? 'v1' : v2Mount ? 'v2' : 'none';
  if (mode === false) return { version, using: null, usable: {}, notes: ['cgroups off (option)'] };

  const v1 = mode === 'v2' ? null : await detectV1(v1Mounts, ownPaths);
  // A hybrid machine's v1 hierarchies hold the controllers; v2 is the choice when they do not.
  if (v1 && (v1.usable.memory || v1.usable.pids || mode === 'v1')) {
    return Object.keys(v1.usable).length > 0 ? { version, using: 'v1', ...v1 } : { version, using: null, ...v1 };
  }
  const v2 = await detectV2(v2Mount, ownPaths.find((f) => f[0] === '0' && f[1] === '')?.[2], mode === 'v2');
  if (v2.using) return { version, ...v2 };
  if (v1 && Object.keys(v1.usable).length > 0) return { version, using: 'v1', usable: v1.usable, notes: [...v1.notes, ...v2.notes] };
  return { version, using: null, usable: {}, notes: [...(v1?.notes ?? []), ...v2.notes] };
}

/**
 * `insist`: the operator chose v2, so the worker may move the processes of its cgroup. Otherwise
 * it only does so in the root of its cgroup namespace (a container's own cgroup): a systemd unit
 * that was not delegated gets its controllers reset by systemd later, limits and all.
 */
async function detectV2(mount: Mount | undefined, ownPath: string | undefined, insist: boolean): Promise<Omit<CgroupSupport, 'version'>> {
  const none = (note: string) => ({ using: null, usable: {}, notes: [note] });
  if (!mount || ownPath === undefined) return none('cgroup v2: not mounted');
  const rel = relative(mount.root, ownPath);
  if (rel.startsWith('..')) return none(`cgroup v2: our cgroup ${ownPath} is outside the mounted hierarchy`);
  const v2 = await delegateV2(join(mount.point, rel), V2_WANTED, { move: insist || ownPath === '/' });
  if (!v2.ok) return { using: null, usable: {}, notes: v2.notes };
  const usable: CgroupSupport['usable'] = { cpu: v2.parent };
  for (const c of v2.enabled) usable[c as Controller] = v2.parent;
  await reapStale(v2.parent);
  return { using: 'v2', usable, notes: v2.notes };
}

async function detectV1(v1Mounts: Mount[], ownPaths: string[][]): Promise<Pick<CgroupSupport, 'usable' | 'notes'>> {
  const usable: CgroupSupport['usable'] = {};
  const notes: string[] = [];
  for (const c of CONTROLLERS) {
    const name = c === 'cpu' ? 'cpuacct' : c;
    const mount = v1Mounts.find((m) => m.opts.includes(name));
    const path = ownPaths.find((f) => f[1]?.split(',').includes(name))?.[2];
    if (!mount || path === undefined) continue;
    const rel = relative(mount.root, path);
    if (rel.startsWith('..')) continue;
    const dir = join(mount.point, rel);
    if (!(await canCreateChild(dir))) {
      notes.push(`cgroup v1 ${name}: cannot create a child of ${dir}`);
      continue;
    }
    usable[c] = dir;
    await reapStale(dir);
  }
  return { usable, notes };
}

async function canCreateChild(dir: string): Promise<boolean> {
  const probe = join(dir, `cogo-probe-${randomUUID()}`);
  try {
    await mkdir(probe);
    await rmdir(probe);
    return true;
  } catch {
    return false; // not delegated to us
  }
}

/** Where a worker moves the processes of its cgroup so controllers can be enabled for siblings. */
export const V2_LEAF = 'cogo-workers';

/**
 * Makes `own` (a cgroup v2 directory we run in) a parent for task cgroups with the `want`
 * controllers that are delegated to it. v2 lets a cgroup hand controllers to its children only
 * while it has no processes of its own (the root cgroup excepted), so when enabling one fails
 * with EBUSY, every process of `own` (this worker and whatever shares its cgroup, as systemd's
 * Delegate= or a container's init expects) is moved into the leaf `own/cogo-workers`, and task
 * cgroups become its siblings. A worker started in that leaf uses its parent.
 */
export async function delegateV2(own: string, want: string[], options: { move: boolean }): Promise<{ ok: boolean; parent: string; enabled: string[]; notes: string[] }> {
  const parent = basename(own) === V2_LEAF ? dirname(own) : own;
  const notes: string[] = [];
  const words = async (file: string) => (await readFile(join(parent, file), 'utf8').catch(() => '')).split(/\s+/).filter(Boolean);
  if (!(await canCreateChild(parent))) return { ok: false, parent, enabled: [], notes: [`cgroup v2: cannot create a child of ${parent} (not delegated to this user)`] };
  const available = await words('cgroup.controllers');
  for (const c of want) if (!available.includes(c)) notes.push(`cgroup v2 ${c}: not delegated to ${parent}`);
  let moved = 0;
  for (const c of want.filter((w) => available.includes(w))) {
    if ((await words('cgroup.subtree_control')).includes(c)) continue;
    try {
      await enable(parent, c);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EBUSY') {
        notes.push(`cgroup v2 ${c}: cannot enable in ${parent}: ${(err as Error).message}`);
        continue;
      }
      if (!options.move) {
        notes.push(`cgroup v2 ${c}: ${parent} has processes of its own; delegate it (systemd Delegate=yes) and start the worker with --cgroups v2 to move them into ${V2_LEAF}/`);
        continue;
      }
      moved += await moveProcesses(parent, join(parent, V2_LEAF));
      await enable(parent, c).catch((e: Error) => notes.push(`cgroup v2 ${c}: cannot enable in ${parent}: ${e.message}`));
    }
  }
  if (moved > 0) notes.push(`cgroup v2: moved ${moved} process(es) of ${parent} into ${V2_LEAF}/ to enable controllers`);
  const enabled = await words('cgroup.subtree_control');
  return { ok: true, parent, enabled: want.filter((c) => enabled.includes(c)), notes };
}

const enable = (parent: string, c: string) => writeFile(join(parent, 'cgroup.subtree_control'), `+${c}`);

/** Moves every process of `from` into `to` (made if needed); processes forked meanwhile are caught by the next round. */
async function moveProcesses(from: string, to: string): Promise<number> {
  await mkdir(to, { recursive: true });
  let moved = 0;
  for (let round = 0; round < 5; round++) {
    const pids = (await readFile(join(from, 'cgroup.procs'), 'utf8')).split('\n').filter(Boolean);
    if (pids.length === 0) break;
    for (const pid of pids) {
      // One write per process (the kernel takes one pid per write); an exited one is ESRCH.
      if (
        await writeFile(join(to, 'cgroup.procs'), pid).then(
          () => true,
          () => false,
        )
      )
        moved++;
    }
  }
  return moved;
}

/**
 * Removes task cgroups a crashed worker left; rmdir only succeeds on empty ones. A persistent
 * sandbox's cgroup has leaves (`init/`, `cmd-*`), which go first.
 */
async function reapStale(parent: string): Promise<void> {
  for (const name of await readdir(parent).catch(() => [])) {
    const tag = /^cogo-(?:sandbox|spare)-(\d+-\d+)-/.exec(name)?.[1];
    if (!tag || (await ownerAlive(tag))) continue;
    const dir = join(parent, name);
    for (const leaf of await readdir(dir, { withFileTypes: true }).catch(() => [])) if (leaf.isDirectory()) await rmdir(join(dir, leaf.name)).catch(() => {});
    await rmdir(dir).catch(() => {});
  }
}

/**
 * How the launcher makes a task's cgroups: one directory per usable controller under these
 * parents (one for all under v2), named with this worker's tag (so a crashed worker's are
 * reaped), with these limits.
 */
export async function cgroupRequest(support: CgroupSupport, limits: { memoryBytes: number; pids: number }) {
  const v2 = support.using === 'v2';
  const limitFiles: Record<string, number> = {};
  if (support.usable.memory) {
    limitFiles[v2 ? 'memory.max' : 'memory.limit_in_bytes'] = limits.memoryBytes;
    // No swap escape. v1 limits memory+swap, v2 swap alone.
    limitFiles[v2 ? 'memory.swap.max' : 'memory.memsw.limit_in_bytes'] = v2 ? 0 : limits.memoryBytes;
  }
  if (support.usable.pids) limitFiles['pids.max'] = limits.pids;
  const tag = await ownerTag();
  return {
    parents: { ...support.usable },
    prefix: `cogo-sandbox-${tag}-`,
    // v1 spares wait apart and are renamed when a task gets them; v2 cannot rename a cgroup.
    sparePrefix: v2 ? `cogo-sandbox-${tag}-` : `cogo-spare-${tag}-`,
    rename: !v2,
    limits: limitFiles,
    // Absent without swap accounting.
    optional: ['memory.memsw.limit_in_bytes', 'memory.swap.max'],
  };
}

/** One task's cgroups: one directory per usable controller (v1) or one for all (v2), joined before bwrap starts. */
export class TaskCgroup {
  private constructor(
    readonly version: 'v1' | 'v2',
    private readonly dirs: Partial<Record<Controller, string>>,
  ) {}

  /** The cgroups the launcher made for one task (a spare it forked into them ahead of time). */
  static adopt(version: 'v1' | 'v2', dirs: Partial<Record<Controller, string>>): TaskCgroup {
    return new TaskCgroup(version, { ...dirs });
  }

  get controllers(): Controller[] {
    return CONTROLLERS.filter((c) => this.dirs[c]);
  }

  get directories(): Readonly<Partial<Record<Controller, string>>> {
    return { ...this.dirs };
  }

  private get unique(): string[] {
    return [...new Set(Object.values(this.dirs))];
  }

  private read(c: Controller, file: string): Promise<string | null> {
    const dir = this.dirs[c];
    return dir ? readFile(join(dir, file), 'utf8').catch(() => null) : Promise.resolve(null);
  }

  async pids(): Promise<number[]> {
    const all = new Set<number>();
    const texts = await Promise.all(this.unique.map((d) => readFile(join(d, 'cgroup.procs'), 'utf8').catch(() => '')));
    for (const text of texts) for (const p of text.split('\n')) if (p) all.add(Number(p));
    return [...all];
  }

  /** SIGKILLs members until none is left (v2: `cgroup.kill` first, Linux ≥ 5.14); false if some survived `timeoutMs`. */
  async killAll(timeoutMs = 3000): Promise<boolean> {
    if (this.version === 'v2') await writeFile(join(this.unique[0]!, 'cgroup.kill'), '1').catch(() => {});
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const pids = await this.pids();
      if (pids.length === 0) return true;
      if (Date.now() > deadline) return false;
      for (const p of pids) killQuietly(p);
      await sleep(10);
    }
  }

  /** CPU user/system ms; null without the cpu controller. */
  async cpu(): Promise<{ userMs: number; systemMs: number } | null> {
    if (this.version === 'v2') {
      const stat = await this.read('cpu', 'cpu.stat');
      if (!stat) return null;
      return { userMs: statField(stat, 'user_usec') / 1e3, systemMs: statField(stat, 'system_usec') / 1e3 };
    }
    const [user, sys] = await Promise.all([this.read('cpu', 'cpuacct.usage_user'), this.read('cpu', 'cpuacct.usage_sys')]);
    return user === null || sys === null ? null : { userMs: Number(user) / 1e6, systemMs: Number(sys) / 1e6 };
  }

  /** Total CPU ms (user + system) so far: one read, for polling the limit. */
  async cpuTotalMs(): Promise<number | null> {
    if (this.version === 'v2') {
      const stat = await this.read('cpu', 'cpu.stat');
      return stat === null ? null : statField(stat, 'usage_usec') / 1e3;
    }
    const usage = await this.read('cpu', 'cpuacct.usage');
    return usage === null ? null : Number(usage) / 1e6;
  }

  /** Memory in use now: anonymous + shmem (tmpfs files are RAM the task holds); null without the controller. */
  async memoryBytes(): Promise<number | null> {
    const stat = await this.read('memory', 'memory.stat');
    if (stat === null) return null;
    const sum = this.version === 'v2' ? statField(stat, 'anon') + statField(stat, 'shmem') : statField(stat, 'total_rss') + statField(stat, 'total_shmem');
    return Number.isFinite(sum) ? sum : null;
  }

  /** Memory charged now (processes, page cache, tmpfs); null without the controller. */
  async memoryCurrentBytes(): Promise<number | null> {
    const n = await this.read('memory', this.version === 'v2' ? 'memory.current' : 'memory.usage_in_bytes');
    return n === null ? null : Number(n);
  }

  /** Peak memory charged (v2: `memory.peak`, Linux ≥ 5.19); null if unknown. */
  async peakMemoryBytes(): Promise<number | null> {
    const peak = await this.read('memory', this.version === 'v2' ? 'memory.peak' : 'memory.max_usage_in_bytes');
    return peak === null ? null : Number(peak);
  }

  /** Processes + threads in the cgroup; null without the pids controller. */
  async tasks(): Promise<number | null> {
    const n = await this.read('pids', 'pids.current');
    return n === null ? null : Number(n);
  }

  /** Processes the kernel OOM-killed in this cgroup (v1 needs Linux ≥ 4.13), or null without one. */
  async oomKills(): Promise<number | null> {
    const text = await this.read('memory', this.version === 'v2' ? 'memory.events' : 'memory.oom_control');
    const n = text === null ? NaN : statField(text, 'oom_kill');
    return Number.isFinite(n) ? n : null;
  }

  /** Forks refused at the pids limit; 0 without the controller. */
  async forkFailures(): Promise<number> {
    const n = statField((await this.read('pids', 'pids.events')) ?? '', 'max');
    return Number.isFinite(n) ? n : 0;
  }

  /** Removes the (empty) cgroups; a busy one is retried for a second, then left behind. */
  async remove(): Promise<void> {
    await Promise.all(
      this.unique.map(async (dir) => {
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

/** `key value` lines (memory.stat, cpu.stat, memory.events, pids.events); NaN if absent. */
export function statField(text: string, key: string): number {
  const m = new RegExp(`^${key} (\\d+)$`, 'm').exec(text);
  return m ? Number(m[1]) : NaN;
}
