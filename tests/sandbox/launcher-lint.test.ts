// The launcher's Python (worker/sandbox/*.py) type-checked and linted: mypy --strict and flake8,
// Debian's packages (PyPI is not used here; .ci/run installs them). Run by hand:
//   flake8 --max-line-length 150 worker/sandbox/*.py
//   mypy --strict --python-executable /usr/bin/python3 worker/sandbox/*.py   (seccomp has no stubs)
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';

const SANDBOX_DIR = join(import.meta.dirname, '../../worker/sandbox');
const FILES = readdirSync(SANDBOX_DIR)
  .filter((f) => f.endsWith('.py'))
  .map((f) => join(SANDBOX_DIR, f));

function tool(name: string, pkg: string): string {
  const path = `/usr/bin/${name}`;
  if (!existsSync(path)) throw new Error(`${name} is not installed; install ${pkg} (apt-get install ${pkg})`);
  return path;
}

describe("the launcher's Python", () => {
  it('passes flake8', () => {
    const r = spawnSync(tool('flake8', 'flake8'), ['--max-line-length', '150', ...FILES], { encoding: 'utf8', timeout: 60_000 });
    expect(r.stdout + r.stderr).toBe('');
    expect(r.status).toBe(0);
  });

  it('passes mypy --strict (full type hints)', () => {
    const dir = mkdtempSync(join(tmpdir(), 'cogo-mypy-'));
    try {
      // Debian's python3-seccomp ships no type stubs; everything else is checked against typeshed.
      writeFileSync(join(dir, 'mypy.ini'), '[mypy]\nstrict = True\npython_executable = /usr/bin/python3\n\n[mypy-seccomp]\nignore_missing_imports = True\n');
      const r = spawnSync(tool('mypy', 'mypy'), ['--config-file', join(dir, 'mypy.ini'), '--cache-dir', join(dir, 'cache'), ...FILES], {
        encoding: 'utf8',
        timeout: 120_000,
        cwd: dir,
      });
      expect(r.stdout + r.stderr).toMatch(/^Success: no issues found/);
      expect(r.status).toBe(0);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe("the launcher's descriptor checks", () => {
  // A launcher holding ~100 live sandboxes has descriptors past 1024 (namespaces, pidfds, spare
  // sockets): select() refuses those ("filedescriptor out of range", seen at the 94th sandbox of
  // `npm run bench -- sandboxes`), so every readiness check polls.
  it('polls descriptors above 1024, and no check uses select()', () => {
    const script = [
      'import os, sys',
      `sys.path.insert(0, ${JSON.stringify(SANDBOX_DIR)})`,
      'import launcher',
      'r, w = os.pipe()',
      'hi = os.dup2(r, 3000)',
      'print(launcher.readable(hi, 0))',
      "os.write(w, b'x')",
      'print(launcher.readable(hi, 0.1))',
    ].join('\n');
    const r = spawnSync('/usr/bin/python3', ['-I', '-S', '-B', '-c', script], { encoding: 'utf8', timeout: 30_000 });
    expect(r.stderr).toBe('');
    expect(r.stdout).toBe('False\nTrue\n');
    for (const f of FILES) expect(readFileSync(f, 'utf8'), f).not.toMatch(/select\.select\(/);
  });
});
