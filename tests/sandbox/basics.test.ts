import { describe, expect, it } from 'vitest';
import { CogoError } from '../../functions/_shared/errors.ts';
import { InvalidSandboxSpec } from '../../worker/sandbox/index.ts';
import { collect, isRoot, slotUid, TEST_UID_BASE, useSandboxRoot } from './helpers.ts';

const sb = useSandboxRoot();

describe('running commands', () => {
  it('echoes and reports a clean exit with usage', async () => {
    const r = await sb.run({ command: 'echo hello; echo oops >&2' });
    expect(r.stdout).toBe('hello\n');
    expect(r.stderr).toBe('oops\n');
    expect(r.exit).toMatchObject({ exitCode: 0, signal: null, reason: 'exited' });
    expect(r.exit.usage.wallMs).toBeGreaterThan(0);
    expect(r.exit.usage.maxRssBytes).toBeGreaterThan(0);
  });

  it('passes exit codes through', async () => {
    expect((await sb.run({ command: 'exit 7' })).exit).toMatchObject({ exitCode: 7, signal: null, reason: 'exited' });
    expect((await sb.run({ command: ['false'] })).exit.exitCode).toBe(1);
  });

  it('reports death by signal', async () => {
    const term = await sb.run({ command: 'kill -TERM $$' });
    expect(term.exit).toMatchObject({ exitCode: null, signal: 'SIGTERM', reason: 'exited' });
    const segv = await sb.run({ command: ['sh', '-c', 'kill -SEGV $$'] });
    expect(segv.exit).toMatchObject({ exitCode: null, signal: 'SIGSEGV' });
  });

  it('execs an argv without a shell', async () => {
    const r = await sb.run({ command: ['printf', '%s|', 'a b', '$HOME', ';id'] });
    expect(r.stdout).toBe('a b|$HOME|;id|');
  });

  it('round-trips stdin through cat and read', async () => {
    const cat = await sb.start({ command: 'cat', stdin: 'pipe' });
    const catDone = collect(cat);
    cat.stdin!.write('line one\n');
    cat.stdin!.end('line two\n');
    expect((await catDone).stdout).toBe('line one\nline two\n');

    const read = await sb.start({ command: 'read x; echo "got:$x"; read y || echo eof', stdin: 'pipe' });
    const readDone = collect(read);
    read.stdin!.write('hello world\n');
    read.stdin!.end();
    expect((await readDone).stdout).toBe('got:hello world\neof\n');
  });

  it("gives /dev/null as stdin when it is 'closed'", async () => {
    const r = await sb.run({ command: 'cat; echo done; readlink /proc/self/fd/0' });
    expect(r.stdout).toBe('done\n/dev/null\n');
  });
});

describe('what the command can see', () => {
  it("gets a clean environment, never the worker's", async () => {
    process.env.SUPABASE_SERVICE_ROLE_KEY = 'secret-service-role';
    try {
      const r = await sb.run({ command: 'printenv; echo ---; tr "\\0" "\\n" < /proc/1/environ', env: { TASK_VAR: 'from-spec' } });
      expect(r.stdout).toContain('TASK_VAR=from-spec');
      expect(r.stdout).toContain('HOME=/workspace');
      expect(r.stdout).not.toContain('secret-service-role');
      expect(r.stdout).not.toContain('SUPABASE_SERVICE_ROLE_KEY');
      const names = r.stdout
        .split('---')[0]!
        .trim()
        .split('\n')
        .map((l) => l.split('=')[0]);
      expect(names.sort()).toEqual(['HOME', 'HOSTNAME', 'LANG', 'LOGNAME', 'PATH', 'PWD', 'SHELL', 'TASK_VAR', 'TERM', 'TMPDIR', 'USER']);
    } finally {
      delete process.env.SUPABASE_SERVICE_ROLE_KEY;
    }
  });

  it('runs as an unprivileged user with no capabilities and no nested user namespaces', async () => {
    const proc = await sb.start({
      command: 'id -u; hostname; grep -E "^(CapEff|CapBnd|NoNewPrivs)" /proc/self/status; unshare -U true 2>/dev/null && echo userns-ok || echo userns-denied',
    });
    const r = await collect(proc);
    expect(r.stdout).toBe('1000\nsandbox\nCapEff:\t0000000000000000\nCapBnd:\t0000000000000000\nNoNewPrivs:\t1\nuserns-denied\n');
    if (isRoot) expect(slotUid(proc)).toBeGreaterThanOrEqual(TEST_UID_BASE);
  });

  it('sees a read-only system, its own /proc and no host secrets', async () => {
    const r = await sb.run({
      command: [
        'for p in /root /home /var/tmp /etc/shadow /run /sys/fs/cgroup /work; do [ -e $p ] && echo "visible $p"; done',
        'touch /usr/x 2>/dev/null && echo usr-writable',
        'touch /x 2>/dev/null && echo root-writable',
        'touch /etc/x 2>/dev/null && echo etc-writable',
        'echo "procs $(ls /proc | grep -c "^[0-9]")"',
        'cut -d: -f1 /etc/passwd | tr "\\n" " "',
        'ls /proc/self/fd | tr "\\n" " "',
      ].join('; '),
    });
    expect(r.stdout.split('\n').filter((l) => l.startsWith('visible') || l.endsWith('-writable'))).toEqual([]);
    const procs = Number(/procs (\d+)/.exec(r.stdout)?.[1]);
    expect(procs).toBeGreaterThan(0);
    expect(procs).toBeLessThan(8);
    expect(r.stdout).toContain('root sandbox nobody ');
    // 0-2 plus the one ls opens to list the directory: nothing leaked from the worker.
    expect(r.stdout.trim().endsWith('0 1 2 3')).toBe(true);
  });
});

describe('spec validation', () => {
  it('rejects bad specs with a typed error naming the field', async () => {
    const bad = [
      [{ command: '' }, 'command'],
      [{ command: [] }, 'command'],
      [{ command: ['ls', 3] }, 'command[1]'],
      [{ command: 'true', env: { 'BAD-NAME': 'x' } }, 'env.BAD-NAME'],
      [{ command: 'true', env: { A: 'x\0y' } }, 'env.A'],
      [{ command: 'true', limits: { memoryBytes: -1 } }, 'limits.memoryBytes'],
      [{ command: 'true', limits: { wallTimeMs: 1.5 } }, 'limits.wallTimeMs'],
      [{ command: 'true', stdin: 'tty' }, 'stdin'],
    ] as const;
    for (const [spec, field] of bad) {
      const err = await sb.start(spec as never).catch((e: unknown) => e);
      expect(err, JSON.stringify(spec)).toBeInstanceOf(InvalidSandboxSpec);
      expect(err).toBeInstanceOf(CogoError);
      expect((err as InvalidSandboxSpec).details).toMatchObject({ field });
    }
  });

  it('clamps limits to the worker maxima', async () => {
    const r = await sb.run(
      { command: 'grep -E "^Max (open files|processes)" /proc/self/limits', limits: { openFiles: 100_000, processes: 40 } },
      { maxLimits: { openFiles: 200 } },
    );
    // bwrap's two helper processes are added to the task's own 40.
    expect(r.stdout.replace(/ +/g, ' ')).toBe('Max processes 42 42 processes \nMax open files 200 200 files \n');
  });
});
