// worker/sandbox/fileop.py checks every path again inside the sandbox: its split_path must accept
// and refuse exactly what validateWorkspacePath (functions/_shared/paths.ts) does, and normalise
// the same way. One python3 run over a table of paths (-B: no __pycache__ left in the tree).
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { validateWorkspacePath } from '../../functions/_shared/paths.ts';

const SANDBOX_DIR = join(import.meta.dirname, '../../worker/sandbox');
const PATHS = [
  'a.txt',
  'dir/sub/a.txt',
  'a//./b',
  './a',
  'a/',
  '',
  '.',
  '/etc/passwd',
  '../x',
  'a/../../x',
  'a/..',
  '..',
  'a\\b',
  'a\0b',
  'a\nb',
  'a\x7fb',
  'é/ü.txt',
  'x'.repeat(255),
  'x'.repeat(256),
  'é'.repeat(128),
  Array(64).fill('d').join('/'),
  Array(65).fill('d').join('/'),
  'a/'.repeat(2048),
];

const SCRIPT = `
import json, sys
sys.path.insert(0, sys.argv[1])
import fileop
out = []
for p in json.load(sys.stdin):
    try:
        out.append('/'.join(fileop.split_path(p, False)))
    except fileop.OpError as e:
        out.append(None)
print(json.dumps(out))
`;

describe("fileop.py's path check", () => {
  it('accepts and refuses what validateWorkspacePath does, normalised alike', () => {
    const r = spawnSync('/usr/bin/python3', ['-B', '-I', '-S', '-c', SCRIPT, SANDBOX_DIR], { input: JSON.stringify(PATHS), encoding: 'utf8' });
    expect(r.stderr).toBe('');
    const python = JSON.parse(r.stdout) as (string | null)[];
    const ts = PATHS.map((p) => {
      try {
        return validateWorkspacePath(p);
      } catch {
        return null;
      }
    });
    expect(python).toEqual(ts);
    expect(ts.filter((p) => p === null).length).toBeGreaterThan(10);
  });
});
