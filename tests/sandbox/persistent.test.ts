// Persistent sandboxes (worker/sandbox/persistent.ts, launcher.py `pin`/`enter`), with real
// bubblewrap and no stack: state carries over between commands, each command is started and
// reported like a task and killed alone, the sandbox's kill leaves nothing, and an attacker's
// command reaches neither another sandbox, a plain task, the host's files nor the entering helper.
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, statSync, writeFileSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { startSandbox, type SandboxProcess } from '../../worker/sandbox/index.ts';
import { startPersistentSandbox, type ExecSpec, type PersistentSandbox, type PersistentSandboxSpec } from '../../worker/sandbox/persistent.ts';
import { requireRoot } from '../helpers/root.ts';
import { collect, isRoot, liveProcessesOf, TEST_UID_BASE, type Finished } from './helpers.ts';

let root = '';
const live: PersistentSandbox[] = [];
const tasks: SandboxProcess[] = [];

beforeAll(() => {
  root = mkdtempSync(join(tmpdir(), 'cogo-persistent-test-'));
});
afterEach(async () => {
  for (const t of tasks.splice(0)) {
    t.kill('killed');
    await t.cleanup();
  }
  for (const s of live.splice(0)) {
    s.kill();
    const report = await s.cleanup();
    expect(report).toEqual({ clean: true, processesLeft: 0, cgroupsLeft: [], workspaceLeft: false });
  }
});
afterAll(async () => {
  const left = readdirSync(root).filter((n) => n.startsWith('ws-'));
  for (const n of left) execFileSync('umount', ['--lazy', join(root, n)], { stdio: 'ignore' });
  await rm(root, { recursive: true, force: true });
  if (left.length > 0) throw new Error(`workspaces left behind: ${left.join(', ')}`);
});

async function sandbox(spec: PersistentSandboxSpec = {}): Promise<PersistentSandbox> {
  const s = await startPersistentSandbox(spec, { root, uid: TEST_UID_BASE });
  live.push(s);
  return s;
}

async function run(s: PersistentSandbox, spec: ExecSpec | string): Promise<Finished> {
  return collect(await s.exec(typeof spec === 'string' ? { command: spec } : spec));
}

/** Output of a command that must succeed. */
async function ok(s: PersistentSandbox, spec: ExecSpec | string): Promise<string> {
  const r = await run(s, spec);
  expect(r.exit, r.stderr).toMatchObject({ exitCode: 0, reason: 'exited' });
  return r.stdout;
}

/** Host uid of a sandbox (its workspace tmpfs belongs to it). */
const uidOf = (s: PersistentSandbox) => statSync(s.workspace).uid;

const alive = (pid: number) => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

/** The launcher this test process started (a child running launcher.py). */
function launcherPid(): number {
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const stat = readFileSync(`/proc/${name}/stat`, 'utf8');
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      if (ppid === process.pid && readFileSync(`/proc/${name}/cmdline`, 'utf8').includes('launcher.py')) return Number(name);
    } catch {
      // gone
    }
  }
  throw new Error('no launcher');
}

