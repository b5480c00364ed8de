import { describe, expect, it } from 'vitest';
import { ARTIFACT_LIMITS } from '../../functions/_shared/artifacts/patterns.ts';
import { collectArtifacts, type Artifact } from '../../worker/sandbox/index.ts';
import { useSandboxRoot } from './helpers.ts';

const sb = useSandboxRoot();

const summary = (list: Artifact[]) => list.map((a) => [a.path, a.error ?? a.content.toString()]);

describe('collectArtifacts', () => {
  it('expands globs without entering symlinked directories (a loop included) and keeps the caps', async () => {
    const r = await sb.run({
      command: 'mkdir -p a/b && for f in 1 2 3 4 5; do echo "file $f" > a/b/$f.txt; done && ln -s . a/loop && ln -s / a/root && echo top > top.txt',
    });
    expect(r.exit.exitCode).toBe(0);
    const ws = r.proc.workspace;

    expect(summary(await collectArtifacts(ws, ['**/*.txt']))).toEqual([
      ['a/b/1.txt', 'file 1\n'],
      ['a/b/2.txt', 'file 2\n'],
      ['a/b/3.txt', 'file 3\n'],
      ['a/b/4.txt', 'file 4\n'],
      ['a/b/5.txt', 'file 5\n'],
      ['top.txt', 'top\n'],
    ]);
    // The symlinks match a glob of their own: refused, not followed.
    expect(summary(await collectArtifacts(ws, ['a/*']))).toEqual([
      ['a/loop', 'is a symlink'],
      ['a/root', 'is a symlink'],
    ]);

    const capped = await collectArtifacts(ws, ['a/b/?.txt'], { ...ARTIFACT_LIMITS, files: 2 });
    expect(summary(capped)).toEqual([
      ['a/b/1.txt', 'file 1\n'],
      ['a/b/2.txt', 'file 2\n'],
      ['.cogo-artifacts-truncated', 'more than 2 files or 20000 directory entries matched; the rest were skipped'],
    ]);
    const total = await collectArtifacts(ws, ['a/b/1.txt', 'a/b/2.txt', 'a/b/3.txt'], { ...ARTIFACT_LIMITS, fileBytes: 10, totalBytes: 15 });
    expect(summary(total)).toEqual([
      ['a/b/1.txt', 'file 1\n'],
      ['a/b/2.txt', 'file 2\n'],
      ['a/b/3.txt', "is larger than 1 bytes (the task's artifacts may total 15 bytes)"],
    ]);
  });

  it('reads a huge directory only up to the entry cap', async () => {
    const r = await sb.run({ command: 'mkdir many && cd many && seq 1 5000 | xargs touch' });
    expect(r.exit.exitCode).toBe(0);
    const list = await collectArtifacts(r.proc.workspace, ['many/*'], { ...ARTIFACT_LIMITS, files: 10_000, entriesVisited: 100 });
    const truncated = list.pop();
    expect(truncated?.path).toBe('.cogo-artifacts-truncated');
    // The walk starts in "many" (the pattern's literal prefix): 100 of its 5000 entries, then the cap.
    expect(list.length).toBe(100);
    expect(list.every((a) => /^many\/\d+$/.test(a.path) && a.content?.length === 0)).toBe(true);
  });
});
