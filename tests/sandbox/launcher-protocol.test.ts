// launcher.py on its own, over its protocol (worker/sandbox/launcher-protocol.ts): spawned
// directly, fed frames good and bad, every reply checked against the protocol's schemas. The
// processes it starts here are plain `sleep`s (no bwrap): what matters is that the launcher and
// its children outlive every bad request.
import { spawn, spawnSync, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { copyFileSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { MAX_FRAME_BYTES, PROTOCOL_FILE, PROTOCOL_VERSION, protocolText, reply, type Reply } from '../../worker/sandbox/launcher-protocol.ts';

const SANDBOX_DIR = join(import.meta.dirname, '../../worker/sandbox');
const PYTHON = '/usr/bin/python3';

/** A launcher.py child of this process, and the replies it has sent (each checked by the schema). */
class Direct {
  readonly proc: ChildProcessWithoutNullStreams;
  readonly replies: Reply[] = [];
  stderr = '';
  private buffered = '';
  private waiters: (() => void)[] = [];
  readonly closed: Promise<number | null>;

  constructor(script = join(SANDBOX_DIR, 'launcher.py')) {
    this.proc = spawn(PYTHON, ['-I', '-S', script, String(process.pid)], { env: { PATH: '/usr/bin:/bin' }, cwd: '/' });
    this.proc.stdin.on('error', () => {});
    this.proc.stdout.setEncoding('utf8').on('data', (text: string) => {
      const lines = (this.buffered + text).split('\n');
      this.buffered = lines.pop()!;
      for (const line of lines) {
        const parsed = reply.safeParse(JSON.parse(line));
        if (!parsed.success) throw new Error(`reply not in the protocol: ${line}`);
        this.replies.push(parsed.data);
      }
      for (const w of this.waiters.splice(0)) w();
    });
    this.proc.stderr.setEncoding('utf8').on('data', (t: string) => (this.stderr += t));
    this.closed = new Promise((resolve) => this.proc.on('close', (code) => resolve(code)));
  }

  write(data: string | Buffer): void {
    this.proc.stdin.write(data);
  }

  send(msg: object): void {
    this.write(JSON.stringify(msg) + '\n');
  }

  /** The first reply (from the start) matching `pred`, waiting up to `ms`. */
  async until<R extends Reply>(pred: (r: Reply) => r is R, ms?: number): Promise<R>;
  async until(pred: (r: Reply) => boolean, ms?: number): Promise<Reply>;
  async until(pred: (r: Reply) => boolean, ms = 10_000): Promise<Reply> {
    const deadline = Date.now() + ms;
    for (;;) {
      const found = this.replies.find(pred);
      if (found) return found;
      if (Date.now() > deadline) throw new Error(`no such reply within ${ms} ms; got ${JSON.stringify(this.replies)}; stderr: ${this.stderr}`);
      await new Promise<void>((resolve) => {
        this.waiters.push(resolve);
        setTimeout(resolve, 100);
      });
    }
  }

  answer(id: number): Promise<Reply> {
    return this.until((r) => r.type !== 'hello' && r.type !== 'exit' && r.id === id);
  }

  alive(): boolean {
    return this.proc.exitCode === null && this.proc.signalCode === null;
  }
}

const launchers: Direct[] = [];
function direct(script?: string): Direct {
  const d = new Direct(script);
  launchers.push(d);
  return d;
}
afterEach(async () => {
  for (const d of launchers.splice(0)) {
    d.proc.stdin.end();
    await d.closed;
  }
});

/** A start request for a plain process (no bwrap), with descriptors for the two filter programs. */
function startSleep(id: number, seconds = 60) {
  return {
    id,
    op: 'start',
    path: '/bin/sleep',
    argv: ['sleep', String(seconds)],
    env: {},
    uid: null,
    gid: null,
    rlimits: [['RLIMIT_CORE', 0, 0]],
    cgroup: null,
    stdin: false,
    fds: [],
    filterFds: [4, 5],
  };
}

/** Namespace inodes for a pin request. */
const NS = { mnt: 1, pid: 2, net: 3, ipc: 4, uts: 5, cgroup: 6 };

/** An enter request running `true` in the persistent sandbox started as `sandbox`. */
function enterTrue(id: number, sandbox: number) {
  return { id, op: 'enter', sandbox, argv: ['true'], env: {}, cwd: '/', uid: 1000, gid: 1000, rlimits: [], stdin: false, cgroup: null };
}

function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return !/^State:\s+Z/m.test(readFileSync(`/proc/${pid}/status`, 'utf8'));
  } catch {
    return false;
  }
}