/** Namespace descriptors the launcher holds (nsfs links such as mnt:[4026532178]). */
const launcherNsFds = () =>
  readdirSync(`/proc/${launcherPid()}/fd`)
    .map((fd) => {
      try {
        return readlinkSync(`/proc/${launcherPid()}/fd/${fd}`);
      } catch {
        return '';
      }
    })
    .filter((l) => /^(mnt|pid|net|ipc|uts|cgroup|user):\[/.test(l));

requireRoot('Persistent sandboxes');

describe.runIf(isRoot)('a persistent sandbox', () => {
  it('keeps files, /tmp and background processes from one command for the next', async () => {
    const s = await sandbox();
    await ok(s, 'echo a > f; echo t > /tmp/t; sleep 300 >/dev/null 2>&1 & echo $! > bg.pid');
    expect(await ok(s, 'cat f /tmp/t; kill -0 $(cat bg.pid) && ps -o args= -p $(cat bg.pid)')).toBe('a\nt\nsleep 300\n');
    // A server left on the sandbox's loopback answers a later command.
    await ok(
      s,
      `python3 -c "
import socket, os
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.bind(('127.0.0.1', 7000)); s.listen()
if os.fork(): os._exit(0)
os.setsid()
while True:
    c, _ = s.accept(); c.sendall(b'pong'); c.close()
" >/dev/null 2>&1`,
    );
    expect(
      await ok(
        s,
        `python3 -c "
import socket
c = socket.create_connection(('127.0.0.1', 7000)); print(c.recv(10).decode())"`,
      ),
    ).toBe('pong\n');
  });

  it('runs a command in its cwd, with the base env < the sandbox env < its own', async () => {
    const s = await sandbox({ env: { SBX: 'sandbox', BOTH: 'sandbox' } });
    await ok(s, 'mkdir -p sub/dir');
    const out = await ok(s, { command: 'pwd; echo "$SBX $BOTH $OWN $HOME $PATH $HOSTNAME"; env | wc -l', cwd: '/workspace/sub/dir', env: { BOTH: 'command', OWN: 'own' } });
    expect(out).toBe('/workspace/sub/dir\nsandbox command own /workspace /usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin sandbox\n13\n');
    expect(await ok(s, { command: ['pwd'], cwd: '/tmp' })).toBe('/tmp\n');
    const missing = await run(s, { command: 'true', cwd: '/nowhere' });
    expect(missing.exit.exitCode).toBe(125);
    expect(missing.stderr).toMatch(/cannot enter the sandbox \(chdir \/nowhere\): .*No such file/);
  });

  it('enters as the sandbox user with nothing of the host: no capabilities, no groups, no_new_privs, both filters, only stdio', async () => {
    const s = await sandbox();
    const out = await ok(
      s,
      'grep -E "^(Uid|Gid|Groups|Cap(Inh|Prm|Eff|Bnd|Amb)|NoNewPrivs|Seccomp|Seccomp_filters):" /proc/self/status; ls /proc/self/fd | tr "\\n" " "; echo; hostname; id -un',
    );
    expect(out).toBe(
      [
        'Uid:\t1000\t1000\t1000\t1000',
        'Gid:\t1000\t1000\t1000\t1000',
        'Groups:\t ', // the kernel ends the (empty) list with a space
        'CapInh:\t0000000000000000',
        'CapPrm:\t0000000000000000',
        'CapEff:\t0000000000000000',
        'CapBnd:\t0000000000000000',
        'CapAmb:\t0000000000000000',
        'NoNewPrivs:\t1',
        'Seccomp:\t2',
        'Seccomp_filters:\t2',
        // ls's own directory descriptor is 3
        '0 1 2 3 ',
        'sandbox',
        'sandbox',
        '',
      ].join('\n'),
    );
    // The filter and the kernel refuse what the sandbox forbids, as in a task.
    const denied = await run(s, 'unshare -n true 2>&1; echo "unshare=$?"; unshare -U true 2>&1; echo "userns=$?"; mount -t tmpfs x /tmp 2>/dev/null; echo "mount=$?"');
    expect(denied.stdout).toMatch(/^unshare: unshare failed: Operation not permitted\nunshare=1\nunshare: unshare failed: No space left on device\nuserns=1\nmount=32\n$/);
  });

  it('reports exit codes, signals, output and usage like a task', async () => {
    const s = await sandbox();
    const r = await run(s, { command: 'echo out; echo err >&2; exit 3' });
    expect(r).toMatchObject({ stdout: 'out\n', stderr: 'err\n', exit: { exitCode: 3, signal: null, reason: 'exited', outputTruncated: false } });
    expect(r.exit.usage.wallMs).toBeGreaterThan(0);
    const killed = await run(s, 'kill -TERM $$');
    expect(killed.exit).toMatchObject({ exitCode: null, signal: 'SIGTERM', reason: 'exited' });
    const p = await s.exec({ command: 'read x; echo "got $x"', stdin: 'pipe' });
    p.stdin!.end('hello\n');
    expect((await collect(p)).stdout).toBe('got hello\n');
    const flood = await run(s, { command: 'yes', limits: { outputBytes: 1000 } });
    expect(flood.exit).toMatchObject({ reason: 'output_limit', outputTruncated: true });
    expect(flood.stdout.length).toBe(1000);
    const spin = await run(s, { command: 'while :; do :; done', limits: { cpuTimeMs: 300 } });
    expect(spin.exit.reason).toBe('cpu_limit');
    expect(spin.exit.usage.cpuUserMs + spin.exit.usage.cpuSystemMs).toBeGreaterThanOrEqual(250);
  });

  it('cancelling or timing out one command kills only its own processes; the sandbox and the others live on', async () => {
    const s = await sandbox();
    await ok(s, 'sleep 300 >/dev/null 2>&1 & echo $! > keep.pid');
    const other = await s.exec({ command: 'sleep 302' });
    const victim = await s.exec({ command: 'sleep 301 >/dev/null & sleep 300' });
    await sleep(200);
    victim.kill('cancelled');
    expect((await collect(victim)).exit).toMatchObject({ signal: 'SIGKILL', reason: 'cancelled' });
    const timedOut = await run(s, { command: 'sleep 303 >/dev/null & sleep 304', limits: { wallTimeMs: 300 } });
    expect(timedOut.exit.reason).toBe('timeout');
    expect(await ok(s, 'ps -e -o args= | grep "^sleep" | sort')).toBe('sleep 300\nsleep 302\n');
    other.kill('cancelled');
    await other.exited;
    // 'kill' ends what a command left when it exits on its own.
    await ok(s, { command: 'sleep 305 >/dev/null 2>&1 &', leftovers: 'kill' });
    expect(await ok(s, 'ps -e -o args= | grep "^sleep" | sort')).toBe('sleep 300\n');
  });

  it('killed, it leaves no process, cgroup, workspace or namespace descriptor; its running commands read as killed', async () => {
    const s = await sandbox();
    const uid = uidOf(s);
    await ok(s, 'sleep 300 >/dev/null 2>&1 &');
    const running = await s.exec({ command: 'sleep 300' });
    const dirs = Object.values(s.cgroup.directories);
    expect(dirs.length).toBeGreaterThan(0);
    expect(launcherNsFds()).toHaveLength(7);
    expect(liveProcessesOf(uid).length).toBeGreaterThanOrEqual(4); // bwrap ×2, sentinel, sleeps, helper
    live.splice(live.indexOf(s), 1);
    s.kill();
    expect(await s.ended).toEqual({ reason: 'killed' });
    expect((await collect(running)).exit).toMatchObject({ signal: 'SIGKILL', reason: 'killed' });
    expect(await s.cleanup()).toEqual({ clean: true, processesLeft: 0, cgroupsLeft: [], workspaceLeft: false });
    expect(liveProcessesOf(uid)).toEqual([]);
    for (const d of dirs) expect(existsSync(d)).toBe(false);
    expect(existsSync(s.workspace)).toBe(false);
    expect(launcherNsFds()).toEqual([]);
    await expect(s.exec({ command: 'true' })).rejects.toThrow(/has ended/);
  });

  it("killed while idle, takes its spare's waiting process along at once: nothing of it lingers", async () => {
    const s = await sandbox();
    const uid = uidOf(s);
    const pidns = readlinkSync(`/proc/${childrenOf(s.pid)[0]}/ns/pid`);
    const waiting = () => liveProcessesOf(uid).filter((p) => p.cmd.startsWith('cogo-next-command') && readlinkSync(`/proc/${p.pid}/ns/pid`) === pidns);
    await expect.poll(() => waiting().length, { interval: 5 }).toBe(1);
    live.splice(live.indexOf(s), 1);
    s.kill();
    expect(await s.ended).toEqual({ reason: 'killed' });
    // Left to the host's init to reap, that process would keep the sandbox's PID namespace, and
    // its init, from dying for as long as that took: 1.4 s on this machine, every time.
    await expect.poll(() => liveProcessesOf(uid), { interval: 10, timeout: 400 }).toEqual([]);
    expect(await s.cleanup()).toEqual({ clean: true, processesLeft: 0, cgroupsLeft: [], workspaceLeft: false });
  });

  it('ends when code inside kills its sentinel, and cleans up as well', async () => {
    const s = await sandbox();
    const r = await run(s, 'kill -KILL 2; sleep 5');
    expect(r.exit.signal).toBe('SIGKILL');
    expect(await s.ended).toEqual({ reason: 'exited' });
  });
});

/** Children of the launcher in a cmd- leaf of the sandbox while no command runs: its spare helper (pid, and its leaf in each hierarchy). */
function sparesOf(s: PersistentSandbox): { pid: number; leaves: string[] }[] {
  const launcher = launcherPid();
  const found = new Map<number, string[]>();
  for (const dir of new Set(Object.values(s.cgroup.directories))) {
    for (const name of existsSync(dir!) ? readdirSync(dir!) : []) {
      if (!name.startsWith('cmd-')) continue;
      let procs: number[] = [];
      try {
        procs = readFileSync(join(dir!, name, 'cgroup.procs'), 'utf8')
          .split('\n')
          .filter(Boolean)
          .map(Number);
      } catch {
        continue; // removed meanwhile
      }
      for (const pid of procs) {
        try {
          const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
          if (Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]) !== launcher) continue;
        } catch {
          continue;
        }
        found.set(pid, [...(found.get(pid) ?? []), join(dir!, name)]);
      }
    }
  }
  return [...found].map(([pid, leaves]) => ({ pid, leaves }));
}

