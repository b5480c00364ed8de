// Host admission, the pure parts (no stack): a worker's budget from /proc and cgroup files, the
// reserve formula, sizes on the command line, and the API's refusal messages.
import { describe, expect, it } from 'vitest';
import { kindMemoryMax, memoryRefusals } from '../../functions/_shared/admission.ts';
import { DEFAULT_MEMORY_BYTES, MAX_MEMORY_BYTES } from '../../functions/_shared/limits.ts';
import {
  cgroupDirs,
  computeBudget,
  cpuQuota,
  isLocalDatabase,
  memoryReserve,
  MIN_DEFAULT_BUDGET_BYTES,
  parseBytes,
  parseCpuMax,
  parseMemoryLimit,
  parseMemTotal,
  type HostResources,
} from '../../worker/budget.ts';
import { parseWorkerArgs, resolveWorkerOptions } from '../../worker/config.ts';

const MiB = 1024 * 1024;
const GiB = 1024 * MiB;
const host = (o: Partial<HostResources> = {}): HostResources => ({ memTotalBytes: 24 * GiB, cgroupMemoryBytes: null, cores: 2, cgroupCpus: null, ...o });

describe('reading the host', () => {
  it('MemTotal from /proc/meminfo, in bytes', () => {
    expect(parseMemTotal('MemTotal:       24683748 kB\nMemFree:        22146860 kB\n')).toBe(24683748 * 1024);
    expect(parseMemTotal('MemFree: 1 kB\n')).toBeNull();
  });

  it("cgroup memory limits: bytes; 'max' and v1's unlimited value are no limit", () => {
    expect(parseMemoryLimit('4294967296\n')).toBe(4 * GiB);
    expect(parseMemoryLimit('max\n')).toBeNull();
    expect(parseMemoryLimit('9223372036854771712\n')).toBeNull();
    expect(parseMemoryLimit('')).toBeNull();
  });

  it('CPU quotas in CPUs: v2 cpu.max and v1 cfs quota/period; none is null', () => {
    expect(parseCpuMax('150000 100000\n')).toBe(1.5);
    expect(parseCpuMax('max 100000\n')).toBeNull();
    expect(cpuQuota('200000\n', '100000\n')).toBe(2);
    expect(cpuQuota('-1\n', '100000\n')).toBeNull();
  });

  it('finds the cgroup directories of a v1 (hybrid) and a v2 machine, innermost first', () => {
    const hybrid = [
      '31 30 0:28 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu',
      '34 30 0:31 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory',
      '40 30 0:37 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw',
    ].join('\n');
    expect(cgroupDirs(hybrid, '4:memory:/process_api/fc0c\n1:cpu:/\n0::/\n')).toEqual({
      memory: ['/sys/fs/cgroup/memory/process_api/fc0c', '/sys/fs/cgroup/memory/process_api', '/sys/fs/cgroup/memory', '/sys/fs/cgroup/unified'],
      cpu: ['/sys/fs/cgroup/cpu', '/sys/fs/cgroup/unified'],
    });
    const v2 = '30 22 0:27 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw';
    expect(cgroupDirs(v2, '0::/system.slice/cogo.service\n')).toEqual({
      memory: ['/sys/fs/cgroup/system.slice/cogo.service', '/sys/fs/cgroup/system.slice', '/sys/fs/cgroup'],
      cpu: ['/sys/fs/cgroup/system.slice/cogo.service', '/sys/fs/cgroup/system.slice', '/sys/fs/cgroup'],
    });
    // A container's own cgroup namespace: its cgroup is the mount's root.
    expect(cgroupDirs(v2, '0::/\n').memory).toEqual(['/sys/fs/cgroup']);
    expect(cgroupDirs('', '')).toEqual({ memory: [], cpu: [] });
  });

  it("a database on a socket, loopback or this host's own name or address is local", () => {
    const names = ['box-1', '10.0.0.5'];
    expect(isLocalDatabase('postgresql://postgres:pw@127.0.0.1:54322/postgres', names)).toBe(true);
    expect(isLocalDatabase('postgres://u@localhost/db', names)).toBe(true);
    expect(isLocalDatabase('postgresql://u@[::1]:5432/db', names)).toBe(true);
    expect(isLocalDatabase('postgresql://u@box-1:5432/db', names)).toBe(true);
    expect(isLocalDatabase('postgresql://u@10.0.0.5/db', names)).toBe(true);
    expect(isLocalDatabase('postgresql://u@/db?host=/var/run/postgresql', names)).toBe(true);
    expect(isLocalDatabase('postgresql://postgres.ref:pw@db.abcdefgh.supabase.co:5432/postgres', names)).toBe(false);
    expect(isLocalDatabase('not a url', names)).toBe(false);
  });
});