/** Every kind of bad frame, each with the reply expected (id null where none can be read). */
const BAD_FRAMES: [what: string, frame: string | Buffer, expected: { id: number | null; code: string; message?: RegExp }][] = [
  ['not JSON', 'not json\n', { id: null, code: 'bad_frame' }],
  ['invalid UTF-8', Buffer.from([0xff, 0xfe, 0x0a]), { id: null, code: 'bad_frame' }],
  ['a JSON array', '[1,2]\n', { id: null, code: 'bad_frame' }],
  ['no id', '{"op":"filter"}\n', { id: null, code: 'bad_frame' }],
  ['a boolean id', '{"id":true,"op":"filter"}\n', { id: null, code: 'bad_frame' }],
  ['broken JSON after a readable id', '{"id":101,"op":"start",\n', { id: 101, code: 'bad_frame' }],
  ['an unknown op', '{"id":102,"op":"format_disk"}\n', { id: 102, code: 'unknown_op', message: /format_disk/ }],
  ['a field of the wrong type', '{"id":103,"op":"kill","task":"all","inner":null}\n', { id: 103, code: 'invalid_request', message: /kill\.task: expected integer/ }],
  ['a missing field', '{"id":104,"op":"mount","target":"/tmp/x"}\n', { id: 104, code: 'invalid_request', message: /options: missing/ }],
  ['an extra field', '{"id":105,"op":"filter","sudo":true}\n', { id: 105, code: 'invalid_request', message: /sudo/ }],
  ['a relative path', JSON.stringify({ ...startSleep(106), path: 'sleep' }) + '\n', { id: 106, code: 'invalid_request', message: /start\.path/ }],
  ['a NUL in an argument', JSON.stringify({ ...startSleep(107), argv: ['sleep', '1\u0000'] }) + '\n', { id: 107, code: 'invalid_request', message: /argv\[1\]/ }],
  ['an unknown rlimit', JSON.stringify({ ...startSleep(108), rlimits: [['RLIMIT_NOPE', 1, 1]] }) + '\n', { id: 108, code: 'invalid_request', message: /rlimits\[0\]\[0\]/ }],
  ['a descriptor over stdio', JSON.stringify({ ...startSleep(109), fds: [{ fd: 2, data: 'x' }] }) + '\n', { id: 109, code: 'invalid_request', message: /fds\[0\]\.fd/ }],
  [
    'filter descriptors for the wrong number of programs',
    JSON.stringify({ ...startSleep(110), filterFds: [4] }) + '\n',
    { id: 110, code: 'invalid_request', message: /2 seccomp programs, 1 filterFds/ },
  ],
  ['one descriptor twice', JSON.stringify({ ...startSleep(111), fds: [{ fd: 4, data: 'x' }] }) + '\n', { id: 111, code: 'invalid_request', message: /twice/ }],
  // Protocol 3: persistent sandboxes and commands entered into them.
  [
    'a persistent start without a cgroup',
    JSON.stringify({ ...startSleep(115), persistent: true }) + '\n',
    { id: 115, code: 'invalid_request', message: /persistent sandbox needs a cgroup/ },
  ],
  [
    'a pin of no persistent sandbox',
    JSON.stringify({ id: 116, op: 'pin', task: 9, pid: 1, namespaces: NS }) + '\n',
    { id: 116, code: 'invalid_request', message: /no running persistent sandbox has id 9/ },
  ],
  [
    'a pin without every namespace',
    JSON.stringify({ id: 117, op: 'pin', task: 9, pid: 1, namespaces: { mnt: 1 } }) + '\n',
    { id: 117, code: 'invalid_request', message: /namespaces\.pid: missing/ },
  ],
  ['an enter of no sandbox', JSON.stringify(enterTrue(118, 9)) + '\n', { id: 118, code: 'invalid_request', message: /no running, pinned persistent sandbox has id 9/ }],
  ['an enter with a relative cwd', JSON.stringify({ ...enterTrue(119, 9), cwd: 'workspace' }) + '\n', { id: 119, code: 'invalid_request', message: /enter\.cwd/ }],
  [
    'an enter whose cgroup leaf climbs out',
    JSON.stringify({ ...enterTrue(120, 9), cgroup: { name: '../cmd-x' } }) + '\n',
    { id: 120, code: 'invalid_request', message: /enter\.cgroup\.name/ },
  ],
  ['nesting too deep for the parser', `{"id":114,"op":"filter","x":${'['.repeat(100_000)}${']'.repeat(100_000)}}\n`, { id: 114, code: 'bad_frame', message: /recursion/ }],
  ['a frame over the size limit', `{"id":112,"op":"mount","target":"/tmp/x","options":"${'x'.repeat(MAX_FRAME_BYTES)}"}\n`, { id: 112, code: 'frame_too_large' }],
  // A lone surrogate is valid JSON but cannot be encoded for mount(2): the handler raises.
  ['a request that raises in its handler', '{"id":113,"op":"mount","target":"/tmp/\\ud800","options":"size=1m"}\n', { id: 113, code: 'internal', message: /UnicodeEncodeError/ }],
];

