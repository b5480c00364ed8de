import { spawn, type ChildProcess } from 'node:child_process';
import { constants, openSync } from 'node:fs';
import { Socket } from 'node:net';
import { fileURLToPath } from 'node:url';
import { z } from 'zod';
import { bwrapInfo, findExecutable } from './bwrap.ts';
import type { Controller, cgroupRequest } from './cgroups.ts';
import { SandboxStartFailed, SandboxUnavailable, TerminalUnavailable } from './errors.ts';
import { MAX_FRAME_BYTES, PROTOCOL_VERSION, reply, type FilterInfo, type Op, type Reply, type Request, type RequestBody, type RlimitName } from './launcher-protocol.ts';
import { HELPER_PROCESSES, type SandboxLimits } from './options.ts';

/** The only environment the launcher and bwrap see; bwrap then clears it anyway. */
export const LAUNCHER_ENV = { PATH: '/usr/sbin:/usr/bin:/sbin:/bin' };
/** Descriptor of the child where bwrap writes its JSON status. */
export const STATUS_FD = 3;

const SCRIPT = fileURLToPath(new URL('./launcher.py', import.meta.url));

type CgroupRequest = Awaited<ReturnType<typeof cgroupRequest>>;

/** [RLIMIT name, soft, hard]; the launcher caps each at its own hard limit. */
export type Rlimit = [name: RlimitName, soft: number, hard: number];

/**
 * rlimits of the sandbox (inherited by everything in it, which cannot raise a hard limit).
 * `addressSpace` stands in for memory only without a memory cgroup.
 */
export function sandboxRlimits(limits: SandboxLimits, addressSpace: boolean): Rlimit[] {
  const cpuHard = Math.ceil(limits.cpuTimeMs / 1000) + 1;
  const both = (name: RlimitName, v: number): Rlimit => [name, v, v];
  return [
    // The soft CPU limit sends SIGXCPU, the hard one a second later SIGKILL.
    ['RLIMIT_CPU', cpuHard - 1, cpuHard],
    // RLIMIT_NPROC counts the slot uid's processes across the user namespace, so it is per task.
    both('RLIMIT_NPROC', limits.processes + HELPER_PROCESSES),
    both('RLIMIT_NOFILE', limits.openFiles),
    both('RLIMIT_FSIZE', limits.fileSizeBytes),
    both('RLIMIT_CORE', 0),
    ...(addressSpace ? [both('RLIMIT_AS', limits.memoryBytes)] : []),
  ];
}

/** Data handed to the child as a memory file at descriptor `fd` (>= 4), read from its start. */
export interface FdData {
  fd: number;
  data: string;
}

export interface LaunchRequest {
  path: string;
  argv: string[];
  /** Data descriptors of the child (bwrap's arguments, generated /etc files). */
  fds: FdData[];
  /** Where the child gets the launcher's seccomp programs, one descriptor per program (bwrap.ts FILTER_FDS). */
  filterFds: number[];
  /** Slot uid/gid to drop to (root worker), or null to stay the worker's user. */
  owner: { uid: number; gid: number } | null;
  rlimits: Rlimit[];
  /** The task's cgroups to make and start it in (cgroupRequest), or null for none. */
  cgroup: CgroupRequest | null;
  stdin: boolean;
  /** A persistent sandbox: `cgroup` holds the limits of all its commands, bwrap runs in its `init/` leaf. */
  persistent?: boolean;
}

/** Namespace inodes of a sandbox's PID 1, as bwrap's --json-status-fd reports them. */
export type NamespaceInodes = Request<'pin'>['namespaces'];

