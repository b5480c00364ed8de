// launcher.ts, the worker's side of the launcher protocol: a bad request fails only itself (real
// sandboxes keep running), a launcher of another protocol version is refused by name, and a reply
// stream that cannot be read restarts the launcher instead of leaving requests hanging.
import { copyFileSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { SandboxStartFailed, SandboxUnavailable } from '../../worker/sandbox/errors.ts';
import { Launcher, launch, mountTmpfs, seccompFilter } from '../../worker/sandbox/launcher.ts';
import { MAX_FRAME_BYTES, PROTOCOL_VERSION, protocolText } from '../../worker/sandbox/launcher-protocol.ts';
import { collect, isRoot, liveProcessesOf, slotUid, useSandboxRoot } from './helpers.ts';

const sb = useSandboxRoot();
const SANDBOX_DIR = join(import.meta.dirname, '../../worker/sandbox');
const PYTHON = '/usr/bin/python3';
const dirs: string[] = [];
afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

/** A directory holding launcher.py's files, with `files` replacing or adding some. */
function launcherDir(files: Record<string, string> = {}): string {
  const dir = mkdtempSync(join(tmpdir(), 'cogo-launcher-'));
  dirs.push(dir);
  for (const f of ['launcher.py', 'syscall_filter.py', 'launcher-protocol.json']) copyFileSync(join(SANDBOX_DIR, f), join(dir, f));
  for (const [name, text] of Object.entries(files)) writeFileSync(join(dir, name), text);
  return dir;
}

/** A fake launcher: announces protocol `version`, then answers every request line with `answer` (`%(id)d`: its id). */
function fakeLauncher(answer: string, version = PROTOCOL_VERSION): string {
  const dir = launcherDir({
    'fake.py': `import json, os, sys
sys.stdout.write(json.dumps({"type": "hello", "protocol": ${version}, "pid": os.getpid(), "python": "3", "capabilities": {"seccomp": True, "mount": False}}) + "\\n")
sys.stdout.flush()
for line in sys.stdin:
    sys.stdout.write(${JSON.stringify(answer)} % {"id": json.loads(line)["id"]} + "\\n")
    sys.stdout.flush()
`,
  });
  return join(dir, 'fake.py');
}

/** The launchers (launcher.py processes, or another script) that are children of this process. */
function launcherPids(script = 'launcher.py'): number[] {
  const out: number[] = [];
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const stat = readFileSync(`/proc/${name}/stat`, 'utf8');
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      if (ppid === process.pid && readFileSync(`/proc/${name}/cmdline`, 'utf8').includes(script)) out.push(Number(name));
    } catch {
      // exited while we looked
    }
  }
  return out;
}

const settledWithin = (p: Promise<unknown>, ms: number) => Promise.race([p.then(() => true), new Promise((r) => setTimeout(() => r(false), ms))]);