/** The fields of /proc/<pid>/status. */
const statusOf = (pid: number) =>
  Object.fromEntries(
    readFileSync(`/proc/${pid}/status`, 'utf8')
      .split('\n')
      .filter(Boolean)
      .map((l) => [l.slice(0, l.indexOf(':')), l.slice(l.indexOf(':') + 1).trim()]),
  );

/** Pids whose parent is pid. */
const childrenOf = (pid: number) =>
  readdirSync('/proc')
    .filter((n) => /^\d+$/.test(n))
    .filter((n) => {
      try {
        const stat = readFileSync(`/proc/${n}/stat`, 'utf8');
        return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]) === pid;
      } catch {
        return false;
      }
    })
    .map(Number);

/** Where each descriptor of a process points. */
const fdLinks = (pid: number) => readdirSync(`/proc/${pid}/fd`).map((fd) => readlinkSync(`/proc/${pid}/fd/${fd}`));

describe.runIf(isRoot)("a persistent sandbox's spare helper (the next command's, pre-forked into its cgroup leaf)", () => {
  it('holds only its sockets, is the sandbox user with no privilege, its waiting process sealed; runs the next command as a fresh helper would; never outlives the sandbox', async () => {
    const s = await sandbox();
    // One spare, made after the pin: in a cmd- leaf of every hierarchy (joined before it listens).
    await expect.poll(() => sparesOf(s).length, { interval: 5 }).toBe(1);
    const [spare] = sparesOf(s);
    expect(spare!.leaves).toHaveLength(new Set(Object.values(s.cgroup.directories)).size);
    // Prepared (the pin said what commands ask): nothing of the launcher (other sandboxes' pipes
    // and namespaces) but its socket and the one to its waiting process; the sandbox's user with
    // no capability, inside every namespace of the sandbox but the PID one (setns(pid) is for
    // children), not dumpable; invisible from inside.
    // (and a pidfd of that process: it reaps it if it dies first, see wait_for_request)
    await expect
      .poll(() => fdLinks(spare!.pid).sort(), { interval: 5 })
      .toEqual(['anon_inode:[pidfd]', expect.stringMatching(/^socket:\[\d+\]$/), expect.stringMatching(/^socket:\[\d+\]$/)]);
    expect(readlinkSync(`/proc/${spare!.pid}/ns/pid`)).toBe(readlinkSync('/proc/self/ns/pid'));
    // s.pid is bwrap's; the sandbox's PID 1 is its child.
    const [init] = childrenOf(s.pid);
    for (const ns of ['mnt', 'net', 'ipc', 'uts', 'cgroup', 'user']) expect(readlinkSync(`/proc/${spare!.pid}/ns/${ns}`)).toBe(readlinkSync(`/proc/${init}/ns/${ns}`));
    expect(statSync(`/proc/${spare!.pid}/fd`).uid).toBe(0);
    const uid = uidOf(s);
    expect(statusOf(spare!.pid)).toMatchObject({ Uid: `${uid}\t${uid}\t${uid}\t${uid}`, CapEff: '0000000000000000', CapBnd: '0000000000000000', NoNewPrivs: '1', Seccomp: '0' });
    // Its waiting process: in the sandbox's PID namespace too, in the same leaf, seccomp loaded,
    // one descriptor (the socket to the helper); from inside only its name shows: no fd, environ
    // or memory, and not the launcher's command line.
    const waiting = childrenOf(spare!.pid);
    expect(waiting).toHaveLength(1);
    const w = waiting[0]!;
    expect(readlinkSync(`/proc/${w}/ns/pid`)).toBe(readlinkSync(`/proc/${init}/ns/pid`));
    // (it loads the filters right after the fork, and only then reads a command)
    await expect.poll(() => statusOf(w).Seccomp, { interval: 5 }).toBe('2');
    expect(statusOf(w)).toMatchObject({ Name: 'cogo-next-comma', CapEff: '0000000000000000', NoNewPrivs: '1', Seccomp: '2', Seccomp_filters: '2' });
    expect(fdLinks(w)).toEqual([expect.stringMatching(/^socket:\[\d+\]$/)]);
    expect(readFileSync(`/proc/${w}/cgroup`, 'utf8')).toBe(readFileSync(`/proc/${spare!.pid}/cgroup`, 'utf8'));

    // A command (run by that spare) looks for the spare made after it: no such process inside.
    const looking = await s.exec({
      command: [
        'for i in $(seq 200); do test -s spare && break; sleep 0.02; done; p=$(cat spare); test -e /proc/$p && echo visible; kill -0 $p 2>&1',
        // The next spare's waiting process, seen from inside.
        'w=$(pgrep -x cogo-next-comma); echo "waiting $w"; tr "\\0" " " < /proc/$w/cmdline | tr -s " "; echo',
        'for f in fd environ mem; do cat /proc/$w/$f >/dev/null 2>&1 && echo "$f readable"; done; true',
      ].join('; '),
    });
    expect(looking.pid).toBe(spare!.pid);
    // The next spare is made when a command ends (not while one starts: a v1 cgroup attach holds up
    // every fork): a second command, meanwhile, forks its own helper.
    const meanwhile = await s.exec({ command: ['echo', 'meanwhile'] });
    expect(meanwhile.pid).not.toBe(spare!.pid);
    expect((await collect(meanwhile)).stdout).toBe('meanwhile\n');
    await expect.poll(() => sparesOf(s).filter((x) => x.pid !== spare!.pid).length, { interval: 5 }).toBe(1);
    const next = sparesOf(s).find((x) => x.pid !== spare!.pid)!;
    writeFileSync(join(s.workspace, 'spare'), `${next.pid}\n`);
    const seen = (await collect(looking)).stdout;
    expect(seen).not.toContain('visible');
    expect(seen).toMatch(/kill: No such process/);
    expect(seen).toMatch(/^waiting \d+\ncogo-next-command ?\n/m);
    expect(seen).not.toContain('readable');

    // The next command runs in that spare: same pid, same leaf, same status as any command.
    const p = await s.exec({
      command: 'grep -E "^(Uid|Groups|CapPrm|CapEff|CapBnd|NoNewPrivs|Seccomp|Seccomp_filters):" /proc/self/status; ls /proc/self/fd | tr "\\n" " "',
    });
    expect(p.pid).toBe(next.pid);
    const r = await collect(p);
    expect(r.exit.exitCode, r.stderr).toBe(0);
    expect(r.stdout).toBe(
      [
        'Uid:\t1000\t1000\t1000\t1000',
        'Groups:\t ',
        'CapPrm:\t0000000000000000',
        'CapEff:\t0000000000000000',
        'CapBnd:\t0000000000000000',
        'NoNewPrivs:\t1',
        'Seccomp:\t2',
        'Seccomp_filters:\t2',
        '0 1 2 3 ',
      ].join('\n'),
    );
    for (const leaf of next.leaves) expect(Object.values(p.cgroup?.directories ?? {})).toContain(leaf);

    // A spare killed from outside: the launcher removes its leaf, the next command forks its own
    // helper (and works), and a new spare follows.
    await expect.poll(() => sparesOf(s).length, { interval: 5 }).toBe(1);
    const victim = sparesOf(s)[0]!;
    process.kill(victim.pid, 'SIGKILL');
    await expect.poll(() => victim.leaves.filter((l) => existsSync(l)), { interval: 5 }).toEqual([]);
    const forked = await s.exec({ command: ['echo', 'forked'] });
    expect(forked.pid).not.toBe(victim.pid);
    expect((await collect(forked)).stdout).toBe('forked\n');
    await expect.poll(() => sparesOf(s).length, { interval: 5 }).toBe(1);

    // Killed, the sandbox takes its spare and the spare's leaf with it, before its end is reported.
    const last = sparesOf(s)[0]!;
    live.splice(live.indexOf(s), 1);
    s.kill();
    await s.ended;
    expect(alive(last.pid)).toBe(false);
    for (const leaf of last.leaves) expect(existsSync(leaf)).toBe(false);
    expect(await s.cleanup()).toEqual({ clean: true, processesLeft: 0, cgroupsLeft: [], workspaceLeft: false });
  });
});

