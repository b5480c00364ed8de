import { setTimeout as sleep } from 'node:timers/promises';
import { describe, expect, it } from 'vitest';
import type { SandboxProcess } from '../../worker/sandbox/index.ts';
import { collect, isRoot, liveProcessesOf, slotUid, useSandboxRoot } from './helpers.ts';

const sb = useSandboxRoot();
const MiB = 1024 * 1024;

/** Highest number of live processes of the sandbox's uid seen while it runs (root only). */
function watchProcesses(proc: SandboxProcess): () => number {
  if (!isRoot) return () => NaN;
  const uid = slotUid(proc);
  let peak = 0;
  const timer = setInterval(() => (peak = Math.max(peak, liveProcessesOf(uid).length)), 25);
  void proc.exited.finally(() => clearInterval(timer));
  return () => peak;
}

describe('wall time and kill', () => {
  it('kills a sleeping tree, background child included, at the wall limit and leaves no process', async () => {
    const proc = await sb.start({ command: 'sleep 100 & sleep 100', limits: { wallTimeMs: 1000 } });
    const uid = isRoot ? slotUid(proc) : -1;
    await sleep(300);
    if (isRoot) expect(liveProcessesOf(uid).filter((p) => p.cmd.startsWith('sleep 100'))).toHaveLength(2);
    const started = Date.now();
    const r = await collect(proc);
    expect(r.exit.reason).toBe('timeout');
    expect(r.exit.signal).toBe('SIGKILL');
    expect(r.exit.usage.wallMs).toBeGreaterThanOrEqual(1000);
    expect(Date.now() - started).toBeLessThan(2500);
    if (isRoot) expect(liveProcessesOf(uid)).toEqual([]);
  });

  it("kill('cancelled') ends the whole tree; later kills change nothing", async () => {
    const proc = await sb.start({ command: '(sleep 100; echo never) & sleep 100; echo never' });
    const uid = isRoot ? slotUid(proc) : -1;
    await sleep(200);
    proc.kill('cancelled');
    proc.kill('timeout');
    const r = await collect(proc);
    expect(r.exit.reason).toBe('cancelled');
    expect(r.stdout).toBe('');
    proc.kill('killed');
    expect((await proc.exited).reason).toBe('cancelled');
    if (isRoot) expect(liveProcessesOf(uid)).toEqual([]);
  });
});

describe('processes', () => {
  it('stops a fork bomb at the process limit, and the next task runs normally', async () => {
    const proc = await sb.start({
      command: 'sleep 100 & (bomb() { bomb | bomb & sleep 100; }; bomb) & wait',
      limits: { processes: 40, wallTimeMs: 2500 },
    });
    const peak = watchProcesses(proc);
    const uid = isRoot ? slotUid(proc) : -1;
    const r = await collect(proc);
    expect(r.exit.reason).toBe('timeout');
    expect(r.stderr).toContain('fork');
    if (isRoot) {
      expect(peak()).toBeGreaterThan(10); // it did fork (fork failures kill some subshells, so the steady state is below the limit)...
      expect(peak()).toBeLessThanOrEqual(42); // ...but never past the limit (+ bwrap's 2 helpers)
      expect(liveProcessesOf(uid)).toEqual([]);
    }
    const next = await sb.run({ command: 'for i in 1 2 3 4 5 6 7 8; do sh -c "echo $i" & done; wait' });
    expect(next.exit).toMatchObject({ exitCode: 0, reason: 'exited' });
    expect(next.stdout.trim().split('\n').sort()).toEqual(['1', '2', '3', '4', '5', '6', '7', '8']);
  });

  it('also holds the process limit without cgroups (RLIMIT_NPROC per slot uid)', async () => {
    const proc = await sb.start({ command: 'sleep 100 & (bomb() { bomb | bomb & sleep 100; }; bomb) & wait', limits: { processes: 30, wallTimeMs: 2000 } }, { cgroups: false });
    const peak = watchProcesses(proc);
    const r = await collect(proc);
    expect(r.exit.reason).toBe('timeout');
    if (isRoot) expect(peak()).toBeLessThanOrEqual(32);
  });
});

