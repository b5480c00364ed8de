// A worker's host budget (host admission, issue 18): how much memory the limits of the tasks it
// holds may add up to, and how many cores they share. The worker registers both; cogo.claim_tasks
// claims a task only while its memory limit fits what is left, and the API refuses a task asking
// more than any live worker of its kind can give. Without this, four slots of 8 GiB on a 24 GiB
// host let one tenant make the kernel OOM-kill Postgres or the worker.
//
// Pure functions over the text of /proc and cgroup files, plus readHostResources() that reads
// them; tests/sandbox/budget.test.ts covers the parsing and the formula.
import { readFile } from "node:fs/promises";
import { availableParallelism, hostname, networkInterfaces, totalmem } from "node:os";
import { dirname, join, relative } from "node:path";
import { DEFAULT_MEMORY_BYTES } from "../functions/_shared/limits.ts";

const MiB = 1024 * 1024;
const GiB = 1024 * MiB;

/**
 * The reserve a worker keeps out of its budget by default. Every part is a fixed amount plus a
 * share of the host's memory, because what it covers grows with the host:
 *
 * - **base** (always), 1 GiB + 10 %: the worker itself (Node, its connection pool and output
 *   buffers: 150–300 MiB), what each sandbox needs outside its cgroup (bwrap, the launcher), the
 *   kernel's own memory (page tables, slab, sockets: a few % of RAM), and page cache for the
 *   toolchain the tasks exec, which thrashes when squeezed out.
 * - **database** (Postgres on this host), 1 GiB + 15 %: shared_buffers (Supabase sizes it at about
 *   a quarter of RAM on larger instances, the embedded default uses 128 MiB), work_mem per
 *   connection of the workers and the API, WAL buffers and autovacuum; and, with `npm start`, the
 *   Deno functions and Realtime beside it. Postgres is the one process the kernel must never
 *   choose to kill.
 *
 * So a host with a local database keeps 2 GiB + 25 % (24 GiB → about 15.6 GiB of budget) and a
 * dedicated worker host 1 GiB + 10 %.
 */
export const RESERVE = {
  baseBytes: 1 * GiB,
  baseShare: 0.1,
  databaseBytes: 1 * GiB,
  databaseShare: 0.15,
} as const;

/** A budget is never below this unless set explicitly: a worker can always run a task that gives no memory limit. */
export const MIN_DEFAULT_BUDGET_BYTES = DEFAULT_MEMORY_BYTES;
/** The smallest budget one may set (the smallest memory limit a task may have). */
export const MIN_BUDGET_BYTES = 16 * MiB;

/** What the machine offers the worker, as read from /proc and its cgroups (null: no limit found). */
export interface HostResources {
  /** /proc/meminfo MemTotal (os.totalmem() when unreadable). */
  memTotalBytes: number;
  /** The lowest memory limit on the worker's cgroup and its ancestors (v2 memory.max, v1 memory.limit_in_bytes). */
  cgroupMemoryBytes: number | null;
  /** CPUs the process may run on (os.availableParallelism: affinity and cpuset). */
  cores: number;
  /** The lowest CPU quota on the cgroup path, in CPUs (v2 cpu.max, v1 cpu.cfs_quota_us / cpu.cfs_period_us). */
  cgroupCpus: number | null;
}

export interface Budget {
  /** What the memory limits of the worker's active tasks may add up to. */
  memoryBytes: number;
  /** Cores the tasks share (registered; tasks are not admitted on CPU: their limits have no core count). */
  cpus: number;
  /** One line for the worker's log: where the figures came from. */
  explanation: string;
}

/** Limits at or above this are "no limit" (v1 writes 2^63 rounded down to a page for unlimited). */
const UNLIMITED = 2 ** 62;

/** MemTotal of /proc/meminfo in bytes, or null. */
export function parseMemTotal(meminfo: string): number | null {
  const m = /^MemTotal:\s+(\d+)\s*kB/m.exec(meminfo);
  return m ? Number(m[1]) * 1024 : null;
}

/** A cgroup memory limit file (v2 `memory.max`, v1 `memory.limit_in_bytes`): bytes, or null for "max"/unlimited/unreadable. */
export function parseMemoryLimit(text: string): number | null {
  const t = text.trim();
  if (!/^\d+$/.test(t)) return null;
  const n = Number(t);
  return n >= UNLIMITED ? null : n;
}