describe.runIf(isRoot)('an attacker command in a persistent sandbox', () => {
  it('cannot see or signal the processes of another persistent sandbox or of a plain task', async () => {
    const a = await sandbox();
    const b = await sandbox();
    await ok(b, 'sleep 300 >/dev/null 2>&1 &');
    const bCommand = await b.exec({ command: 'sleep 301' });
    const task = await startSandbox({ command: 'sleep 302' }, { root, uid: TEST_UID_BASE });
    tasks.push(task);
    const targets = [b.pid, b.initPid, bCommand.pid, task.pid];
    const out = await ok(a, `ps -e -o comm= | sort | tr "\\n" " "; echo; for p in ${targets.join(' ')}; do kill -KILL $p 2>/dev/null; echo "kill $p=$?"; done`);
    expect(out).toBe(`bwrap ps sh sleep sort tr \n${targets.map((p) => `kill ${p}=1\n`).join('')}`);
    // Nor reach their files or their loopback.
    await ok(b, 'echo B > /tmp/mark; echo B > /dev/shm/mark; echo B > /workspace/mark');
    await ok(
      b,
      `python3 -c "
import socket, os
s = socket.socket(); s.bind(('127.0.0.1', 7001)); s.listen()
if os.fork(): os._exit(0)
os.setsid(); s.accept()
" >/dev/null 2>&1`,
    );
    expect(await ok(a, 'cat /tmp/mark /dev/shm/mark /workspace/mark 2>&1 | grep -c "No such file"')).toBe('3\n');
    expect(
      await ok(
        a,
        `python3 -c "
import socket
try:
    socket.create_connection(('127.0.0.1', 7001)); print('connected')
except OSError as e:
    print(e.strerror)"`,
      ),
    ).toBe('Connection refused\n');
    // kill -1 reaches every process of its own sandbox, the sentinel included, and so ends it:
    // the tenant's own doing. Nothing outside is touched.
    await run(a, 'kill -KILL -1');
    expect(await a.ended).toEqual({ reason: 'exited' });
    for (const p of targets) expect(alive(p)).toBe(true);
    expect(await ok(b, 'ps -e -o args= | grep "^sleep" | sort')).toBe('sleep 300\nsleep 301\n');
  });

  it('cannot leave the workspace: not through cwd, symlinks, /proc or the read-only root', async () => {
    const s = await sandbox();
    await ok(s, 'ln -s / up; ln -s /proc/1/root pid1root; ln -s ../../../../../../etc etc');
    const listing = await ok(s, { command: 'pwd -P; ls / | tr "\\n" " "', cwd: '/workspace/up' });
    expect(listing).toBe('/\nbin dev etc lib lib64 proc sbin tmp usr workspace '.replace('lib lib64', existsSync('/lib64') ? 'lib lib64' : 'lib'));
    expect(await ok(s, { command: 'ls | tr "\\n" " "', cwd: '/workspace/pid1root' })).toBe(listing.split('\n')[1] + '');
    expect(await ok(s, 'cat etc/hostname; ls /root /home /var 2>&1 | grep -c "No such file"; touch /x 2>/dev/null; echo "touch=$?"')).toBe('sandbox\n3\ntouch=1\n');
  });

  it('cannot ptrace, signal or open the helper that enters the sandbox, even while commands start', async () => {
    const s = await sandbox();
    // Watches every process it can see for 4 s and notes any that is not the sandbox user
    // without capabilities; tries to seize such a one with ptrace and to open its exe and fds.
    // (Processes of the sandbox user may trace each other: one trust domain, docs/sandboxes.md.)
    await ok(s, {
      command: `python3 -c "
import ctypes, os, re, time
libc = ctypes.CDLL(None, use_errno=True)
seen, foreign = set(), []
end = time.time() + 4
while time.time() < end:
    for p in os.listdir('/proc'):
        if not p.isdigit() or int(p) == os.getpid():
            continue
        try:
            st = open('/proc/%s/status' % p).read()
        except OSError:
            continue
        seen.add(p)
        uid = re.search(r'^Uid:\\s+(.*)$', st, re.M).group(1).split()
        cap = re.search(r'^CapEff:\\s+(\\S+)', st, re.M).group(1)
        if set(uid) != {'1000'} or int(cap, 16) != 0:
            foreign.append((p, uid, cap))
            if libc.ptrace(0x4206, int(p), 0, 0) == 0:
                foreign.append('seized')
            for what in ('exe', 'fd/0'):
                try:
                    open('/proc/%s/%s' % (p, what), 'rb').close()
                    foreign.append('opened ' + what)
                except OSError:
                    pass
open('/tmp/watch', 'w').write('%d %r\\n' % (len(seen), foreign))
" >/dev/null 2>&1 &`,
    });
    const helpers: { pid: number; fdOwner: number; status: string }[] = [];
    for (let i = 0; i < 10; i++) {
      const p = await s.exec({ command: 'sleep 0.2' });
      // On the host: the helper runs as the slot uid without capabilities, and is not dumpable
      // (its /proc files belong to root), so even that uid cannot ptrace it or open its fds.
      const status = readFileSync(`/proc/${p.pid}/status`, 'utf8');
      helpers.push({ pid: p.pid, fdOwner: statSync(`/proc/${p.pid}/fd`).uid, status });
      await p.exited;
    }
    for (const h of helpers) {
      expect(h.fdOwner).toBe(0);
      expect(h.status).toMatch(new RegExp(`^Uid:\\t${uidOf(s)}\\t`, 'm'));
      expect(h.status).toMatch(/^CapEff:\t0{16}$/m);
      expect(h.status).toMatch(/^NoNewPrivs:\t1$/m);
    }
    // The watch writes its report when its 4 s are up (the helpers above took most of them): read
    // it as soon as it is there; a watch that never reports fails the command, and the test.
    const watch = await ok(s, 'for i in $(seq 1 100); do test -s /tmp/watch && exec cat /tmp/watch; sleep 0.1; done; echo "no report from the watch" >&2; exit 1');
    const [count, foreign] = [Number(watch.split(' ')[0]), watch.slice(watch.indexOf(' ') + 1)];
    expect(count).toBeGreaterThan(10); // it saw the commands come and go
    expect(foreign).toBe('[]\n');
    // None of the helpers' pids exists inside (they live in the host's PID namespace).
    expect(await ok(s, `for p in ${helpers.map((h) => h.pid).join(' ')}; do test -e /proc/$p && echo "visible $p"; done; true`)).toBe('');
  });

  it("with a fork bomb is bounded by the sandbox's process limit, and the next command works once it is killed", async () => {
    const s = await sandbox({ limits: { processes: 64 } });
    await ok(s, 'sleep 300 >/dev/null 2>&1 &');
    const bomb = await s.exec({ command: 'bomb() { bomb | bomb & }; bomb; sleep 60' });
    let peak = 0;
    for (let i = 0; i < 20; i++) {
      peak = Math.max(peak, (await s.cgroup.tasks()) ?? 0);
      await sleep(100);
    }
    // 64 + bwrap's two + the sentinel + the launcher's spare helper: pids.max of the whole sandbox.
    expect(peak).toBeLessThanOrEqual(64 + 4);
    expect(peak).toBeGreaterThan(32);
    bomb.kill('cancelled');
    const bombed = await collect(bomb);
    expect(bombed.exit.reason).toBe('cancelled');
    // Refused by RLIMIT_NPROC or pids.max, whichever the kernel checks first.
    expect(bombed.stderr).toMatch(/Cannot fork/);
    expect(await ok(s, 'echo ok; ps -e -o args= | grep "^sleep"')).toBe('ok\nsleep 300\n');
  });

  it("fills the disk only up to the sandbox's workspace size, across commands", async () => {
    const s = await sandbox({ limits: { workspaceBytes: 8 * 1024 * 1024, memoryBytes: 256 * 1024 * 1024 } });
    await ok(s, 'head -c 6M /dev/zero > a');
    const full = await run(s, 'head -c 6M /dev/zero > b');
    expect(full.exit.exitCode).not.toBe(0);
    expect(full.stderr).toMatch(/No space left on device/);
    expect(await ok(s, 'df -k /workspace | tail -1 | tr -s " " | cut -d" " -f2')).toBe('8192\n');
    const tmp = await run(s, 'head -c 9M /dev/zero > /tmp/x');
    expect(tmp.stderr).toMatch(/No space left on device/);
    expect(await ok(s, 'rm a /tmp/x; head -c 6M /dev/zero > b && echo written')).toBe('written\n');
  });
});

