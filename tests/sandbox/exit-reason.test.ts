// The reason sentence of an ended command: each limit named with its value and field, whatever
// the program printed, and the file-size default never below the workspace.
import { describe, expect, it } from 'vitest';
import { describeExit, DISK_FULL_SLACK_BYTES, type ExitEvidence, NO_EVIDENCE } from '../../worker/sandbox/exit-reason.ts';
import { DEFAULT_LIMITS, resolveLimits } from '../../worker/sandbox/options.ts';
import type { SandboxExit } from '../../worker/sandbox/types.ts';

const MiB = 1024 * 1024;
const limits = { memoryBytes: 256 * MiB, fileSizeBytes: 64 * MiB, workspaceBytes: 16 * MiB };

function reason(exit: Partial<SandboxExit>, evidence: Partial<ExitEvidence> = {}): string {
  const full = { reason: 'exited' as const, exitCode: 1, signal: null, outputTruncated: false, ...exit, evidence: { ...NO_EVIDENCE, ...evidence } };
  return describeExit({ exit: full, limits, timeoutMs: 5000 }).reason;
}

describe('exit reasons', () => {
  it('SIGXFSZ names the file-size limit', () => {
    expect(reason({ exitCode: null, signal: 'SIGXFSZ' })).toBe('file size limit reached (64 MiB): a file hit limits.fileSizeBytes; killed by SIGXFSZ');
  });

  it('a caught EFBIG (exit 1) names it by the file left at the limit, or by stderr', () => {
    const expected = 'file size limit reached (64 MiB): a file hit limits.fileSizeBytes; exited with code 1';
    expect(reason({}, { fileAtSizeLimit: true })).toBe(expected);
    expect(reason({}, { stderrFileTooLarge: true, workspaceFreeBytes: 8 * MiB, workspaceUsedBytes: 8 * MiB })).toBe(expected);
  });

  it('a full workspace names the disk limit whatever stderr says', () => {
    const expected = 'disk limit reached (16 MiB): the workspace is full (limits.workspaceBytes); exited with code 1';
    expect(reason({}, { workspaceUsedBytes: 16 * MiB, workspaceFreeBytes: 0 })).toBe(expected);
    expect(reason({}, { workspaceUsedBytes: 16 * MiB - 4096, workspaceFreeBytes: 4096, stderrNoSpace: true })).toBe(expected);
    expect(reason({ exitCode: 2 }, { workspaceUsedBytes: 16 * MiB - 4096, workspaceFreeBytes: DISK_FULL_SLACK_BYTES })).toBe('exited with code 2');
  });

  it('ENOSPC on stderr with room in the workspace names /tmp and /dev/shm too', () => {
    expect(reason({}, { workspaceUsedBytes: 0, workspaceFreeBytes: 16 * MiB, stderrNoSpace: true })).toBe(
      'disk limit reached (16 MiB): /workspace, /tmp or /dev/shm is full (limits.workspaceBytes); exited with code 1',
    );
  });

  it("the memory reason names the workspace's share when it is large", () => {
    const mem = (used: number | null) => reason({ reason: 'memory_limit', exitCode: null, signal: 'SIGKILL' }, { workspaceUsedBytes: used });
    expect(mem(200 * MiB)).toBe('memory limit reached (256 MiB); workspace files hold 200 MiB of it');
    expect(mem(10 * MiB)).toBe('memory limit reached (256 MiB)');
    expect(mem(null)).toBe('memory limit reached (256 MiB)');
  });

  it('plain exits, success and output cuts keep their sentences', () => {
    expect(reason({ exitCode: 3 })).toBe('exited with code 3');
    expect(reason({ exitCode: null, signal: 'SIGSEGV' })).toBe('killed by SIGSEGV');
    expect(reason({ exitCode: 0 }, { fileAtSizeLimit: true })).toBe('exited with code 0');
    expect(reason({ exitCode: 0, outputTruncated: true })).toBe('exited with code 0; output past the byte limit was dropped');
    expect(reason({ exitCode: null, signal: 'SIGXFSZ', outputTruncated: true })).toBe(
      'file size limit reached (64 MiB): a file hit limits.fileSizeBytes; killed by SIGXFSZ; output past the byte limit was dropped',
    );
    expect(reason({ reason: 'timeout', exitCode: null, signal: 'SIGKILL' })).toBe('wall time limit of 5000 ms reached');
  });

  it('no produced reason has a double space', () => {
    const all = [
      reason({ exitCode: null, signal: 'SIGXFSZ' }),
      reason({}, { workspaceFreeBytes: 0 }),
      reason({}, { stderrNoSpace: true }),
      reason({ reason: 'memory_limit' }, { workspaceUsedBytes: 200 * MiB }),
    ];
    for (const r of all) expect(r).not.toContain('  ');
  });
});

describe('file-size default', () => {
  it('is never below the workspace unless the task sets it', () => {
    expect(DEFAULT_LIMITS.fileSizeBytes).toBeGreaterThanOrEqual(DEFAULT_LIMITS.workspaceBytes);
    expect(resolveLimits({}).fileSizeBytes).toBe(resolveLimits({}).workspaceBytes);
    expect(resolveLimits({ workspaceBytes: 3 * 1024 * MiB }).fileSizeBytes).toBe(3 * 1024 * MiB);
    // Up to the file-size maximum only.
    expect(resolveLimits({ workspaceBytes: 8 * 1024 * MiB }).fileSizeBytes).toBe(4 * 1024 * MiB);
    // A task's own value stands, below or above the workspace.
    expect(resolveLimits({ workspaceBytes: 64 * MiB, fileSizeBytes: MiB }).fileSizeBytes).toBe(MiB);
    expect(resolveLimits({ workspaceBytes: 4 * MiB, fileSizeBytes: 64 * MiB }).fileSizeBytes).toBe(64 * MiB);
  });
});