describe('launcher.py over its protocol', () => {
  it('reads the schemas launcher-protocol.ts generates (launcher-protocol.json is not stale)', () => {
    expect(readFileSync(PROTOCOL_FILE, 'utf8'), 'regenerate: npx tsx worker/sandbox/launcher-protocol.ts').toBe(protocolText());
  });

  it('announces its protocol version and capabilities first', async () => {
    const l = direct();
    const hello = await l.until((r) => r.type === 'hello');
    expect(l.replies[0]).toBe(hello);
    expect(hello).toMatchObject({ protocol: PROTOCOL_VERSION, pid: l.proc.pid, capabilities: { seccomp: true, mount: process.geteuid?.() === 0 } });
  });

  it('answers each bad frame with an error for that request and keeps its running processes', async () => {
    const l = direct();
    const sleepers = [1, 2, 3, 4, 5];
    for (const id of sleepers) l.send(startSleep(id));
    const started = await Promise.all(sleepers.map((id) => l.answer(id)));
    const pids = started.map((r) => (r.type === 'started' ? r.pid : 0));
    expect(pids.every((pid) => pid > 0 && processAlive(pid))).toBe(true);
    for (const id of sleepers) l.send({ id: 1000 + id, op: 'opened', task: id });
    for (const id of sleepers) expect(await l.answer(1000 + id)).toMatchObject({ type: 'ok' });

    for (const [what, frame, expected] of BAD_FRAMES) {
      const before = l.replies.length;
      l.write(frame);
      // One reply per frame: a probe right after it is answered next.
      l.send({ id: 500, op: 'filter' });
      const probe = await l.answer(500);
      const answers = l.replies.slice(before);
      expect(answers, what).toHaveLength(2);
      expect(answers[1], what).toBe(probe);
      expect(answers[0], what).toMatchObject({ type: 'error', id: expected.id, code: expected.code });
      if (expected.message) expect(answers[0]!.type === 'error' && answers[0]!.message, what).toMatch(expected.message);
      l.replies.splice(before); // the next probe reuses id 500
    }

    expect(l.alive()).toBe(true);
    expect(pids.filter(processAlive), 'sleepers still running after every bad frame').toEqual(pids);
    expect(l.replies.filter((r) => r.type === 'exit')).toEqual([]);
    // ...and they still answer to their launcher.
    for (const id of sleepers) l.send({ id: 2000 + id, op: 'kill', task: id, inner: null });
    for (const id of sleepers) expect(await l.until((r) => r.type === 'exit' && r.task === id)).toMatchObject({ exit: null, signal: 9 });
  });

  it('skips a huge frame arriving in pieces, and reads the request in the same write after it', async () => {
    const l = direct();
    await l.until((r) => r.type === 'hello');
    const huge = Buffer.alloc(5 * MAX_FRAME_BYTES, 'x');
    huge.write('{"id":7,"op":"mount","options":"');
    for (let i = 0; i < huge.length; i += 1 << 16) l.write(huge.subarray(i, i + (1 << 16)));
    l.write('"}\n{"id":8,"op":"filter"}\n');
    expect(await l.answer(7)).toMatchObject({ type: 'error', code: 'frame_too_large' });
    expect(await l.answer(8)).toMatchObject({ type: 'filter', filter: { programs: [expect.any(String), expect.any(String)] } });
    expect(l.alive()).toBe(true);
  });

  it('answers every request exactly once, in order, including kill and opened', async () => {
    const l = direct();
    l.send(startSleep(1, 0));
    l.send({ id: 2, op: 'opened', task: 1 });
    l.send({ id: 3, op: 'kill', task: 99, inner: null }); // never started: nothing to kill
    l.send({ id: 4, op: 'filter' });
    await l.answer(4);
    expect(await l.until((r) => r.type === 'exit')).toMatchObject({ task: 1, exit: 0, signal: null });
    const answers = l.replies.filter((r) => r.type !== 'hello' && r.type !== 'exit');
    expect(answers.map((r) => [r.type, 'id' in r ? r.id : 0])).toEqual([
      ['started', 1],
      ['ok', 2],
      ['ok', 3],
      ['filter', 4],
    ]);
  });

  it('refuses a second start with the id of a running process', async () => {
    const l = direct();
    l.send(startSleep(1));
    const first = await l.answer(1);
    expect(first.type).toBe('started');
    l.send(startSleep(1));
    await l.until((r) => r.type === 'error' && r.id === 1);
    expect(l.replies.filter((r) => r.type === 'started')).toHaveLength(1);
    l.send({ id: 2, op: 'kill', task: 1, inner: null });
    expect(await l.until((r) => r.type === 'exit')).toMatchObject({ task: 1, signal: 9 });
  });

  it('reports a failed mount as a failure of that request', async () => {
    const l = direct();
    l.send({ id: 1, op: 'mount', target: '/nonexistent/cogo-launcher-test', options: 'size=1m' });
    const r = await l.answer(1);
    expect(r).toMatchObject({ type: 'error', code: 'failed' });
    expect(r.type === 'error' && r.message).toMatch(/^mount \/nonexistent\/cogo-launcher-test: (ENOENT|EPERM)/);
  });

  it('on EOF kills what it started and exits', async () => {
    const l = direct();
    l.send(startSleep(1));
    const r = await l.answer(1);
    const pid = r.type === 'started' ? r.pid : 0;
    expect(processAlive(pid)).toBe(true);
    l.proc.stdin.end();
    expect(await l.closed).toBe(0);
    for (let i = 0; i < 50 && processAlive(pid); i++) await new Promise((res) => setTimeout(res, 20));
    expect(processAlive(pid)).toBe(false);
  });

  it('refuses to start with a protocol file whose schemas use a check it does not implement', () => {
    const dir = mkdtempSync(join(tmpdir(), 'cogo-launcher-'));
    try {
      for (const f of ['launcher.py', 'syscall_filter.py']) copyFileSync(join(SANDBOX_DIR, f), join(dir, f));
      const doc = JSON.parse(protocolText());
      doc.requests.filter.properties.id.multipleOf = 2;
      writeFileSync(join(dir, 'launcher-protocol.json'), JSON.stringify(doc));
      const r = spawnSync(PYTHON, ['-I', '-S', join(dir, 'launcher.py'), String(process.pid)], { encoding: 'utf8', timeout: 10_000, input: '' });
      expect(r.status).toBe(4);
      expect(r.stderr).toContain("unsupported JSON Schema keyword 'multipleOf'");
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