/** v2 `cpu.max` ("quota period" or "max period") in CPUs, or null for no quota. */
export function parseCpuMax(text: string): number | null {
  const [quota, period] = text.trim().split(/\s+/);
  if (!quota || quota === "max") return null;
  return cpuQuota(quota, period ?? "100000");
}

/** v1 `cpu.cfs_quota_us` and `cpu.cfs_period_us` in CPUs, or null (quota -1: none). */
export function cpuQuota(quota: string, period: string): number | null {
  const q = Number(quota.trim());
  const p = Number(period.trim());
  if (!Number.isFinite(q) || !Number.isFinite(p) || q <= 0 || p <= 0) return null;
  return q / p;
}

/**
 * The cgroup directories whose limits bound this process, innermost first, per controller: from
 * /proc/self/mountinfo and /proc/self/cgroup (v1 controller hierarchies, or the v2 one).
 */
export function cgroupDirs(mountinfo: string, procCgroup: string): { memory: string[]; cpu: string[] } {
  const mounts = mountinfo.split("\n").flatMap((line) => {
    const [left, right] = line.split(" - ");
    if (!left || !right) return [];
    const l = left.split(" ");
    const [fstype = "", , superOpts = ""] = right.split(" ");
    return [{ root: l[3] ?? "/", point: l[4] ?? "", fstype, opts: superOpts.split(",") }];
  });
  // hierarchy-id:controllers:path (the path itself may contain ':')
  const own = procCgroup
    .split("\n")
    .filter(Boolean)
    .map((l) => l.split(":"))
    .map(([id = "", ctl = "", ...path]) => ({ id, controllers: ctl.split(","), path: path.join(":") }));
  const chain = (mount: { root: string; point: string } | undefined, path: string | undefined): string[] => {
    if (!mount || path === undefined) return [];
    const rel = relative(mount.root, path);
    if (rel.startsWith("..")) return [];
    const dirs: string[] = [];
    for (let dir = join(mount.point, rel); ; dir = dirname(dir)) {
      dirs.push(dir);
      if (dir === mount.point || dir === dirname(dir)) break;
    }
    return dirs;
  };
  const v1 = (controller: string) =>
    chain(
      mounts.find((m) => m.fstype === "cgroup" && m.opts.includes(controller)),
      own.find((o) => o.controllers.includes(controller))?.path,
    );
  const v2 = chain(
    mounts.find((m) => m.fstype === "cgroup2"),
    own.find((o) => o.id === "0" && o.controllers.join("") === "")?.path,
  );
  return { memory: [...v1("memory"), ...v2], cpu: [...v1("cpu"), ...v2] };
}

/**
 * Whether the database of `url` runs on this host: a Unix socket, a loopback address, or one of
 * `localNames` (this host's name and interface addresses).
 */
export function isLocalDatabase(url: string, localNames: Iterable<string>): boolean {
  // libpq's ?host= (a socket directory, or a host) wins over the authority, which may then be empty.
  let host = /[?&]host=([^&]*)/.exec(url)?.[1];
  if (host !== undefined) host = decodeURIComponent(host);
  else {
    try {
      host = new URL(url).hostname;
    } catch {
      return false;
    }
  }
  host = host.replace(/^\[|\]$/g, "").toLowerCase();
  if (host === "" || host.startsWith("/")) return true; // a Unix socket
  if (host === "localhost" || host.endsWith(".localhost") || host === "::1" || host === "0.0.0.0" || /^127\./.test(host)) return true;
  for (const name of localNames) if (name.toLowerCase() === host) return true;
  return false;
}

/** Memory kept out of the budget of a host with `totalBytes` (RESERVE). */
export function memoryReserve(totalBytes: number, databaseLocal: boolean): number {
  let reserve = RESERVE.baseBytes + RESERVE.baseShare * totalBytes;
  if (databaseLocal) reserve += RESERVE.databaseBytes + RESERVE.databaseShare * totalBytes;
  return Math.ceil(reserve);
}

const gib = (n: number) => `${(n / GiB).toFixed(1)} GiB`;

/**
 * The budget: `memoryBudgetBytes` when given; otherwise the host's memory (or its cgroup's limit,
 * when lower) less memoryReserve, at least MIN_DEFAULT_BUDGET_BYTES, in whole MiB. CPUs: the
 * cores the process may use, or its cgroup's quota when lower.
 */
