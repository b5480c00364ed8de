import { spawn, type ChildProcess } from 'node:child_process';
import { constants, open } from 'node:fs';
import { Socket } from 'node:net';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { bwrapInfo, findExecutable } from './bwrap.ts';
import type { Controller, cgroupRequest } from './cgroups.ts';
import { SandboxStartFailed, SandboxUnavailable } from './errors.ts';
import { HELPER_PROCESSES, type SandboxLimits } from './options.ts';

/** The only environment the launcher and bwrap see; bwrap then clears it anyway. */
export const LAUNCHER_ENV = { PATH: '/usr/sbin:/usr/bin:/sbin:/bin' };
/** Descriptor of the child where bwrap writes its JSON status. */
export const STATUS_FD = 3;

const openFd = promisify(open);
const SCRIPT = fileURLToPath(new URL('./launcher.py', import.meta.url));

type CgroupRequest = Awaited<ReturnType<typeof cgroupRequest>>;

/** [RLIMIT name, soft, hard]; the launcher caps each at its own hard limit. */
export type Rlimit = [name: string, soft: number, hard: number];

/**
 * rlimits of the sandbox (inherited by everything in it, which cannot raise a hard limit).
 * `addressSpace` stands in for memory only without a memory cgroup.
 */
export function sandboxRlimits(limits: SandboxLimits, addressSpace: boolean): Rlimit[] {
  const cpuHard = Math.ceil(limits.cpuTimeMs / 1000) + 1;
  const both = (name: string, v: number): Rlimit => [name, v, v];
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
}

/** One process the launcher started: its pipes, its exit, and a kill that never hits a reused pid. */
export interface Launched {
  pid: number;
  /** The cgroup directories it runs in, per controller (null without cgroups). */
  cgroupDirs: Partial<Record<Controller, string>> | null;
  stdin: Socket | null;
  stdout: Socket;
  stderr: Socket;
  status: Socket;
  /** Exit code, or the signal number that killed it. Never rejects (a dead launcher reads as SIGKILL). */
  exit: Promise<{ code: number | null; signal: number | null }>;
  /** SIGKILLs its process group (and `innerPid`) unless it was already reaped. */
  kill(innerPid: number | null): void;
}

/** What the launcher's seccomp filter denies (syscall_filter.py), and its programs (base64 cBPF). */
export interface FilterInfo {
  denied: string[];
  rules: string[];
  bytes: number;
  programs: string[];
}

type Reply = {
  id: number;
  filter?: FilterInfo;
  pid?: number;
  fds?: Record<string, number>;
  cgroups?: Partial<Record<Controller, string>> | null;
  error?: string;
  exit?: number | null;
  signal?: number | null;
};

/**
 * Client of launcher.py, the fork server that starts every sandbox of this worker: a fork of the
 * (large) worker costs milliseconds per 100 MiB of it, a fork of the launcher almost nothing.
 * Started on first use; if it dies, its sandboxes die with it (bwrap --die-with-parent), their
 * exits read as SIGKILL, and the next launch starts a new one.
 */
class Launcher {
  private readonly child: ChildProcess;
  private readonly pending = new Map<number, { resolve: (r: Reply) => void; reject: (e: Error) => void }>();
  private readonly exits = new Map<number, (r: { code: number | null; signal: number | null }) => void>();
  private nextId = 1;
  private buffered = '';
  private stderr = '';
  dead = false;

  constructor(python: string, denyUserns: boolean) {
    this.child = spawn(python, ['-I', '-S', SCRIPT, String(process.pid), ...(denyUserns ? ['--deny-userns'] : [])], { stdio: ['pipe', 'pipe', 'pipe'], env: LAUNCHER_ENV, cwd: '/' });
    this.child.on('error', () => {});
    this.child.stdin!.on('error', () => {});
    this.child.stdout!.setEncoding('utf8').on('data', (text: string) => this.onData(text));
    this.child.stderr!.setEncoding('utf8').on('data', (text: string) => (this.stderr = (this.stderr + text).slice(-4096)));
    this.child.on('close', () => this.onDeath());
    this.idle();
  }

