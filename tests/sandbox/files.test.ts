import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { CogoError } from '../../functions/_shared/errors.ts';
import { ArtifactRejected, InvalidSandboxSpec, InvalidWorkspacePath, WorkspaceFull, collectFile, validateWorkspacePath } from '../../worker/sandbox/index.ts';
import { collect, isRoot, useSandboxRoot } from './helpers.ts';

const sb = useSandboxRoot();
const MiB = 1024 * 1024;

describe('validateWorkspacePath', () => {
  it('normalises good paths', () => {
    expect(validateWorkspacePath('a/b.txt')).toBe('a/b.txt');
    expect(validateWorkspacePath('./src//main.c')).toBe('src/main.c');
    expect(validateWorkspacePath('dir/')).toBe('dir');
    expect(validateWorkspacePath('..hidden/x..y')).toBe('..hidden/x..y');
  });

  it.each([
    ['../escape', "'..'"],
    ['a/../../etc/passwd', "'..'"],
    ['a/..', "'..'"],
    ['/etc/passwd', 'absolute'],
    ['a\0b', 'NUL'],
    ['a\nb', 'control'],
    ['a\\b', 'backslash'],
    ['', 'empty'],
    ['./', 'empty'],
    ['x'.repeat(256), 'longer than 255'],
    [`${'d/'.repeat(2100)}f`, 'longer than 4095'],
    [`${'d/'.repeat(70)}f`, 'deeper'],
  ])('rejects %j (%s)', (p, problem) => {
    let err: unknown;
    try {
      validateWorkspacePath(p);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(InvalidWorkspacePath);
    expect(err).toBeInstanceOf(CogoError);
    expect((err as InvalidWorkspacePath).code).toBe('invalid_workspace_path');
    expect((err as Error).message).toContain(problem);
  });
});

describe('files in and out', () => {
  it('writes files (utf8, base64, modes, nested) owned by the sandbox user, and collects results', async () => {
    const proc = await sb.start({
      command: 'cat notes/a.txt; ./bin/run.sh; stat -c "%U %a" notes/a.txt bin/run.sh; rm notes/a.txt && echo removed; mkdir -p out && echo result > out/r.txt',
      files: [
        { path: 'notes/a.txt', content: 'plain text\n' },
        { path: 'bin/run.sh', content: Buffer.from('#!/bin/sh\necho from-script\n').toString('base64'), encoding: 'base64', mode: 0o755 },
      ],
    });
    const r = await collect(proc);
    expect(r.stdout).toBe('plain text\nfrom-script\nsandbox 644\nsandbox 755\nremoved\n');
    expect((await collectFile(proc.workspace, 'out/r.txt', 100)).toString()).toBe('result\n');
    expect((await collectFile(proc.workspace, 'bin/run.sh', 1000)).toString()).toContain('from-script');
    await proc.cleanup();
  });

  it('refuses file paths that leave the workspace and leaves nothing behind', async () => {
    const before = readdirSync(sb.options().root).sort();
    for (const path of ['../evil', '/etc/evil', 'a/../../evil']) {
      const err = await sb.start({ command: 'true', files: [{ path, content: 'x' }] }).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(InvalidWorkspacePath);
    }
    const dup = await sb
      .start({
        command: 'true',
        files: [
          { path: 'a', content: '1' },
          { path: './a', content: '2' },
        ],
      })
      .catch((e: unknown) => e);
    expect(dup).toBeInstanceOf(InvalidSandboxSpec);
    const bad64 = await sb.start({ command: 'true', files: [{ path: 'a', content: '!!', encoding: 'base64' }] }).catch((e: unknown) => e);
    expect(bad64).toBeInstanceOf(InvalidSandboxSpec);
    expect(readdirSync(sb.options().root).sort()).toEqual(before);
    expect(existsSync('/tmp/evil')).toBe(false);
  });

  it('refuses files larger than the workspace', async () => {
    const err = await sb.start({ command: 'true', files: [{ path: 'big', content: 'x'.repeat(2 * MiB) }], limits: { workspaceBytes: MiB } }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(WorkspaceFull);
  });

  it('removes the workspace on cleanup', async () => {
    const proc = await sb.start({ command: 'echo data > f; mkdir -p d/e; ln -s / d/e/root' });
    await collect(proc);
    expect(existsSync(`${proc.workspace}/f`)).toBe(true);
    await proc.cleanup();
    expect(existsSync(proc.workspace)).toBe(false);
    expect(readFileSync('/proc/self/mounts', 'utf8')).not.toContain(proc.workspace);
    expect(existsSync('/usr/bin')).toBe(true); // the planted link to / was not followed
  });
});

describe('collectFile never follows what the task planted', () => {
  it('rejects symlinks, fifos, devices-to-be, directories and oversize files', async () => {
    const proc = await sb.start({
      command: [
        'echo fine > ok.txt',
        'ln -s /etc/shadow shadow',
        'ln -s /proc/1/environ environ',
        'ln -s / rootlink',
        'mkdir sub && ln -s /etc sub/etc',
        'ln -s ok.txt rel-link',
        'mkfifo fifo',
        'mkdir adir',
        'head -c 5000 /dev/zero > big',
      ].join(' && '),
    });
    const r = await collect(proc);
    expect(r.exit.exitCode).toBe(0);
    const ws = proc.workspace;
    // Positive control: a regular file comes out, exactly at the size cap.
    expect((await collectFile(ws, 'ok.txt', 5)).toString()).toBe('fine\n');
    const cases: [string, string][] = [
      ['shadow', 'symlink'],
      ['environ', 'symlink'],
      ['rel-link', 'symlink'],
      ['rootlink/etc/passwd', 'symlink'],
      ['sub/etc/passwd', 'symlink'],
      ['fifo', 'not a regular file'],
      ['adir', 'not a regular file'],
      ['missing.txt', 'does not exist'],
      ['big', 'larger than 4999'],
      ['ok.txt', 'larger than 4'],
    ];
    for (const [path, problem] of cases) {
      const started = Date.now();
      const err = await collectFile(ws, path, path === 'big' ? 4999 : path === 'ok.txt' ? 4 : 1 << 20).catch((e: unknown) => e);
      expect(err, path).toBeInstanceOf(ArtifactRejected);
      expect((err as Error).message, path).toContain(problem);
      expect(Date.now() - started, path).toBeLessThan(1000); // a fifo must not block
    }
    await expect(collectFile(ws, '../x', 10)).rejects.toBeInstanceOf(InvalidWorkspacePath);
    await proc.cleanup();
  });
});

describe('disk limits', () => {
  it('caps the workspace size', async () => {
    const proc = await sb.start({ command: 'head -c 3000000 /dev/zero > big; echo rc=$?', limits: { workspaceBytes: MiB, fileSizeBytes: 10 * MiB } });
    const r = await collect(proc);
    if (isRoot) {
      expect(r.stderr).toContain('No space left on device');
      expect(statSync(`${proc.workspace}/big`).size).toBeLessThanOrEqual(MiB);
    }
    await proc.cleanup();
  });

  it('caps the size of one file (RLIMIT_FSIZE)', async () => {
    const proc = await sb.start({ command: 'head -c 2000000 /dev/zero > f; echo rc=$?', limits: { fileSizeBytes: 512 * 1024, workspaceBytes: 8 * MiB } });
    const r = await collect(proc);
    expect(r.stdout).toMatch(/^rc=(153|1)\n$/); // SIGXFSZ (128+25) or EFBIG
    expect(statSync(`${proc.workspace}/f`).size).toBe(512 * 1024);
    await proc.cleanup();
  });

  it('caps /tmp and /dev/shm', async () => {
    const r = await sb.run({
      command: 'head -c 3000000 /dev/zero > /tmp/x; head -c 3000000 /dev/zero > /dev/shm/x; stat -c %s /tmp/x /dev/shm/x',
      limits: { workspaceBytes: MiB },
    });
    const sizes = r.stdout.trim().split('\n').map(Number);
    expect(sizes).toHaveLength(2);
    for (const s of sizes) expect(s).toBeLessThanOrEqual(MiB);
  });
});