/** A command to run inside a pinned persistent sandbox (launcher.py enter_child). */
export interface EnterRequest {
  argv: string[];
  env: Record<string, string>;
  /** Resolved inside the sandbox. */
  cwd: string;
  /** Ids inside the sandbox. */
  uid: number;
  gid: number;
  rlimits: Rlimit[];
  stdin: boolean;
  /**
   * The command's own cgroup leaf under the sandbox's cgroup (`cmd-…`), or null without cgroups. A
   * ready spare helper of the sandbox brings a leaf of its own instead: `cgroupDirs` says where it is.
   */
  cgroup: { name: string } | null;
  /** A terminal of this size as the command's stdio (output on stdout; needs `stdin`). */
  pty?: { cols: number; rows: number } | null;
}

/** One process the launcher started: its pipes, its exit, and a kill that never hits a reused pid. */
export interface Launched {
  /** The launcher's id for it (a persistent sandbox is entered by this id). */
  id: number;
  pid: number;
  /** The cgroup directories it runs in, per controller (null without cgroups). */
  cgroupDirs: Partial<Record<Controller, string>> | null;
  stdin: Socket | null;
  stdout: Socket;
  stderr: Socket;
  status: Socket;
  /** Exit code, or the signal number that killed it. Never rejects (a dead launcher reads as SIGKILL). */
  exit: Promise<{ code: number | null; signal: number | null }>;
  /**
   * SIGKILLs its process group (and `innerPid`) unless it was already reaped; for a command
   * entered into a persistent sandbox, every process of its cgroup leaf (not the sandbox).
   */
  kill(innerPid: number | null): void;
  /** Persistent sandbox: proves `pid` is its PID 1 (namespace inodes) and keeps its namespaces. Rejects with SandboxStartFailed. */
  pin(pid: number, namespaces: NamespaceInodes, prepare?: Request<'pin'>['prepare']): Promise<void>;
  /** Persistent sandbox (pinned): runs a command inside it, started like a task. */
  enter(req: EnterRequest): Promise<Launched>;
  /** A command entered with `pty`: its terminal's new size (the command gets SIGWINCH). Rejects if it has none or has ended. */
  resize(cols: number, rows: number): Promise<void>;
}

export type { FilterInfo } from './launcher-protocol.ts';

type Hello = Extract<Reply, { type: 'hello' }>;
type Exit = { code: number | null; signal: number | null };
/** How long a new launcher may take to announce itself (python start + seccomp build: ~50 ms). */
const HELLO_TIMEOUT_MS = 15_000;

/**
 * Client of launcher.py, the fork server that starts every sandbox of this worker: a fork of the
 * (large) worker costs milliseconds per 100 MiB of it, a fork of the launcher almost nothing.
 * Started on first use; if it dies, its sandboxes die with it (bwrap --die-with-parent), their
 * exits read as SIGKILL, and the next launch starts a new one. Protocol: launcher-protocol.ts.
 */
export class Launcher {
  private readonly child: ChildProcess;
  private readonly script: string;
  private readonly pending = new Map<number, { resolve: (r: Reply) => void; reject: (e: Error) => void }>();
  private readonly exits = new Map<number, (r: Exit) => void>();
  private readonly hello: Promise<Hello>;
  private helloSettled = false;
  private settleHello!: { resolve: (h: Hello) => void; reject: (e: Error) => void };
  private nextId = 1;
  private buffered = '';
  private stderr = '';
  /** Why the channel was given up (a reply that cannot be read), if it was. */
  private broken: string | null = null;
  /** What ended this launcher (what later requests fail with). */
  private failure: Error | null = null;
  dead = false;