describe('starting a persistent sandbox', () => {
  it('is refused without the cgroups that kill each command alone (or without root)', async () => {
    await expect(startPersistentSandbox({}, { root, uid: TEST_UID_BASE, cgroups: false })).rejects.toMatchObject({
      code: 'sandbox_unavailable',
      message: isRoot ? expect.stringMatching(/need cgroups/) : expect.stringMatching(/root worker/),
    });
    expect(readdirSync(root).filter((n) => n.startsWith('ws-'))).toEqual([]);
  });
});

describe.runIf(isRoot)('memory of a persistent sandbox', () => {
  it('is bounded for the whole sandbox: files one command left count against the next', async () => {
    const s = await sandbox({ limits: { memoryBytes: 96 * 1024 * 1024, workspaceBytes: 64 * 1024 * 1024 } });
    await ok(s, 'head -c 60M /dev/zero > /tmp/fill');
    // Alone it would fit in 96 MiB; with the 60 MiB of tmpfs pages left in the sandbox it does not.
    const big = await run(s, 'python3 -c "x = bytearray(60 * 1024 * 1024); print(len(x))"');
    expect(big.exit).toMatchObject({ signal: 'SIGKILL', reason: 'memory_limit' });
    expect(await ok(s, 'rm /tmp/fill; python3 -c "x = bytearray(60 * 1024 * 1024); print(len(x))"')).toBe(`${60 * 1024 * 1024}\n`);
  });
});

