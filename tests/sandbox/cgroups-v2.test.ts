// cgroup v2, on whatever v2 hierarchy this machine mounts. A hybrid machine (v1 controllers, an
// empty unified hierarchy) runs the sandbox in v2 with CPU accounting and cgroup.kill and the
// rlimit fallback for memory; a pure v2 machine also gets memory.max and pids.max, and the rest of
// the suite exercises them there (the default 'auto' picks v2 when no v1 controller is mounted).
import { spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, readFileSync, rmdirSync, writeFileSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { V2_LEAF, delegateV2, detectCgroups } from '../../worker/sandbox/cgroups.ts';
import { WORKER_USAGE, WorkerConfigError, parseWorkerArgs, resolveWorkerOptions } from '../../worker/config.ts';
import { sandboxFacts, stopLauncher } from '../../worker/sandbox/index.ts';
import { collect, isRoot, useSandboxRoot } from './helpers.ts';

const sb = useSandboxRoot();
const MiB = 1024 * 1024;

/** Where cgroup2 is mounted, or a failure that says what the machine lacks. */
function v2Mount(): string {
  const line = readFileSync('/proc/self/mountinfo', 'utf8')
    .split('\n')
    .find((l) => l.split(' - ')[1]?.startsWith('cgroup2 '));
  if (!line) throw new Error('these tests need a cgroup2 mount (Linux with cgroup v2 or a hybrid hierarchy at /sys/fs/cgroup/unified)');
  if (!isRoot) throw new Error('these tests need root: they create cgroups');
  return line.split(' ')[4]!;
}

/** Our v2 cgroup, or its parent when a worker of this process moved us into the leaf. */
function own2(): string {
  const own = readFileSync('/proc/self/cgroup', 'utf8')
    .split('\n')
    .find((l) => l.startsWith('0::'))!
    .slice(3);
  return basename(own) === V2_LEAF ? dirname(own) : own;
}

describe('delegateV2: enabling controllers for task cgroups', () => {
  let base = '';
  let dir = '';
  let controller = '';
  let enabledInBase = false;
  let sleeper: ReturnType<typeof spawn> | undefined;
  beforeAll(async () => {
    // The worker's cgroup (dir) must have a controller available: its parent (base) hands one
    // down. On a pure v2 machine our own setup gives base memory and pids (it moves this process
    // into the leaf); a hybrid machine's unified root may enable one itself (the root is exempt
    // from the no-internal-process rule).
    await detectCgroups('v2');
    base = join(v2Mount(), own2());
    const words = (f: string) => readFileSync(join(base, f), 'utf8').split(/\s+/).filter(Boolean);
    controller = ['hugetlb', 'pids', 'memory', 'io', 'cpu'].find((c) => words('cgroup.controllers').includes(c)) ?? '';
    if (!controller) throw new Error(`no controller is available in ${base} (cgroup.controllers is empty): bind one to cgroup v2 to run this test`);
    if (!words('cgroup.subtree_control').includes(controller)) {
      try {
        writeFileSync(join(base, 'cgroup.subtree_control'), `+${controller}`);
      } catch (err) {
        throw new Error(`cannot enable ${controller} in ${base} for the test's cgroup: ${(err as Error).message}`);
      }
      enabledInBase = true;
    }
    dir = join(base, `cogo-test-${randomUUID()}`);
    mkdirSync(dir);
  });
  afterAll(async () => {
    sleeper?.kill('SIGKILL');
    await sleep(100);
    for (const d of [join(dir, 'task'), join(dir, V2_LEAF), dir]) if (existsSync(d)) rmdirSync(d);
    if (enabledInBase) writeFileSync(join(base, 'cgroup.subtree_control'), `-${controller}`);
  });

  it('moves the processes of a busy cgroup into cogo-workers, enables what is delegated, names what is not', async () => {
    sleeper = spawn('sleep', ['60'], { stdio: 'ignore' });
    writeFileSync(join(dir, 'cgroup.procs'), String(sleeper.pid));

    const told = await delegateV2(dir, [controller], { move: false });
    expect(told).toMatchObject({ ok: true, parent: dir, enabled: [] });
    expect(told.notes).toEqual([
      `cgroup v2 ${controller}: ${dir} has processes of its own; delegate it (systemd Delegate=yes) and start the worker with --cgroups v2 to move them into ${V2_LEAF}/`,
    ]);

    const r = await delegateV2(dir, [controller, 'nosuchctl'], { move: true });
    expect(r).toMatchObject({ ok: true, parent: dir, enabled: [controller] });
    expect(r.notes).toEqual([`cgroup v2 nosuchctl: not delegated to ${dir}`, `cgroup v2: moved 1 process(es) of ${dir} into ${V2_LEAF}/ to enable controllers`]);
    // The kernel refused the controller while the sleeper sat in dir; now it lives in the leaf.
    expect(readFileSync(`/proc/${sleeper.pid}/cgroup`, 'utf8')).toContain(`${dir.slice(v2Mount().length)}/${V2_LEAF}\n`);
    expect(readFileSync(join(dir, 'cgroup.subtree_control'), 'utf8')).toContain(controller);
    mkdirSync(join(dir, 'task'));
    expect(readdirSync(join(dir, 'task')).some((f) => f.startsWith(`${controller}.`))).toBe(true);

    // A worker started inside the leaf sets up its parent and moves nothing.
    const again = await delegateV2(join(dir, V2_LEAF), [controller], { move: false });
    expect(again).toEqual({ ok: true, parent: dir, enabled: [controller], notes: [] });
  });
});

describe('a sandbox in cgroup v2', () => {
  beforeAll(() => v2Mount());
  afterAll(() => stopLauncher());

  it('runs in its own v2 cgroup, counted by cpu.stat, and leaves nothing behind', async () => {
    const support = await detectCgroups('v2');
    expect(support.using).toBe('v2');
    const proc = await sb.start({ command: 'sleep 100 & (while :; do :; done) & wait', limits: { wallTimeMs: 1200 } }, { cgroups: 'v2' });
    expect(proc.cgroup?.version).toBe('v2');
    const dirs = Object.values(proc.cgroup!.directories);
    expect(new Set(dirs).size).toBe(1); // one directory for every controller
    const dir = dirs[0]!;
    expect(dir.startsWith(`${v2Mount()}/`)).toBe(true);
    expect(dir).toMatch(/\/cogo-sandbox-\d+-\d+-[0-9a-f]{32}$/);
    await sleep(400);
    const members = await proc.cgroup!.pids();
    const cmds = members.map((p) => readFileSync(`/proc/${p}/cmdline`, 'utf8').replaceAll('\0', ' ').trim());
    expect(cmds).toContain('sleep 100');
    const r = await collect(proc);
    expect(r.exit.reason).toBe('timeout');
    // cpu.stat counted the loop (a subshell: /proc sampling of the tree would also see it, but
    // the figure below comes from the cgroup since it has the cpu controller).
    expect(proc.cgroup!.controllers).toContain('cpu');
    expect(r.exit.usage.cpuUserMs + r.exit.usage.cpuSystemMs).toBeGreaterThan(200);
    expect(members.filter((p) => existsSync(`/proc/${p}`) && readFileSync(`/proc/${p}/cmdline`, 'utf8') !== '')).toEqual([]);
    await proc.cleanup();
    expect(existsSync(dir)).toBe(false);
  });

  it('stops two busy loops together at the CPU limit from cpu.stat', async () => {
    const r = await sb.run({ command: '(while :; do :; done) & (while :; do :; done) & wait', limits: { cpuTimeMs: 1000 } }, { cgroups: 'v2' });
    expect(r.exit.reason).toBe('cpu_limit');
    // Per-process RLIMIT_CPU alone would let the two loops burn ~2 s together.
    const cpu = r.exit.usage.cpuUserMs + r.exit.usage.cpuSystemMs;
    expect(cpu).toBeGreaterThanOrEqual(900);
    expect(cpu).toBeLessThan(1700);
  });

  it('limits memory with memory.max where v2 has the memory controller, else RLIMIT_AS, and says which', async () => {
    const support = await detectCgroups('v2');
    const facts = await sandboxFacts('v2');
    expect(facts.cgroupsUsed).toBe('v2');
    if (support.usable.memory) {
      expect(facts.limitsBy).toContain('memory=cgroup-v2(memory, oom_kill)');
    } else {
      expect(facts.limitsBy).toContain('memory=RLIMIT_AS(heuristic)');
      expect(facts.cgroupNotes.join('\n')).toMatch(/cgroup v2 memory: not delegated to \//);
    }
    const r = await sb.run({ command: 'tail /dev/zero', limits: { memoryBytes: 128 * MiB, wallTimeMs: 20_000 } }, { cgroups: 'v2' });
    expect(r.exit.reason).toBe('memory_limit');
    if (support.usable.memory) expect(r.exit.usage.maxRssBytes).toBeLessThanOrEqual(128 * MiB);
    const next = await sb.run({ command: 'echo fine' }, { cgroups: 'v2' });
    expect(next.exit).toMatchObject({ exitCode: 0, reason: 'exited' });
    expect(next.stdout).toBe('fine\n');
  });
});

describe('worker --cgroups', () => {
  it('takes auto, v1, v2 or off from the flag or COGO_CGROUPS and names a bad value', () => {
    expect(parseWorkerArgs(['--cgroups', 'v2'])).toMatchObject({ cgroups: 'v2' });
    expect(resolveWorkerOptions({}, { SUPABASE_DB_URL: 'postgres://x', COGO_CGROUPS: 'off' }).cgroups).toBe('off');
    expect(resolveWorkerOptions({}, { SUPABASE_DB_URL: 'postgres://x' }).cgroups).toBe('auto');
    expect(() => parseWorkerArgs(['--cgroups', 'v3'])).toThrow('--cgroups=v3: expected one of auto, v1, v2, off');
    expect(() => resolveWorkerOptions({}, { SUPABASE_DB_URL: 'postgres://x', COGO_CGROUPS: 'yes' })).toThrow(WorkerConfigError);
    expect(WORKER_USAGE).toContain('--cgroups MODE');
  });
});