  /** `script` and `helloTimeoutMs` are for tests (a stale or broken launcher). */
  constructor(python: string, denyUserns: boolean, { script = SCRIPT, helloTimeoutMs = HELLO_TIMEOUT_MS }: { script?: string; helloTimeoutMs?: number } = {}) {
    this.hello = new Promise<Hello>((resolve, reject) => (this.settleHello = { resolve, reject }));
    this.hello.catch(() => {}); // a launcher nobody asked anything of may fail unobserved
    this.child = spawn(python, ['-I', '-S', script, String(process.pid), ...(denyUserns ? ['--deny-userns'] : [])], {
      stdio: ['pipe', 'pipe', 'pipe'],
      env: LAUNCHER_ENV,
      cwd: '/',
    });
    this.child.on('error', () => {});
    this.child.stdin!.on('error', () => {});
    this.child.stdout!.setEncoding('utf8').on('data', (text: string) => this.onData(text));
    this.child.stderr!.setEncoding('utf8').on('data', (text: string) => (this.stderr = (this.stderr + text).slice(-4096)));
    this.child.on('close', () => this.onDeath());
    this.script = script;
    const timer = setTimeout(
      () =>
        this.giveUp(
          new SandboxUnavailable(
            `the sandbox launcher did not announce its protocol within ${helloTimeoutMs / 1000} s (this worker speaks protocol ${PROTOCOL_VERSION}; ${script} from before the handshake?)`,
            { script, workerProtocol: PROTOCOL_VERSION },
          ),
        ),
      helloTimeoutMs,
    );
    timer.unref();
    void this.hello.finally(() => clearTimeout(timer)).catch(() => {});
    this.idle();
  }

  /** What the launcher announced: its protocol version (checked) and capabilities. */
  info(): Promise<Hello> {
    return this.hello;
  }

  launch(req: LaunchRequest): Promise<Launched> {
    return this.started('start', {
      path: req.path,
      argv: [req.path, ...req.argv],
      env: LAUNCHER_ENV,
      uid: req.owner?.uid ?? null,
      gid: req.owner?.gid ?? null,
      rlimits: req.rlimits,
      cgroup: req.cgroup,
      stdin: req.stdin,
      fds: req.fds,
      filterFds: req.filterFds,
      ...(req.persistent ? { persistent: true } : {}),
    });
  }

  /** Runs a command inside the pinned persistent sandbox started as `sandbox`. */
  enter(sandbox: number, req: EnterRequest): Promise<Launched> {
    return this.started('enter', { sandbox, ...req });
  }

  /** Pins the persistent sandbox started as `task` to its PID 1 (launcher.py Server.pin). */
  async pin(task: number, pid: number, namespaces: NamespaceInodes, prepare?: Request<'pin'>['prepare']): Promise<void> {
    try {
      const r = await this.ask('pin', { task, pid, namespaces, ...(prepare ? { prepare } : {}) });
      if (r.type !== 'ok') throw new SandboxStartFailed(`cannot pin the sandbox: ${r.type === 'error' ? r.message : `unexpected ${r.type} reply`}`, { pid });
    } finally {
      this.idleIfUnused();
    }
  }

  /** The terminal of the command entered as `task` gets a new size (launcher.py Server.resize). */
  async resize(task: number, cols: number, rows: number): Promise<void> {
    try {
      const r = await this.ask('resize', { task, cols, rows });
      if (r.type !== 'ok') throw new TerminalUnavailable(`cannot resize the terminal: ${r.type === 'error' ? r.message : `unexpected ${r.type} reply`}`, { task });
    } finally {
      this.idleIfUnused();
    }
  }