describe('cpu', () => {
  it('stops a busy loop at the CPU limit', async () => {
    const r = await sb.run({ command: 'while :; do :; done', limits: { cpuTimeMs: 1000 } });
    expect(r.exit.reason).toBe('cpu_limit');
    const cpu = r.exit.usage.cpuUserMs + r.exit.usage.cpuSystemMs;
    expect(cpu).toBeGreaterThanOrEqual(900);
    expect(cpu).toBeLessThan(2100);
  });

  it('counts CPU of all processes together', async () => {
    const r = await sb.run({ command: '(while :; do :; done) & (while :; do :; done) & wait', limits: { cpuTimeMs: 1000 } });
    expect(r.exit.reason).toBe('cpu_limit');
    // Per-process RLIMIT_CPU alone would let the two loops burn ~2 s together.
    expect(r.exit.usage.cpuUserMs + r.exit.usage.cpuSystemMs).toBeLessThan(1700);
  });
});

describe('output', () => {
  it('cuts stdout+stderr at exactly outputBytes and kills the flood', async () => {
    const r = await sb.run({ command: 'echo first; yes err >&2', limits: { outputBytes: 100_000 } });
    expect(r.exit).toMatchObject({ reason: 'output_limit', outputTruncated: true });
    expect(r.stdout).toBe('first\n'); // stdout counts towards the same budget
    expect(Buffer.byteLength(r.stderr)).toBe(100_000 - 6);

    const both = await sb.run({ command: 'yes out & yes err >&2', limits: { outputBytes: 100_000 } });
    expect(both.exit.reason).toBe('output_limit');
    expect(Buffer.byteLength(both.stdout) + Buffer.byteLength(both.stderr)).toBe(100_000);
  });

  it('lets output of exactly the limit through', async () => {
    const r = await sb.run({ command: 'head -c 5000 /dev/zero | tr "\\0" x', limits: { outputBytes: 5000 } });
    expect(r.exit).toMatchObject({ reason: 'exited', outputTruncated: false });
    expect(r.stdout).toBe('x'.repeat(5000));
  });

  it("with onOutputLimit 'truncate' drops output past the limit and lets the task run to its end", async () => {
    const r = await sb.run({
      command: 'head -c 300000 /dev/zero | tr "\\0" x; echo late >&2; sleep 0.5; exit 3',
      limits: { outputBytes: 100_000 },
      onOutputLimit: 'truncate',
    });
    expect(r.exit).toMatchObject({ reason: 'exited', exitCode: 3, outputTruncated: true });
    expect(r.stdout).toBe('x'.repeat(100_000));
    expect(r.stderr).toBe('');
    expect(r.exit.usage.wallMs).toBeGreaterThanOrEqual(500);
    await expect(sb.run({ command: 'true', onOutputLimit: 'later' as never })).rejects.toThrow("onOutputLimit: must be 'stop' or 'truncate'");
  });
});

describe('memory', () => {
  it('stops a memory bomb at the memory limit', async () => {
    const r = await sb.run({ command: 'tail /dev/zero', limits: { memoryBytes: 128 * MiB, wallTimeMs: 20_000 } });
    expect(r.exit.reason).toBe('memory_limit');
    expect(r.exit.usage.maxRssBytes).toBeGreaterThan(64 * MiB);
    expect(r.exit.usage.maxRssBytes).toBeLessThanOrEqual(128 * MiB);
  });

  it('stops a Node memory bomb', async () => {
    const r = await sb.run({
      command: ['node', '-e', 'const a = []; for (;;) a.push(Buffer.alloc(1 << 20, 1));'],
      limits: { memoryBytes: 192 * MiB, wallTimeMs: 20_000 },
    });
    expect(r.exit.reason).toBe('memory_limit');
    expect(r.exit.exitCode).not.toBe(0);
  });

  it('stops a memory bomb without cgroups (RLIMIT_AS), reported by heuristic', async () => {
    const r = await sb.run(
      { command: ['python3', '-c', 'a = []\nwhile True: a.append(bytearray(1 << 20))'], limits: { memoryBytes: 256 * MiB, wallTimeMs: 20_000 } },
      { cgroups: false },
    );
    expect(r.stderr).toContain('MemoryError');
    expect(r.exit.reason).toBe('memory_limit');
  });

  it('does not blame memory for an ordinary failure', async () => {
    const r = await sb.run({ command: 'echo nope >&2; exit 3' }, { cgroups: false });
    expect(r.exit).toMatchObject({ exitCode: 3, reason: 'exited' });
  });
});
