// The seccomp filter as the worker sees it: what sandboxFacts reports, the shape of the programs
// (every call of a non-native ABI denied), the launcher refusing to run without libseccomp, and
// no descriptor of bwrap's left open in the task. Denials inside tasks: tests/security/seccomp.test.ts.
import { spawnSync } from 'node:child_process';
import { copyFileSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { sandboxFacts } from '../../worker/sandbox/index.ts';
import { seccompFilter } from '../../worker/sandbox/launcher.ts';
import { useSandboxRoot } from './helpers.ts';

const sb = useSandboxRoot();
const SANDBOX_DIR = join(import.meta.dirname, '../../worker/sandbox');

/** cBPF instructions of a program: [code, jt, jf, k]. */
function decode(base64: string): [number, number, number, number][] {
  const b = Buffer.from(base64, 'base64');
  return Array.from({ length: b.length / 8 }, (_, i) => [b.readUInt16LE(i * 8), b[i * 8 + 2]!, b[i * 8 + 3]!, b.readUInt32LE(i * 8 + 4)]);
}

const BPF_LD_W_ABS = 0x20;
const BPF_JEQ_K = 0x15;
const BPF_RET_K = 0x06;
const RET_EPERM = 0x00050001; // SECCOMP_RET_ERRNO | EPERM
const AUDIT_ARCH_X86_64 = 0xc000003e;

describe('seccomp filter', () => {
  it('is reported by sandboxFacts, with the calls the trust-boundary review found open', async () => {
    const facts = await sandboxFacts();
    expect(facts.seccomp.denied).toEqual(
      expect.arrayContaining([
        'io_uring_setup',
        'userfaultfd',
        'add_key',
        'keyctl',
        'request_key',
        'memfd_secret',
        'pidfd_getfd',
        'process_vm_readv',
        'process_vm_writev',
        'bpf',
        'perf_event_open',
        'kexec_load',
        'open_by_handle_at',
        'mount',
        'setns',
      ]),
    );
    expect(facts.seccomp.denied).not.toContain('ptrace');
    expect(facts.protections).toMatch(/^seccomp=denylist\(\d+ syscalls \+ \d+ rules, EPERM; 32-bit ABI denied\); proc-masked=[\w.,-]*cmdline/);
  });

  it.runIf(process.arch === 'x64')('answers every call of another ABI (32-bit x86, x32) with EPERM', async () => {
    const [denylist] = (await seccompFilter()).programs;
    const insns = decode(denylist!);
    // ld arch; jeq x86-64 ? next : bad-arch action
    expect(insns[0]).toEqual([BPF_LD_W_ABS, 0, 0, 4]);
    const [code, jt, jf, k] = insns[1]!;
    expect([code, jt, k]).toEqual([BPF_JEQ_K, 0, AUDIT_ARCH_X86_64]);
    expect(insns[2 + jf]).toEqual([BPF_RET_K, 0, 0, RET_EPERM]);
  });

  it('the launcher refuses to start without libseccomp, naming the package to install', () => {
    const dir = mkdtempSync(join(tmpdir(), 'cogo-launcher-'));
    try {
      copyFileSync(join(SANDBOX_DIR, 'launcher.py'), join(dir, 'launcher.py'));
      const filter = readFileSync(join(SANDBOX_DIR, 'syscall_filter.py'), 'utf8');
      expect(filter).toMatch(/^import seccomp$/m);
      writeFileSync(join(dir, 'syscall_filter.py'), filter.replace(/^import seccomp$/m, 'import seccomp_missing as seccomp'));
      const r = spawnSync('/usr/bin/python3', ['-I', '-S', join(dir, 'launcher.py'), String(process.pid)], { encoding: 'utf8', timeout: 10_000 });
      expect(r.status).toBe(3);
      expect(r.stderr).toContain('apt-get install python3-seccomp');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("leaves none of bwrap's descriptors (options, /etc files, filter programs) open in the task", async () => {
    const r = await sb.run({ command: 'ls /proc/self/fd | sort -n | tr "\\n" " "' });
    expect(r.exit.exitCode).toBe(0);
    // stdin, stdout, stderr and the directory ls is reading.
    expect(r.stdout).toBe('0 1 2 3 ');
  });

  it('starts under the smallest file size limit (bwrap writes the /etc files under it)', async () => {
    const r = await sb.run({ command: 'cat /etc/passwd /etc/hosts | wc -l', limits: { fileSizeBytes: 1 } });
    expect(r).toMatchObject({ stdout: '6\n', stderr: '' });
    expect(r.exit.exitCode).toBe(0);
  });
});