  /** Sends a start or enter, then opens the worker's ends of the pipes the launcher made. */
  private async started<O extends 'start' | 'enter'>(op: O, body: RequestBody<O>): Promise<Launched> {
    let id = 0;
    let exited!: (r: Exit) => void;
    const exit = new Promise<Exit>((resolve) => (exited = resolve));
    const replied = this.ask(op, body, (n) => {
      id = n;
      this.exits.set(n, exited);
    });
    void exit.then(() => this.idleIfUnused());
    let r: Reply;
    try {
      r = await replied;
    } catch (err) {
      this.exits.get(id)?.({ code: null, signal: 9 });
      this.exits.delete(id);
      this.idleIfUnused();
      throw err;
    }
    if (r.type !== 'started') {
      this.exits.delete(id);
      this.idleIfUnused();
      const what = op === 'enter' ? 'cannot start the command in the sandbox' : 'cannot start the sandbox';
      throw new SandboxStartFailed(`${what}: ${r.type === 'error' ? r.message : `unexpected ${r.type} reply`}`, r.type === 'error' ? { code: r.code } : undefined);
    }
    const fds = r.fds;
    const base = `/proc/${this.child.pid}/fd/`;
    // O_NONBLOCK: opening a pipe end never waits for the other side (the task may be gone already).
    // Synchronous, then: a few microseconds each, where four hops through libuv's thread pool took
    // ≈ 10 ms of a command's start on a loaded host (bench/enter.ts).
    const openEnd = async (fd: number, flags: number) => {
      const ours = openSync(base + fd, flags | constants.O_NONBLOCK);
      return new Socket({ fd: ours, readable: flags === constants.O_RDONLY, writable: flags !== constants.O_RDONLY });
    };
    try {
      const ends = await Promise.allSettled([
        openEnd(fds.stdout, constants.O_RDONLY),
        openEnd(fds.stderr, constants.O_RDONLY),
        openEnd(fds.status, constants.O_RDONLY),
        fds.stdin === undefined ? null : openEnd(fds.stdin, constants.O_WRONLY),
      ]);
      const failed = ends.find((e) => e.status === 'rejected');
      if (failed) {
        for (const e of ends) if (e.status === 'fulfilled') e.value?.destroy();
        this.tell('kill', { task: id, inner: null });
        throw new SandboxStartFailed(`cannot open the sandbox's pipes: ${(failed.reason as Error).message}`);
      }
      const [stdout, stderr, status, stdin] = ends.map((e) => (e as PromiseFulfilledResult<Socket | null>).value);
      return {
        id,
        pid: r.pid,
        cgroupDirs: r.cgroups as Partial<Record<Controller, string>> | null,
        stdin: stdin ?? null,
        stdout: stdout!,
        stderr: stderr!,
        status: status!,
        exit,
        kill: (inner) => this.tell('kill', { task: id, inner }),
        pin: (pid, namespaces, prepare) => this.pin(id, pid, namespaces, prepare),
        enter: (req) => this.enter(id, req),
        resize: (cols, rows) => this.resize(id, cols, rows),
      };
    } finally {
      this.tell('opened', { task: id });
    }
  }

  /** Mounts or unmounts a workspace tmpfs in the launcher (root): no fork of the worker. */
  async mountOp(msg: ({ op: 'mount' } & RequestBody<'mount'>) | ({ op: 'umount' } & RequestBody<'umount'>)): Promise<void> {
    try {
      const r = msg.op === 'mount' ? await this.ask('mount', { target: msg.target, options: msg.options }) : await this.ask('umount', { target: msg.target });
      if (r.type === 'error') throw new Error(r.message);
    } finally {
      this.idleIfUnused();
    }
  }

  /** What the seccomp filter the launcher built at its start denies. */
  async filter(): Promise<FilterInfo> {
    try {
      const r = await this.ask('filter', {});
      if (r.type !== 'filter') throw new Error(r.type === 'error' ? r.message : `unexpected ${r.type} reply`);
      return r.filter;
    } finally {
      this.idleIfUnused();
    }
  }

  /** Ends the launcher if no sandbox runs: it kills its spares and removes their cgroups first. */
  async stop(): Promise<void> {
    if (this.dead || this.exits.size > 0) return;
    // Starts from here on get a new launcher.
    this.dead = true;
    if (launcher === this) launcher = undefined;
    const closed = new Promise((resolve) => this.child.once('close', resolve));
    this.child.stdin!.end();
    await closed;
  }