describe('the budget', () => {
  it('keeps 1 GiB + 10 % for the worker, and 1 GiB + 15 % more for a local Postgres', () => {
    expect(memoryReserve(24 * GiB, false)).toBe(Math.ceil(GiB + 0.1 * 24 * GiB));
    expect(memoryReserve(24 * GiB, true)).toBe(Math.ceil(2 * GiB + 0.25 * 24 * GiB));
    // 24 GiB with Postgres here: 24 − (2 + 6) = 16 GiB.
    expect(computeBudget(host(), { databaseLocal: true }).memoryBytes).toBe(16 * GiB);
    expect(computeBudget(host(), { databaseLocal: false }).memoryBytes).toBe(Math.floor((24 * GiB - memoryReserve(24 * GiB, false)) / MiB) * MiB);
  });

  it("this machine's kind of host (24 GiB, 2 cores, local Postgres) admits four default-limit tasks at once, and more", () => {
    // MemTotal here is 23.5 GiB (24683748 kB): the default budget is about 15.6 GiB.
    const b = computeBudget(host({ memTotalBytes: 24683748 * 1024 }), { databaseLocal: true });
    expect(b.memoryBytes).toBeGreaterThanOrEqual(4 * DEFAULT_MEMORY_BYTES);
    expect(b.memoryBytes).toBe(16808673280);
    expect(b.cpus).toBe(2);
    expect(b.explanation).toContain('2 GiB + 25 %');
  });

  it("uses the cgroup's memory limit when it is lower than the host's, and its CPU quota when below the cores", () => {
    const b = computeBudget(host({ cgroupMemoryBytes: 8 * GiB, cgroupCpus: 1.5 }), { databaseLocal: false });
    expect(b.memoryBytes).toBe(Math.floor((8 * GiB - memoryReserve(8 * GiB, false)) / MiB) * MiB);
    expect(b.cpus).toBe(1.5);
    expect(b.explanation).toContain('cgroup limit 8.0 GiB');
    // A cgroup limit above the host's memory changes nothing.
    expect(computeBudget(host({ cgroupMemoryBytes: 64 * GiB }), { databaseLocal: true }).memoryBytes).toBe(16 * GiB);
  });

  it('is at least one default task on a small host, and exactly what --memory-budget says when given', () => {
    const small = computeBudget(host({ memTotalBytes: 2 * GiB }), { databaseLocal: true });
    expect(small.memoryBytes).toBe(MIN_DEFAULT_BUDGET_BYTES);
    expect(small.explanation).toContain('raised to');
    expect(computeBudget(host(), { databaseLocal: true, memoryBudgetBytes: 512 * MiB }).memoryBytes).toBe(512 * MiB);
  });

  it('sizes: bytes or K/M/G/T, all powers of 1024; the option and env refuse less than 16 MiB', () => {
    expect(parseBytes('1073741824')).toBe(GiB);
    expect(parseBytes('1G')).toBe(GiB);
    expect(parseBytes('1GiB')).toBe(GiB);
    expect(parseBytes('1.5g')).toBe(1.5 * GiB);
    expect(parseBytes('512MiB')).toBe(512 * MiB);
    expect(parseBytes('512 mb')).toBe(512 * MiB);
    expect(parseBytes('2T')).toBe(2 * 1024 * GiB);
    expect(parseBytes('lots')).toBeUndefined();
    expect(parseBytes('-1G')).toBeUndefined();
    expect(parseWorkerArgs(['--memory-budget', '1GiB'])).toMatchObject({ memoryBudgetBytes: GiB });
    expect(() => parseWorkerArgs(['--memory-budget', '1M'])).toThrow(/at least 16MiB/);
    expect(resolveWorkerOptions({ databaseUrl: 'postgres://x' }, { COGO_MEMORY_BUDGET: '3G' }).memoryBudgetBytes).toBe(3 * GiB);
    expect(resolveWorkerOptions({ databaseUrl: 'postgres://x' }, {}).memoryBudgetBytes).toBeUndefined();
    expect(() => resolveWorkerOptions({ databaseUrl: 'postgres://x' }, { COGO_MEMORY_BUDGET: 'big' })).toThrow(/COGO_MEMORY_BUDGET=big/);
  });
});

describe("the API's check", () => {
  it("a kind's maximum: its largest live budget; a worker without a budget counts as the static maximum; none live: the static maximum", () => {
    expect(kindMemoryMax({ live: 2, maxBudgetBytes: 20 * GiB, unbudgeted: 0 })).toEqual({ maxBytes: 20 * GiB, live: true });
    expect(kindMemoryMax({ live: 2, maxBudgetBytes: 2 * GiB, unbudgeted: 1 })).toEqual({ maxBytes: MAX_MEMORY_BYTES, live: true });
    expect(kindMemoryMax(undefined)).toEqual({ maxBytes: MAX_MEMORY_BYTES, live: false });
  });

  it('names the field, the ask and the maximum; the default counts when none is given', () => {
    const budgets = { basic: { live: 1, maxBudgetBytes: 20401094656, unbudgeted: 0 }, tiny: { live: 1, maxBudgetBytes: 512 * MiB, unbudgeted: 0 } };
    expect(memoryRefusals([{ field: 'limits.memoryBytes', kind: 'basic', memoryBytes: 68719476736 }], budgets)).toEqual([
      'limits.memoryBytes: 68719476736 is more than any worker of kind basic can give (max 20401094656)',
    ]);
    expect(memoryRefusals([{ field: 'limits.memoryBytes', kind: 'basic', memoryBytes: 20401094656 }], budgets)).toEqual([]);
    expect(memoryRefusals([{ field: 'steps.1.limits.memoryBytes', kind: 'tiny', memoryBytes: undefined }], budgets)).toEqual([
      `steps.1.limits.memoryBytes: ${GiB} (the default) is more than any worker of kind tiny can give (max ${512 * MiB})`,
    ]);
    expect(memoryRefusals([{ field: 'limits.memoryBytes', kind: 'gpu', memoryBytes: 9 * GiB }], budgets)).toEqual([
      `limits.memoryBytes: ${9 * GiB} is more than a task may ask while no worker of kind gpu is live (max ${MAX_MEMORY_BYTES})`,
    ]);
  });
});
