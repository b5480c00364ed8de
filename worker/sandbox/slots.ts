import { randomUUID } from 'node:crypto';
import { link, mkdir, readFile, unlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { SandboxBusy, SandboxUnavailable } from './errors.ts';
import { killQuietly, ownerAlive, ownerTag, pidsOfUid } from './procfs.ts';

/**
 * A host uid (and gid) owned by one running sandbox. Separate uids keep RLIMIT_NPROC per task and
 * stop tasks from touching each other's files or processes. Ownership is a lock file per uid in a
 * machine-wide directory, so several workers on one machine never share a uid.
 */
export interface Slot {
  uid: number;
  gid: number;
  /**
   * Frees the slot. With `sweep`, first kills anything still running as the uid and keeps the slot
   * (quarantined) if something survives; skip it only when an emptied cgroup already proved the
   * task gone.
   */
  release(sweep: boolean): Promise<boolean>;
}

export interface SlotConfig {
  uidBase: number;
  gidBase: number;
  slots: number;
  slotDir: string;
  /** How long to wait for a slot when all are taken. */
  waitMs: number;
}

const checkedRanges = new Set<string>();
const madeDirs = new Set<string>();
/** Lock files this process holds or is taking: skipped without touching the disk. */
const held = new Set<string>();

/**
 * Takes a free slot; when every one is in use (other workers of the machine share the range),
 * waits for one up to `cfg.waitMs`, then throws SandboxBusy.
 */
export async function acquireSlot(cfg: SlotConfig): Promise<Slot> {
  await checkRangeIsUnused(cfg);
  if (!madeDirs.has(cfg.slotDir)) {
    await mkdir(cfg.slotDir, { recursive: true, mode: 0o700 });
    madeDirs.add(cfg.slotDir);
  }
  const deadline = Date.now() + cfg.waitMs;
  for (let delay = 20; ; delay = Math.min(delay * 2, 500)) {
    const slot = await tryAcquire(cfg);
    if (slot) return slot;
    if (Date.now() + delay > deadline) throw new SandboxBusy(cfg.slots);
    await sleep(delay);
  }
}

/** Where the next scan of a slot range starts: past the slot taken last, where free ones likely are. */
const cursors = new Map<string, number>();

async function tryAcquire(cfg: SlotConfig): Promise<Slot | null> {
  const me = await ownerTag();
  const range = `${cfg.slotDir}:${cfg.uidBase}:${cfg.slots}`;
  const start = cursors.get(range) ?? 0;
  for (let n = 0; n < cfg.slots; n++) {
    const i = (start + n) % cfg.slots;
    const uid = cfg.uidBase + i;
    const lock = join(cfg.slotDir, String(uid));
    if (held.has(lock)) continue;
    // Reserved in memory before the disk is asked, so concurrent starts of this process try
    // different slots instead of all contending for the first free one.
    held.add(lock);
    let locked = false;
    try {
      locked = (await tryLock(lock, me)) || ((await isStale(lock)) && (await reclaim(lock, uid, me)));
    } finally {
      if (!locked) held.delete(lock);
    }
    if (!locked) continue;
    cursors.set(range, (i + 1) % cfg.slots);
    return {
      uid,
      gid: cfg.gidBase + i,
      release: async (sweep) => {
        if (sweep && !(await killUid(uid))) return false;
        await unlink(lock).catch(() => {});
        held.delete(lock);
        return true;
      },
    };
  }
  return null;
}

/**
 * Takes over the lock of a worker that died. Whatever it left running as this uid goes first.
 * Two workers may find the same stale lock at once: a guard file lets one reclaim, and it checks
 * staleness again under the guard, or the later one would kill the other's fresh task and delete
 * its lock (found by the fault tests: a task killed by SIGKILL after a worker was kill -9ed).
 */
async function reclaim(lock: string, uid: number, me: string): Promise<boolean> {
  const guard = `${lock}.reclaim`;
  if (!(await tryLock(guard, me))) {
    if (await isStale(guard)) await unlink(guard).catch(() => {}); // its reclaimer died; retried next time
    return false;
  }
  try {
    if (!(await isStale(lock)) || !(await killUid(uid))) return false;
    await unlink(lock).catch(() => {});
    return await tryLock(lock, me);
  } finally {
    await unlink(guard).catch(() => {});
  }
}

async function tryLock(path: string, content: string): Promise<boolean> {
  // Written whole, then linked into place: a lock is never seen empty, which would read as stale
  // and let another worker take a slot that was just locked.
  const tmp = `${path}.${process.pid}.${randomUUID()}.tmp`;
  await writeFile(tmp, content, { mode: 0o600 });
  try {
    await link(tmp, path);
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') return false;
    throw err;
  } finally {
    await unlink(tmp).catch(() => {});
  }
}

async function isStale(lock: string): Promise<boolean> {
  const owner = await readFile(lock, 'utf8').catch(() => null);
  return owner === null || !(await ownerAlive(owner));
}

/** SIGKILLs every process of `uid` until none is left; false if some survived. */
async function killUid(uid: number, timeoutMs = 3000): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const pids = await pidsOfUid(uid);
    if (pids.length === 0) return true;
    if (Date.now() > deadline) return false;
    for (const p of pids) killQuietly(p);
    await sleep(10);
  }
}

/** A slot uid that belongs to a real account would let tasks act as (and be swept with) that account. */
async function checkRangeIsUnused(cfg: SlotConfig): Promise<void> {
  const key = `${cfg.uidBase}:${cfg.gidBase}:${cfg.slots}`;
  if (checkedRanges.has(key)) return;
  const inRange = (id: number, base: number) => id >= base && id < base + cfg.slots;
  for (const [file, base] of [
    ['/etc/passwd', cfg.uidBase],
    ['/etc/group', cfg.gidBase],
  ] as const) {
    const text = await readFile(file, 'utf8').catch(() => '');
    const clash = text.split('\n').find((l) => inRange(Number(l.split(':')[2]), base));
    if (clash) {
      throw new SandboxUnavailable(`sandbox id range ${base}..${base + cfg.slots - 1} overlaps ${file} entry "${clash.split(':')[0]}"`);
    }
  }
  checkedRanges.add(key);
}