  /**
   * Sends a request once the launcher has announced a protocol we speak; its reply (or the
   * launcher's death) settles the promise. `numbered` learns the id before anything is sent.
   */
  private async ask<O extends Op>(op: O, body: RequestBody<O>, numbered?: (id: number) => void): Promise<Reply> {
    this.busy();
    const id = this.nextId++;
    numbered?.(id);
    await this.hello;
    // id first: the launcher can answer even a request it cannot parse.
    const line = JSON.stringify({ id, ...body, op }) + '\n';
    if (Buffer.byteLength(line) > MAX_FRAME_BYTES) {
      throw new SandboxStartFailed(`a ${op} request of ${Buffer.byteLength(line)} bytes exceeds the launcher's frame limit of ${MAX_FRAME_BYTES}`, { op });
    }
    if (this.dead) throw this.failure ?? new SandboxStartFailed('the sandbox launcher was stopped');
    const replied = new Promise<Reply>((resolve, reject) => this.pending.set(id, { resolve, reject }));
    this.child.stdin!.write(line);
    return replied;
  }

  /** A request whose answer nobody waits for (kill, opened); a refusal is reported as a warning. */
  private tell<O extends 'kill' | 'opened'>(op: O, body: RequestBody<O>): void {
    void this.ask(op, body)
      .then((r) => {
        if (r.type === 'error') process.emitWarning(`sandbox launcher refused ${op}: ${r.message}`);
      })
      .catch(() => {}) // the launcher is gone: its sandboxes with it
      .finally(() => this.idleIfUnused());
  }

  private onData(text: string): void {
    if (this.broken) return;
    const lines = (this.buffered + text).split('\n');
    this.buffered = lines.pop()!;
    if (Buffer.byteLength(this.buffered) > MAX_FRAME_BYTES) return this.breakChannel(`a reply longer than ${MAX_FRAME_BYTES} bytes`);
    for (const line of lines) {
      if (this.broken) return;
      let r: Reply;
      try {
        const parsed = reply.safeParse(JSON.parse(line));
        if (!parsed.success) return this.breakChannel(`a reply not in the protocol (${z.prettifyError(parsed.error).replaceAll('\n', ' ')}): ${line.slice(0, 200)}`);
        r = parsed.data;
      } catch {
        return this.breakChannel(`a reply that is not JSON: ${line.slice(0, 200)}`);
      }
      this.onReply(r);
    }
  }

  private onReply(r: Reply): void {
    if (r.type === 'hello') {
      if (this.helloSettled) return this.breakChannel('a second hello');
      if (r.protocol !== PROTOCOL_VERSION) {
        return this.giveUp(
          new SandboxUnavailable(
            `the sandbox launcher speaks protocol ${r.protocol}, this worker protocol ${PROTOCOL_VERSION}: ${this.script} and launcher.ts are from different versions (a stale launcher.py?)`,
            {
              launcherProtocol: r.protocol,
              workerProtocol: PROTOCOL_VERSION,
              script: this.script,
            },
          ),
        );
      }
      if (!r.capabilities.seccomp)
        return this.giveUp(new SandboxUnavailable('the sandbox launcher has no seccomp filter, so no sandbox can start: apt-get install python3-seccomp'));
      this.helloSettled = true;
      this.settleHello.resolve(r);
      return;
    }
    if (!this.helloSettled) return this.breakChannel(`a ${r.type} reply before the launcher announced its protocol`);
    if (r.type === 'exit') {
      this.exits.get(r.task)?.({ code: r.exit, signal: r.signal });
      this.exits.delete(r.task);
      return;
    }
    const p = r.id === null ? undefined : this.pending.get(r.id);
    if (!p && r.type === 'error') {
      // Answers a frame that is not ours: ours start with their id, which the launcher reads even
      // from a broken or oversized frame. It skipped that frame and serves on, and so do we.
      process.emitWarning(`sandbox launcher: ${r.code} for a frame this worker did not send (id ${r.id}): ${r.message}`);
      return;
    }
    // A result nobody asked for: what the launcher did, and for whom, is no longer known.
    if (!p || r.id === null) return this.breakChannel(`a ${r.type} reply to request ${r.id}, which is not waiting for one`);
    this.pending.delete(r.id);
    p.resolve(r);
  }