describe.runIf(isRoot)('the pid reuse guard', () => {
  it('refuses to pin a dead or foreign PID 1, and to enter a sandbox whose PID 1 died', async () => {
    const a = await sandbox();
    const b = await sandbox();
    const old = { pid: a.initPid, namespaces: { ...a.namespaces } };
    a.kill();
    await a.ended;
    // A's PID 1, gone (or reused by then): refused, whatever now has that pid.
    await expect(b.init.pin(old.pid, old.namespaces)).rejects.toThrow(/cannot pin the sandbox: (sandbox \d+: pid \d+: No such process|pid \d+ is not the init of sandbox \d+)/);
    // B's own PID 1 with A's namespaces: the inodes do not match.
    await expect(b.init.pin(b.initPid, old.namespaces)).rejects.toThrow(/not the init of sandbox \d+: its mnt namespace is \d+, bwrap reported \d+/);
    // A stale sandbox id: nothing to enter.
    await expect(a.init.enter({ argv: ['true'], env: {}, cwd: '/', uid: 1000, gid: 1000, rlimits: [], stdin: false, cgroup: null })).rejects.toThrow(
      /no running, pinned persistent sandbox has id \d+/,
    );
    // PID 1 killed from outside: the next command is refused clearly (or, if it raced the kernel's
    // teardown of that same sandbox, killed with it); it never runs anywhere else.
    const c = await sandbox();
    process.kill(c.initPid, 'SIGKILL');
    const attempt = await c.exec({ command: 'echo entered' }).then(
      async (p) => `ran: ${JSON.stringify((await collect(p)).stdout)} ${(await p.exited).signal}`,
      (err: Error) => `refused: ${err.message}`,
    );
    expect(attempt).toMatch(/^refused: .*(has ended|init .*has exited|no running, pinned persistent sandbox)|^ran: "" SIGKILL$/);
    expect(await c.ended).toEqual({ reason: 'exited' });
    await expect(c.exec({ command: 'true' })).rejects.toThrow(/has ended/);
    expect(await ok(b, 'echo still here')).toBe('still here\n');
  });
});