describe('launcher client', () => {
  it('a bad request fails alone: running sandboxes, and the launcher, carry on', async () => {
    const running = await Promise.all(Array.from({ length: 5 }, () => sb.start({ command: 'sleep 60' })));
    const [launcherPid] = launcherPids();
    expect(launcherPid).toBeDefined();

    // Invalid for the launcher (two filter programs, one descriptor): its error answers this start.
    const invalid = launch({ path: '/bin/true', argv: [], fds: [], filterFds: [4], owner: null, rlimits: [], cgroup: null, stdin: false });
    await expect(invalid).rejects.toThrow(SandboxStartFailed);
    await expect(invalid).rejects.toThrow(/2 seccomp programs, 1 filterFds/);
    // Over the frame limit: refused before it is sent.
    const huge = launch({
      path: '/bin/true',
      argv: [],
      fds: [{ fd: 4, data: 'x'.repeat(MAX_FRAME_BYTES) }],
      filterFds: [5, 6],
      owner: null,
      rlimits: [],
      cgroup: null,
      stdin: false,
    });
    await expect(huge).rejects.toThrow(/exceeds the launcher's frame limit/);
    // Raises inside the launcher (a lone surrogate cannot be encoded for mount(2)).
    await expect(mountTmpfs('/tmp/\ud800', 'size=1m')).rejects.toThrow(/UnicodeEncodeError/);

    expect(launcherPids()).toEqual([launcherPid]);
    for (const p of running) expect(await settledWithin(p.exited, 50)).toBe(false);
    if (isRoot) for (const p of running) expect(liveProcessesOf(slotUid(p)).some((x) => x.cmd.startsWith('sleep 60'))).toBe(true);
    expect((await seccompFilter()).programs).toHaveLength(2);
    const next = await sb.run({ command: 'echo still' });
    expect(next.stdout).toBe('still\n');
    for (const p of running) p.kill('killed');
    for (const p of running) expect((await collect(p)).exit).toMatchObject({ reason: 'killed', signal: 'SIGKILL' });
  });

  it('refuses a launcher of another protocol version, naming both', async () => {
    const doc = JSON.parse(protocolText());
    const dir = launcherDir({ 'launcher-protocol.json': JSON.stringify({ ...doc, version: PROTOCOL_VERSION - 1 }) });
    const l = new Launcher(PYTHON, false, { script: join(dir, 'launcher.py') });
    const err = await l.filter().catch((e: unknown) => e);
    expect(err).toBeInstanceOf(SandboxUnavailable);
    expect((err as SandboxUnavailable).message).toMatch(
      new RegExp(`speaks protocol ${PROTOCOL_VERSION - 1}, this worker protocol ${PROTOCOL_VERSION}: .*launcher\\.py and launcher\\.ts are from different versions`),
    );
    expect((err as SandboxUnavailable).details).toMatchObject({ launcherProtocol: PROTOCOL_VERSION - 1, workerProtocol: PROTOCOL_VERSION });
    expect(l.dead).toBe(true);
    // Later requests get the same answer, not a hang.
    await expect(l.filter()).rejects.toThrow(/speaks protocol/);
  });

  it('gives up on a launcher that never announces itself (one from before the handshake)', async () => {
    const dir = launcherDir({ 'silent.py': 'import sys\nfor line in sys.stdin:\n    pass\n' });
    const l = new Launcher(PYTHON, false, { script: join(dir, 'silent.py'), helloTimeoutMs: 300 });
    await expect(l.filter()).rejects.toThrow(SandboxUnavailable);
    await expect(l.filter()).rejects.toThrow(`did not announce its protocol within 0.3 s (this worker speaks protocol ${PROTOCOL_VERSION}`);
  });

  it('carries on past an error for a frame it did not send (a warning), answering its own requests', async () => {
    const filter = '{"type":"filter","id":%(id)d,"filter":{"denied":[],"rules":[],"bytes":0,"programs":[]}}';
    const l = new Launcher(PYTHON, false, {
      script: fakeLauncher(`{"type":"error","id":null,"code":"bad_frame","message":"not JSON"}\n{"type":"error","id":4242,"code":"unknown_op","message":"no"}\n${filter}`),
    });
    const warnings: string[] = [];
    const onWarning = (w: Error) => warnings.push(w.message);
    process.on('warning', onWarning);
    try {
      expect(await l.filter()).toEqual({ denied: [], rules: [], bytes: 0, programs: [] });
      await new Promise((r) => setImmediate(r));
      expect(warnings).toEqual([expect.stringMatching(/bad_frame for a frame this worker did not send \(id null\): not JSON/), expect.stringMatching(/unknown_op .*id 4242/)]);
      expect(l.dead).toBe(false);
    } finally {
      process.off('warning', onWarning);
      await l.stop();
    }
  });

  for (const [what, answer, message] of [
    ['a reply that is not JSON', '}{ garbage', /stopped after a reply that is not JSON: \}\{ garbage/],
    ['a reply not in the protocol', '{"type":"started","id":"one"}', /stopped after a reply not in the protocol/],
    ['a reply to a request never made', '{"type":"ok","id":999}', /stopped after a ok reply to request 999/],
  ] as const) {
    it(`fails every request in flight and ends the launcher on ${what}`, async () => {
      const l = new Launcher(PYTHON, false, { script: fakeLauncher(answer) });
      const inFlight = [l.filter(), l.launch({ path: '/bin/true', argv: [], fds: [], filterFds: [4, 5], owner: null, rlimits: [], cgroup: null, stdin: false })];
      for (const p of inFlight) {
        await expect(p).rejects.toThrow(SandboxStartFailed);
        await expect(p).rejects.toThrow(message);
      }
      expect(l.dead).toBe(true);
      await expect(l.filter()).rejects.toThrow(message);
      for (let i = 0; i < 100 && launcherPids('fake.py').length > 0; i++) await new Promise((r) => setTimeout(r, 20));
      expect(launcherPids('fake.py'), 'the launcher was killed').toEqual([]);
    });
  }
});
