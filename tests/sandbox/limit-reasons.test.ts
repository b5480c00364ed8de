// A limit that ends a task is named with its value, end to end (API → worker → bubblewrap → the
// task's reason), whatever the program printed: a writer past the file-size limit killed by
// SIGXFSZ or catching EFBIG, a full workspace, and memory filled by workspace files.
import { describe, expect, it } from 'vitest';
import { py, requireMemoryCgroup, securitySuite } from '../security/helpers.ts';

const MiB = 1024 * 1024;
const s = securitySuite('limitreasons');

describe('reasons that name the limit', () => {
  it('head past fileSizeBytes: killed by SIGXFSZ, the file-size limit named', async () => {
    const r = await s.run({ command: 'head -c 3000000 /dev/zero > big', timeoutMs: 10_000, limits: { fileSizeBytes: MiB } });
    expect(r).toMatchObject({
      status: 'failed',
      exitCode: null,
      signal: 'SIGXFSZ',
      reason: 'file size limit reached (1 MiB): a file hit limits.fileSizeBytes; killed by SIGXFSZ',
    });
  });

  it('a program catching EFBIG and exiting 1 silently: the file left at the limit names it', async () => {
    const r = await s.run({
      command: 'python3 write.py',
      files: [
        py(
          'write.py',
          `
import sys
try:
    with open("big", "wb") as f:
        f.write(b"x" * (3 * 1024 * 1024))
except OSError:
    sys.exit(1)
`,
        ),
      ],
      timeoutMs: 10_000,
      limits: { fileSizeBytes: 2 * MiB },
    });
    expect(r).toMatchObject({
      status: 'failed',
      exitCode: 1,
      stdout: '',
      stderr: '',
      reason: 'file size limit reached (2 MiB): a file hit limits.fileSizeBytes; exited with code 1',
    });
  });

  it("EFBIG on a file in /tmp (gone at exit): stderr's 'File too large' names it", async () => {
    const r = await s.run({ command: 'python3 -c \'open("/tmp/big", "wb").write(b"x" * 3000000)\'', timeoutMs: 10_000, limits: { fileSizeBytes: MiB } });
    expect(r.stderr).toContain('[Errno 27] File too large');
    expect(r).toMatchObject({ status: 'failed', exitCode: 1, reason: 'file size limit reached (1 MiB): a file hit limits.fileSizeBytes; exited with code 1' });
  });

  it('a full workspace names the disk limit, printed ENOSPC or not', async () => {
    const silent = await s.run({
      command: 'python3 fill.py',
      files: [
        py(
          'fill.py',
          `
import sys
try:
    with open("fill", "wb") as f:
        while True:
            f.write(b"x" * 65536)
            f.flush()
except OSError:
    sys.exit(1)
`,
        ),
      ],
      timeoutMs: 10_000,
      limits: { workspaceBytes: 4 * MiB },
    });
    expect(silent).toMatchObject({
      status: 'failed',
      exitCode: 1,
      stderr: '',
      reason: 'disk limit reached (4 MiB): the workspace is full (limits.workspaceBytes); exited with code 1',
    });
    const dd = await s.run({ command: 'dd if=/dev/zero of=fill bs=1M count=64', timeoutMs: 10_000, limits: { workspaceBytes: 4 * MiB } });
    expect(dd.stderr).toContain('No space left on device');
    expect(dd).toMatchObject({ status: 'failed', exitCode: 1, reason: 'disk limit reached (4 MiB): the workspace is full (limits.workspaceBytes); exited with code 1' });
  });

  it('memory filled by workspace files: the memory reason says how much of it they hold', async () => {
    requireMemoryCgroup();
    const r = await s.run({
      command: "dd if=/dev/zero of=fill bs=1M count=48 2>/dev/null && python3 -c 'a = []\nwhile True: a.append(bytearray(1 << 20))'",
      timeoutMs: 10_000,
      limits: { memoryBytes: 64 * MiB, workspaceBytes: 256 * MiB },
    });
    expect(r).toMatchObject({ status: 'failed', signal: 'SIGKILL', reason: 'memory limit reached (64 MiB); workspace files hold 48 MiB of it' });
    await s.expectHealthy();
  });
});