describe.runIf(isRoot)('a terminal in a persistent sandbox (enter with pty)', () => {
  it("is a pty of the sandbox's devpts that only the relaying helper holds; output is drained after the exit; resize and stdin are checked", async () => {
    const s = await sandbox();
    // /dev is the sandbox user's tmpfs: a tenant can replace the /dev/ptmx symlink, not /dev/pts.
    expect(await ok(s, 'rm /dev/ptmx && ln -s /workspace/fake /dev/ptmx && readlink /dev/ptmx; mv /dev/pts /dev/x || true')).toBe('/workspace/fake\n');
    const p = await s.exec({ command: 'stty size; tty; exec cat', pty: { cols: 77, rows: 11 } });
    let out = '';
    p.stdout.on('data', (c: Buffer) => (out += c.toString()));
    await expect.poll(() => out, { interval: 10 }).toMatch(/11 77\r\n\/dev\/pts\/0\r\n/);
    // Nothing of the terminal is in the launcher (root): the master stays with the helper.
    const links = readdirSync(`/proc/${launcherPid()}/fd`).map((fd) => {
      try {
        return readlinkSync(`/proc/${launcherPid()}/fd/${fd}`);
      } catch {
        return '';
      }
    });
    expect(links.filter((l) => /pts|ptmx/.test(l))).toEqual([]);
    // From inside, no process holds the master: the helper is not in the sandbox's PID namespace.
    expect(await ok(s, 'for f in /proc/[0-9]*/fd/*; do readlink $f; done 2>/dev/null | grep -c ptmx || true')).toBe('0\n');
    // The launcher checks the size against the protocol's schema before anything reaches the relay.
    await expect(p.resize(1001, 10)).rejects.toThrow(/resize\.cols: 1001 is out of range/);
    await p.resize(90, 20);
    // (read from another command of the sandbox: the terminal is the sandbox user's)
    await expect.poll(() => ok(s, 'stty size < /dev/pts/0'), { interval: 10 }).toBe('20 90\n');
    p.stdin!.write('\x04'); // Ctrl-D: cat reads EOF, exits 0
    expect((await p.exited).exitCode).toBe(0);
    await expect(p.resize(10, 10)).rejects.toThrow(/not a running command with a terminal/);

    // Output written just before the exit all arrives (read until the terminal hangs up).
    const burst = await collect(await s.exec({ command: "head -c 300000 /dev/zero | tr '\\0' x; exit 3", pty: { cols: 80, rows: 24 } }));
    expect(burst.exit.exitCode).toBe(3);
    expect(burst.stdout).toBe('x'.repeat(300000));

    // A command without a terminal has none to resize; a terminal needs stdin (the launcher checks).
    const plain = await s.exec({ command: 'exec sleep 5', stdin: 'pipe' });
    await expect(plain.resize(80, 24)).rejects.toThrow(/not a running command with a terminal/);
    plain.kill('killed');
    await plain.exited;
    await expect(s.init.enter({ argv: ['true'], env: {}, cwd: '/', uid: 1000, gid: 1000, rlimits: [], stdin: false, cgroup: null, pty: { cols: 80, rows: 24 } })).rejects.toThrow(
      /a terminal needs stdin/,
    );
    await expect(s.exec({ command: 'true', pty: { cols: 0, rows: 24 } })).rejects.toThrow(/pty.cols/);
  });
});

describe.runIf(isRoot)('command start latency', () => {
  it('in a live sandbox against a fresh sandbox (printed, p50 of 15 interleaved)', async () => {
    const s = await sandbox();
    const liveMs: number[] = [];
    const freshMs: number[] = [];
    for (let i = 0; i < 15; i++) {
      let t = performance.now();
      await ok(s, { command: ['true'] });
      liveMs.push(performance.now() - t);
      t = performance.now();
      const task = await startSandbox({ command: ['true'] }, { root, uid: TEST_UID_BASE });
      await task.exited;
      freshMs.push(performance.now() - t);
      await task.cleanup();
    }
    const p50 = (xs: number[]) => [...xs].sort((x, y) => x - y)[Math.floor(xs.length / 2)]!.toFixed(1);
    console.log(
      `command start → exit of \`true\`: live sandbox p50 ${p50(liveMs)} ms, fresh sandbox p50 ${p50(freshMs)} ms (load ${readFileSync('/proc/loadavg', 'utf8').split(' ')[0]})`,
    );
    expect(liveMs.length).toBe(15);
  });
});