  /**
   * The replies can no longer be trusted to match their requests: ends this launcher (its
   * sandboxes die with it and read as SIGKILL), fails every request in flight with `reason`, and
   * leaves the next start to a new launcher.
   */
  private breakChannel(reason: string): void {
    if (this.broken) return;
    this.broken = reason;
    this.giveUp(new SandboxStartFailed(`the sandbox launcher was stopped after ${reason} (the next start gets a new one)`, { reason }));
  }

  /** Ends this launcher now, failing everything waiting on it with `why`. */
  private giveUp(why: Error): void {
    this.child.kill('SIGKILL');
    this.fail(why);
  }

  private onDeath(): void {
    this.fail(new SandboxStartFailed(`the sandbox launcher exited: ${this.stderr.trim() || `code ${this.child.exitCode}`}`));
  }

  /** Marks this launcher dead; everything waiting on it, and every later request, fails with `why`. */
  private fail(why: Error): void {
    if (this.failure) return;
    this.failure = why;
    this.dead = true;
    if (launcher === this) launcher = undefined;
    if (!this.helloSettled) {
      this.helloSettled = true;
      this.settleHello.reject(why);
    }
    for (const p of this.pending.values()) p.reject(why);
    for (const e of this.exits.values()) e({ code: null, signal: 9 });
    this.pending.clear();
    this.exits.clear();
    this.idle();
  }

  private idleIfUnused(): void {
    if (this.exits.size === 0 && this.pending.size === 0) this.idle();
  }

  /** No sandbox running: the launcher must not keep the worker's event loop alive. */
  private idle(): void {
    this.child.unref();
    for (const s of [this.child.stdin, this.child.stdout, this.child.stderr]) (s as unknown as Socket).unref?.();
  }

  private busy(): void {
    this.child.ref();
    for (const s of [this.child.stdin, this.child.stdout, this.child.stderr]) (s as unknown as Socket).ref?.();
  }
}

let launcher: Launcher | undefined;

/** This process's launcher, started on first use. */
async function theLauncher(): Promise<Launcher> {
  if (!launcher || launcher.dead) {
    const python = await findExecutable('python3');
    if (!python) throw new SandboxUnavailable('python3 is not installed (it runs the sandbox launcher): apt-get install python3');
    // Without --disable-userns (bwrap < 0.8) nested user namespaces are refused by the filter instead.
    const { disableUserns } = await bwrapInfo();
    if (!launcher || launcher.dead) launcher = new Launcher(python, !disableUserns);
  }
  return launcher;
}

/** Starts `req` through this process's launcher. */
export async function launch(req: LaunchRequest): Promise<Launched> {
  return (await theLauncher()).launch(req);
}

/**
 * What the sandboxes' seccomp filter denies. Starting the launcher builds it: fails with
 * SandboxUnavailable (naming the package) if libseccomp's python module is missing.
 */
export async function seccompFilter(): Promise<FilterInfo> {
  try {
    return await (await theLauncher()).filter();
  } catch (err) {
    if (err instanceof SandboxUnavailable) throw err;
    throw new SandboxUnavailable(`no seccomp filter, so no sandbox can start: ${(err as Error).message}`);
  }
}

/** Mounts a tmpfs (nosuid, nodev) with `options` (size=…,mode=…) on `target`; needs root. */
export async function mountTmpfs(target: string, options: string): Promise<void> {
  await (await theLauncher()).mountOp({ op: 'mount', target, options });
}

/** Unmounts `target`, detaching it if busy. */
export async function unmount(target: string): Promise<void> {
  await (await theLauncher()).mountOp({ op: 'umount', target });
}

/** Stops this process's launcher when no sandbox is running (a worker calls it on shutdown). */
export async function stopLauncher(): Promise<void> {
  await launcher?.stop();
}