  async launch(req: LaunchRequest): Promise<Launched> {
    const id = this.nextId++;
    const exit = new Promise<{ code: number | null; signal: number | null }>((resolve) => this.exits.set(id, resolve));
    void exit.then(() => this.idleIfUnused());
    const replied = this.ask(id, { op: 'start', path: req.path, argv: [req.path, ...req.argv], env: LAUNCHER_ENV, uid: req.owner?.uid ?? null, gid: req.owner?.gid ?? null, rlimits: req.rlimits, cgroup: req.cgroup, stdin: req.stdin, fds: req.fds, filterFds: req.filterFds });
    let r: Reply;
    try {
      r = await replied;
    } catch (err) {
      this.exits.get(id)?.({ code: null, signal: 9 });
      this.exits.delete(id);
      throw err;
    }
    if (r.error || !r.pid || !r.fds) {
      this.exits.delete(id);
      this.idleIfUnused();
      throw new SandboxStartFailed(`cannot start the sandbox: ${r.error ?? 'no reply'}`);
    }
    const base = `/proc/${this.child.pid}/fd/`;
    // O_NONBLOCK: opening a pipe end never waits for the other side (the task may be gone already).
    const openEnd = async (name: string, flags: number) => {
      const fd = await openFd(base + r.fds![name], flags | constants.O_NONBLOCK);
      return new Socket({ fd, readable: flags === constants.O_RDONLY, writable: flags !== constants.O_RDONLY });
    };
    try {
      const ends = await Promise.allSettled([
        openEnd('stdout', constants.O_RDONLY),
        openEnd('stderr', constants.O_RDONLY),
        openEnd('status', constants.O_RDONLY),
        r.fds.stdin === undefined ? null : openEnd('stdin', constants.O_WRONLY),
      ]);
      const failed = ends.find((e) => e.status === 'rejected');
      if (failed) {
        for (const e of ends) if (e.status === 'fulfilled') e.value?.destroy();
        this.send({ op: 'kill', id });
        throw new SandboxStartFailed(`cannot open the sandbox's pipes: ${(failed.reason as Error).message}`);
      }
      const [stdout, stderr, status, stdin] = ends.map((e) => (e as PromiseFulfilledResult<Socket | null>).value);
      return { pid: r.pid, cgroupDirs: r.cgroups ?? null, stdin: stdin ?? null, stdout: stdout!, stderr: stderr!, status: status!, exit, kill: (inner) => this.send({ op: 'kill', id, inner }) };
    } finally {
      this.send({ op: 'opened', id });
    }
  }

  /** Mounts or unmounts a workspace tmpfs in the launcher (root): no fork of the worker. */
  async mountOp(msg: { op: 'mount'; target: string; options: string } | { op: 'umount'; target: string }): Promise<void> {
    try {
      const r = await this.ask(this.nextId++, msg);
      if (r.error) throw new Error(r.error);
    } finally {
      this.idleIfUnused();
    }
  }

  /** What the seccomp filter the launcher built at its start denies. */
  async filter(): Promise<FilterInfo> {
    try {
      const r = await this.ask(this.nextId++, { op: 'filter' });
      if (!r.filter) throw new Error(r.error ?? 'no filter in the reply');
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

  /** Sends request `id`; its reply (or the launcher's death) settles the promise. */
  private ask(id: number, msg: object): Promise<Reply> {
    this.busy();
    const replied = new Promise<Reply>((resolve, reject) => this.pending.set(id, { resolve, reject }));
    this.send({ ...msg, id });
    return replied;
  }

  private send(msg: object): void {
    if (this.child.stdin!.writable) this.child.stdin!.write(JSON.stringify(msg) + '\n');
  }

  private onData(text: string): void {
    const lines = (this.buffered + text).split('\n');
    this.buffered = lines.pop()!;
    for (const line of lines) {
      const r = JSON.parse(line) as Reply;
      const p = this.pending.get(r.id);
      if (p) {
        this.pending.delete(r.id);
        p.resolve(r);
      } else if (r.exit !== undefined) {
        this.exits.get(r.id)?.({ code: r.exit, signal: r.signal ?? null });
        this.exits.delete(r.id);
      }
    }
  }

  private onDeath(): void {
    this.dead = true;
    if (launcher === this) launcher = undefined;
    const why = new SandboxStartFailed(`the sandbox launcher exited: ${this.stderr.trim() || `code ${this.child.exitCode}`}`);
    for (const p of this.pending.values()) p.reject(why);
    for (const e of this.exits.values()) e({ code: null, signal: 9 });
    this.pending.clear();
    this.exits.clear();
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
