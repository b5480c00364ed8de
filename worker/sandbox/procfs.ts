import { readFile, readdir } from 'node:fs/promises';

/** Linux reports /proc times in USER_HZ, which is 100 on every architecture we run on. */
const TICKS_PER_SECOND = 100;
const PAGE_SIZE = 4096;

export interface ProcStat {
  userMs: number;
  systemMs: number;
  /** CPU of children this process has already reaped. */
  childUserMs: number;
  childSystemMs: number;
  startTime: number;
  rssBytes: number;
  vsizeBytes: number;
}

/** /proc/<pid>/stat, or null once the process is gone. */
export async function readStat(pid: number): Promise<ProcStat | null> {
  const text = await readFile(`/proc/${pid}/stat`, 'utf8').catch(() => null);
  if (text === null) return null;
  // Fields after the command name, which may itself contain spaces and parentheses.
  const f = text.slice(text.lastIndexOf(')') + 2).split(' ');
  const n = (field: number) => Number(f[field - 3]);
  const ms = (field: number) => (n(field) * 1000) / TICKS_PER_SECOND;
  return {
    userMs: ms(14),
    systemMs: ms(15),
    childUserMs: ms(16),
    childSystemMs: ms(17),
    startTime: n(22),
    vsizeBytes: n(23),
    rssBytes: n(24) * PAGE_SIZE,
  };
}

/** pid and all its live descendants (needs /proc/<pid>/task/<tid>/children). */
export async function processTree(pid: number): Promise<number[]> {
  const out: number[] = [];
  const queue = [pid];
  while (queue.length > 0) {
    const p = queue.shift()!;
    out.push(p);
    const tids = await readdir(`/proc/${p}/task`).catch(() => [] as string[]);
    for (const tid of tids) {
      const kids = await readFile(`/proc/${p}/task/${tid}/children`, 'utf8').catch(() => '');
      for (const k of kids.split(' ')) if (k.trim()) queue.push(Number(k));
    }
  }
  return out;
}

/**
 * Live host pids whose real, effective, saved or fs uid is `uid`. Zombies are skipped: they run
 * nothing, and bwrap's orphaned namespace init may wait as one until the host's init reaps it.
 */
export async function pidsOfUid(uid: number): Promise<number[]> {
  const names = (await readdir('/proc')).filter((n) => /^\d+$/.test(n));
  const hits = await Promise.all(
    names.map(async (name) => {
      const status = await readFile(`/proc/${name}/status`, 'utf8').catch(() => '');
      const uids = /^Uid:\s+(.*)$/m.exec(status)?.[1]?.split(/\s+/) ?? [];
      const state = /^State:\s+(\S)/m.exec(status)?.[1];
      return uids.some((u) => Number(u) === uid) && state !== 'Z' && state !== 'X' ? Number(name) : null;
    }),
  );
  return hits.filter((p) => p !== null);
}

export function killQuietly(pid: number, signal: NodeJS.Signals = 'SIGKILL'): void {
  try {
    process.kill(pid, signal);
  } catch {
    // already gone
  }
}

let selfTag: Promise<string> | undefined;

/**
 * "<pid>-<start time>" of this process: names the workspaces, cgroups and slot locks it creates,
 * so a later process can tell which ones a crashed worker left behind (pids get reused).
 */
export function ownerTag(): Promise<string> {
  selfTag ??= readStat(process.pid).then((st) => `${process.pid}-${st?.startTime ?? 0}`);
  return selfTag;
}

/** Whether the process that made `tag` still runs. */
export async function ownerAlive(tag: string): Promise<boolean> {
  const [pid, start] = tag.split('-').map(Number);
  if (!pid) return false;
  const st = await readStat(pid);
  return st !== null && st.startTime === start;
}