export function computeBudget(host: HostResources, o: { databaseLocal: boolean; memoryBudgetBytes?: number }): Budget {
  const cpus = Math.max(0.01, Math.round(Math.min(host.cores, host.cgroupCpus ?? Number.POSITIVE_INFINITY) * 100) / 100);
  const cpuWhy = host.cgroupCpus !== null && host.cgroupCpus < host.cores ? `cgroup quota ${cpus}` : `${host.cores} cores`;
  if (o.memoryBudgetBytes !== undefined) {
    return { memoryBytes: o.memoryBudgetBytes, cpus, explanation: `memory ${gib(o.memoryBudgetBytes)} (set by --memory-budget), cpu ${cpuWhy}` };
  }
  const limited = host.cgroupMemoryBytes !== null && host.cgroupMemoryBytes < host.memTotalBytes;
  const total = limited ? host.cgroupMemoryBytes! : host.memTotalBytes;
  const reserve = memoryReserve(total, o.databaseLocal);
  const left = Math.floor((total - reserve) / MiB) * MiB;
  const memoryBytes = Math.max(left, MIN_DEFAULT_BUDGET_BYTES);
  const source = limited ? `cgroup limit ${gib(total)}` : `host ${gib(total)}`;
  const formula = o.databaseLocal ? "2 GiB + 25 % (worker and local Postgres)" : "1 GiB + 10 % (worker; Postgres elsewhere)";
  const floor = left < MIN_DEFAULT_BUDGET_BYTES ? `; raised to ${gib(MIN_DEFAULT_BUDGET_BYTES)} so one default task fits (set --memory-budget for this host)` : "";
  return { memoryBytes, cpus, explanation: `memory ${gib(memoryBytes)} = ${source} − ${gib(reserve)} reserve [${formula}]${floor}, cpu ${cpuWhy}` };
}

/**
 * `--memory-budget` / COGO_MEMORY_BUDGET: bytes, or a number with K, M, G or T (optionally
 * followed by "i", "iB" or "B"; all powers of 1024: "1G" = "1GiB" = 1073741824). Undefined if it
 * is not such a size.
 */
export function parseBytes(text: string): number | undefined {
  const m = /^\s*(\d+(?:\.\d+)?)\s*(?:([kmgt])(?:i?b)?|b)?\s*$/i.exec(text);
  if (!m) return undefined;
  const unit = { k: 1, m: 2, g: 3, t: 4 }[(m[2] ?? "").toLowerCase() as "k"] ?? 0;
  const n = Math.floor(Number(m[1]) * 1024 ** unit);
  return Number.isSafeInteger(n) ? n : undefined;
}

async function readText(path: string): Promise<string | null> {
  return await readFile(path, "utf8").catch(() => null);
}

async function lowest(dirs: string[], read: (dir: string) => Promise<number | null>): Promise<number | null> {
  let low: number | null = null;
  for (const dir of dirs) {
    const n = await read(dir);
    if (n !== null && (low === null || n < low)) low = n;
  }
  return low;
}

/** Reads what the machine offers this process: /proc/meminfo, its cgroups' memory and CPU limits, its cores. */
export async function readHostResources(): Promise<HostResources> {
  const [meminfo, mountinfo, procCgroup] = await Promise.all([readText("/proc/meminfo"), readText("/proc/self/mountinfo"), readText("/proc/self/cgroup")]);
  const dirs = cgroupDirs(mountinfo ?? "", procCgroup ?? "");
  const cgroupMemoryBytes = await lowest(dirs.memory, async (dir) => {
    const text = (await readText(join(dir, "memory.max"))) ?? (await readText(join(dir, "memory.limit_in_bytes")));
    return text === null ? null : parseMemoryLimit(text);
  });
  const cgroupCpus = await lowest(dirs.cpu, async (dir) => {
    const v2 = await readText(join(dir, "cpu.max"));
    if (v2 !== null) return parseCpuMax(v2);
    const [quota, period] = await Promise.all([readText(join(dir, "cpu.cfs_quota_us")), readText(join(dir, "cpu.cfs_period_us"))]);
    return quota !== null && period !== null ? cpuQuota(quota, period) : null;
  });
  return { memTotalBytes: parseMemTotal(meminfo ?? "") ?? totalmem(), cgroupMemoryBytes, cores: availableParallelism(), cgroupCpus };
}

/** This host's name and interface addresses, for isLocalDatabase. */
export function localNames(): string[] {
  const names = [hostname()];
  for (const list of Object.values(networkInterfaces())) for (const a of list ?? []) names.push(a.address);
  return names;
}
