import { randomUUID } from 'node:crypto';
import { existsSync } from 'node:fs';
import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import type { Socket } from 'node:net';
import { MAX_WALL_TIME_MS } from '../../functions/_shared/limits.ts';
import { bwrapCommand, bwrapInfo } from './bwrap.ts';
import { TaskCgroup, cgroupRequest, detectCgroups } from './cgroups.ts';
import { InvalidSandboxSpec, SandboxStartFailed, SandboxUnavailable } from './errors.ts';
import { SANDBOX_UID } from './etc.ts';
import { STATUS_FD, launch, sandboxRlimits, type Launched, type NamespaceInodes } from './launcher.ts';
import { HELPER_PROCESSES, resolveLimits, type SandboxLimits, type SandboxOptions } from './options.ts';
import { pidsOfUid } from './procfs.ts';
import { Sandbox, resolveOptions } from './run.ts';
import { acquireSlot, type Slot } from './slots.ts';
import { checkSpec } from './spec.ts';
import type { SandboxFile, SandboxProcess } from './types.ts';
import { createWorkspace, prepareRoot, reapStaleWorkspaces, writeFiles, type Workspace } from './workspace.ts';

/** What lives in a persistent sandbox between commands: its files, env, limits and network. */
export interface PersistentSandboxSpec {
  /** Written into the fresh workspace before the sandbox starts. */
  files?: SandboxFile[];
  /** Every command's env: the safe base env < this < the command's own. */
  env?: Record<string, string>;
  /**
   * `memoryBytes`, `processes` and `workspaceBytes` bound the whole sandbox (every command and
   * what it left running); the others are each command's defaults.
   */
  limits?: Partial<SandboxLimits>;
  network?: boolean;
  readOnlyBinds?: { source: string; target: string }[];
  /** The sandbox is killed this long after its start. @default MAX_WALL_TIME_MS (1 h) */
  lifetimeMs?: number;
}

/** One command run inside a persistent sandbox. */
export interface ExecSpec {
  /** A string runs as `/bin/sh -c <string>`; an argv is exec'd directly (PATH lookup inside). */
  command: string | string[];
  /** Over the sandbox's env. */
  env?: Record<string, string>;
  /** Absolute, resolved inside the sandbox (a symlink there cannot lead out). @default '/workspace' */
  cwd?: string;
  stdin?: 'pipe' | 'closed';
  /** This command's `wallTimeMs`, `cpuTimeMs`, `outputBytes`, `openFiles`, `fileSizeBytes`; the sandbox's memory, processes and disk stay. */
  limits?: Partial<SandboxLimits>;
  onOutputLimit?: 'stop' | 'truncate';
  /**
   * Processes the command leaves behind when it exits on its own: 'keep' lets them run (a
   * server started in the background, seen by later commands); 'kill' ends them. A kill or a
   * limit always ends every process of the command. @default 'keep'
   */
  leftovers?: 'keep' | 'kill';
  /**
   * Run it on a terminal of this size (a pty of the sandbox's own devpts as stdin, stdout and
   * stderr, and its controlling terminal): output arrives on stdout, `stdin` is the keyboard
   * (implies 'pipe'), `resize()` changes the size. `TERM` defaults to xterm-256color.
   */
  pty?: { cols: number; rows: number };
}

export type PersistentEndReason = 'killed' | 'timeout' | 'exited';

/** What `cleanup()` found after the sandbox ended: `clean` when nothing at all is left. */
export interface CleanupReport {
  clean: boolean;
  /** Processes of the sandbox's host uid still alive after the sweep. */
  processesLeft: number;
  /** Cgroup directories of the sandbox (and its commands) still present. */
  cgroupsLeft: string[];
  workspaceLeft: boolean;
}

export interface PersistentSandbox {
  /** Host pid of the sandbox's outer bwrap. */
  readonly pid: number;
  /** Host pid of the sandbox's PID 1 (bwrap's reaper), checked against `namespaces` when pinned. */
  readonly initPid: number;
  readonly namespaces: Readonly<NamespaceInodes>;
  /** Host path of the workspace (bound at /workspace). */
  readonly workspace: string;
  /** Limits of the whole sandbox (and each command's defaults). */
  readonly limits: Readonly<SandboxLimits>;
  /** The sandbox's cgroup: counters cover every command and what it left running. */
  readonly cgroup: TaskCgroup;
  /** The launcher's handle of the sandbox's bwrap (its id enters it). */
  readonly init: Launched;
  /** Commands started and not yet exited. */
  readonly running: ReadonlySet<SandboxProcess>;
  /** Runs a command inside, started and reported like a task. Rejects once the sandbox has ended. */
  exec(spec: ExecSpec): Promise<SandboxProcess>;
  /** Kills every process of the sandbox (its PID 1 exits, the kernel ends the rest). */
  kill(reason?: PersistentEndReason): void;
  /** False once the sandbox has ended or is being killed. */
  readonly live: boolean;
  /**
   * Gives a sandbox started ahead (a worker's warm sandbox, worker/sandboxes/host.ts) to its
   * owner: later commands get `env` under their own, and the lifetime counts from now.
   */
  adopt(settings: { env?: Record<string, string>; lifetimeMs: number }): void;
  /** Resolves once the sandbox's bwrap has exited and every command with it. Never rejects. */
  readonly ended: Promise<{ reason: PersistentEndReason }>;
  /** After the end: removes cgroups, sweeps the uid, removes the workspace, and says what is left. */
  cleanup(): Promise<CleanupReport>;
}

/**
 * Starts a long-lived sandbox (bwrap around a sentinel `sleep infinity`, PID 2 under bwrap's
 * reaper) that later commands enter from outside (launcher.py `enter`). Same isolation as a
 * task; the sandbox's cgroup bounds memory and processes of everything in it, the workspace
 * tmpfs its disk, and each command gets a cgroup leaf of its own under it. Needs a root worker
 * with cgroups.
 */
export async function startPersistentSandbox(spec: PersistentSandboxSpec, options: SandboxOptions): Promise<PersistentSandbox> {
  const checked = checkSpec({ command: SENTINEL, files: spec.files, env: spec.env, network: spec.network, readOnlyBinds: spec.readOnlyBinds });
  const lifetimeMs = spec.lifetimeMs ?? MAX_WALL_TIME_MS;
  if (!Number.isSafeInteger(lifetimeMs) || lifetimeMs <= 0) throw new InvalidSandboxSpec('lifetimeMs', 'must be a positive integer');
  const o = resolveOptions(options);
  const limits = resolveLimits(spec.limits, o.maxLimits);
  if (process.geteuid?.() !== 0) throw new SandboxUnavailable('persistent sandboxes need a root worker (commands enter them with setns)');
  if (o.cgroups === false) throw new SandboxUnavailable('persistent sandboxes need cgroups (each command is killed by its own), and they are off');
  const [bw, , support] = await Promise.all([bwrapInfo(), prepareRoot(o.root, true).then(() => reapStaleWorkspaces(o.root)), detectCgroups(o.cgroups)]);
  if (!support.using || Object.keys(support.usable).length === 0) {
    throw new SandboxUnavailable(`persistent sandboxes need cgroups (each command is killed by its own): ${support.notes.join('; ')}`);
  }
  const version = support.using;

  const undo: (() => Promise<unknown>)[] = [];
  try {
    const slot = await acquireSlot({ uidBase: o.uid, gidBase: o.gid, slots: o.slots, slotDir: o.slotDir, waitMs: o.slotWaitMs });
    undo.push(() => slot.release(true));
    const owner = { uid: slot.uid, gid: slot.gid };
    // Never pooled: a pooled mount is reused only when its task is proven gone, and a sandbox's
    // workspace lives as long as the sandbox.
    const workspace = await createWorkspace(o.root, limits.workspaceBytes, owner, 0);
    undo.push(() => workspace.remove(false));
    await writeFiles(workspace.dir, checked.files, owner, limits.workspaceBytes);
    const env = { ...checked.env, HOSTNAME: o.hostname };
    const bwrap = await bwrapCommand({
      workspace: workspace.dir,
      hostname: o.hostname,
      network: checked.network && o.allowNetwork,
      readOnlyBinds: checked.readOnlyBinds,
      tmpBytes: limits.workspaceBytes,
      env,
      argv: checked.argv,
      statusFd: STATUS_FD,
    });
    // The sentinel is one more process of the sandbox; each running command's helper another.
    const rlimits = sandboxRlimits({ ...limits, processes: limits.processes + 1 }, !support.usable.memory);
    const init = await launch({
      path: bw.path,
      argv: bwrap.argv,
      fds: bwrap.fds,
      filterFds: bwrap.filterFds,
      owner,
      rlimits,
      // Plus the sentinel, the launcher's spare helper that waits, joined to a leaf, for the next
      // command, and the process it forked into the sandbox for that command.
      cgroup: await cgroupRequest(support, { memoryBytes: limits.memoryBytes, pids: limits.processes + HELPER_PROCESSES + 3 }),
      stdin: false,
      persistent: true,
    });
    const dirs = init.cgroupDirs ?? {};
    undo.push(() => removeSandboxCgroups(version, dirs));
    undo.push(async () => {
      init.kill(null);
      await init.exit;
    });
    let stderr = '';
    init.stderr.on('data', (c: Buffer) => (stderr = (stderr + c.toString()).slice(-4096)));
    for (const s of [init.stdout, init.stderr, init.status]) s.on('error', () => {});
    const status = await readStatus(init.status).catch(async (err: Error) => {
      await init.exit;
      throw new SandboxStartFailed(`persistent sandbox failed to start: ${stderr.trim() || err.message}`, { stderr: stderr.trim() });
    });
    await readReady(init.stdout).catch(async (err: Error) => {
      await init.exit;
      throw new SandboxStartFailed(`persistent sandbox failed to start: ${stderr.trim() || err.message}`, { stderr: stderr.trim() });
    });
    // From here on a stale pid can never be entered: the launcher holds the namespaces it checked.
    // Its spare helper prepares for a command that asks for no limits of its own (the usual one).
    const cgroup = TaskCgroup.adopt(version, dirs);
    const usual = commandLimits(limits, undefined, o.maxLimits, cgroup.controllers.includes('memory'));
    await init.pin(status.pid, status.namespaces, { uid: SANDBOX_UID, gid: SANDBOX_UID, rlimits: usual.rlimits });
    undo.length = 0;
    return new LiveSandbox(init, status.pid, status.namespaces, workspace, limits, cgroup, version, slot, {
      env,
      maxLimits: o.maxLimits,
      pollIntervalMs: o.pollIntervalMs,
      lifetimeMs,
    });
  } catch (err) {
    for (const step of undo.reverse()) await step().catch(() => {});
    throw err;
  }
}

/**
 * PID 2 of the sandbox. bwrap reports its PID 1 as soon as it is forked, before the mounts and
 * the inner user namespace (--disable-userns) are set up; "ready" on stdout says bwrap has
 * exec'd the sentinel, so the sandbox is complete and can be pinned and entered.
 */
const SENTINEL = ['/bin/sh', '-c', 'echo ready && exec /usr/bin/sleep infinity'];

/** Resolves at the sentinel's "ready"; rejects if its stdout ends first (bwrap failed). Drains the rest. */
function readReady(stdout: Socket): Promise<void> {
  return new Promise((resolve, reject) => {
    let seen = '';
    stdout.on('data', (c: Buffer) => {
      seen = (seen + c.toString()).slice(0, 64);
      if (seen.startsWith('ready\n')) resolve();
    });
    stdout.on('close', () => reject(new Error('the sandbox ended before its sentinel started')));
  });
}

const NAMESPACE_KEYS = ['mnt', 'pid', 'net', 'ipc', 'uts', 'cgroup'] as const;

/**
 * bwrap's first --json-status-fd object: `child-pid` (the host pid of PID 1) and the inode of
 * each namespace. The pipe is read to its end (a closed one would SIGPIPE bwrap at exit).
 */
function readStatus(status: Socket): Promise<{ pid: number; namespaces: NamespaceInodes }> {
  return new Promise((resolve, reject) => {
    let buffered = '';
    let done = false;
    status.on('data', (chunk: Buffer) => {
      if (done) return;
      buffered += chunk.toString();
      const end = buffered.indexOf('}');
      if (end < 0) return;
      done = true;
      try {
        const doc = JSON.parse(buffered.slice(0, end + 1)) as Record<string, unknown>;
        const field = (k: string) => {
          const v = doc[k];
          if (typeof v !== 'number' || !Number.isSafeInteger(v) || v <= 0) throw new Error(`bwrap's status has no ${k}: ${buffered.slice(0, 300)}`);
          return v;
        };
        const namespaces = Object.fromEntries(NAMESPACE_KEYS.map((k) => [k, field(`${k}-namespace`)])) as NamespaceInodes;
        resolve({ pid: field('child-pid'), namespaces });
      } catch (err) {
        reject(err as Error);
      }
    });
    status.on('close', () => {
      if (!done) reject(new Error('bwrap exited before the sandbox started'));
    });
  });
}

/** Every cgroup directory of a sandbox: its command leaves (and init/) first, then its own. */
async function sandboxCgroupDirs(dirs: Partial<Record<string, string>>): Promise<string[]> {
  const out: string[] = [];
  for (const dir of new Set(Object.values(dirs))) {
    if (!dir) continue;
    for (const e of await readdir(dir, { withFileTypes: true }).catch(() => [])) if (e.isDirectory()) out.push(join(dir, e.name));
    out.push(dir);
  }
  return out;
}

/** Kills whatever is left in each leaf, then removes leaves and the sandbox's cgroup; returns what is still there. */
async function removeSandboxCgroups(version: 'v1' | 'v2', dirs: Partial<Record<string, string>>): Promise<string[]> {
  for (const dir of await sandboxCgroupDirs(dirs)) {
    const cg = TaskCgroup.adopt(version, { cpu: dir });
    await cg.killAll();
    await cg.remove();
  }
  return (await sandboxCgroupDirs(dirs)).filter((d) => existsSync(d));
}

/**
 * A command's limits in a live sandbox: its own (time, output, file size…) as asked, within
 * `maxLimits`; memory, processes and disk are the sandbox's (a command cannot ask for more of them).
 * RLIMIT_NPROC counts the slot uid's processes, so it bounds the whole sandbox as at its start,
 * plus one: the process a spare helper forks ahead for the next command waits as that uid.
 */
function commandLimits(sandbox: SandboxLimits, asked: Partial<SandboxLimits> | undefined, maxLimits: Partial<SandboxLimits> | undefined, memoryCgroup: boolean) {
  const own = resolveLimits({ ...sandbox, ...asked }, maxLimits);
  const limits: SandboxLimits = { ...own, memoryBytes: sandbox.memoryBytes, processes: sandbox.processes, workspaceBytes: sandbox.workspaceBytes };
  return { limits, rlimits: sandboxRlimits({ ...limits, processes: limits.processes + 2 }, !memoryCgroup) };
}

class LiveSandbox implements PersistentSandbox {
  readonly pid: number;
  readonly workspace: string;
  readonly running = new Set<SandboxProcess>();
  readonly ended: Promise<{ reason: PersistentEndReason }>;
  private endReason: PersistentEndReason | null = null;
  private over = false;
  private lifetimeTimer: NodeJS.Timeout;
  private removal: Promise<CleanupReport> | null = null;
  /** A command's view of the workspace: never removed with the command. */
  private readonly shared: Workspace;

  constructor(
    readonly init: Launched,
    readonly initPid: number,
    readonly namespaces: NamespaceInodes,
    private readonly ws: Workspace,
    readonly limits: SandboxLimits,
    readonly cgroup: TaskCgroup,
    private readonly version: 'v1' | 'v2',
    private readonly slot: Slot,
    private readonly settings: { env: Record<string, string>; maxLimits: Partial<SandboxLimits> | undefined; pollIntervalMs: number; lifetimeMs: number },
  ) {
    this.pid = init.pid;
    this.workspace = ws.dir;
    this.shared = { dir: ws.dir, remove: async () => {} };
    this.lifetimeTimer = setTimeout(() => this.kill('timeout'), settings.lifetimeMs);
    this.lifetimeTimer.unref();
    this.ended = init.exit.then(async () => {
      this.over = true;
      clearTimeout(this.lifetimeTimer);
      // PID 1 is gone, so the kernel has killed every process of the sandbox; each command's
      // helper then exits and reports its command.
      await Promise.all([...this.running].map((p) => p.exited));
      return { reason: this.endReason ?? 'exited' };
    });
  }

  async exec(spec: ExecSpec): Promise<SandboxProcess> {
    if (this.over) throw new SandboxStartFailed('the persistent sandbox has ended: nothing to run the command in');
    const pty = spec.pty;
    if (pty !== undefined) {
      for (const k of ['cols', 'rows'] as const) {
        if (!Number.isSafeInteger(pty?.[k]) || pty[k] < 1 || pty[k] > 1000) throw new InvalidSandboxSpec(`pty.${k}`, 'must be an integer from 1 to 1000');
      }
    }
    const env = { ...this.settings.env, ...(pty ? { TERM: 'xterm-256color' } : {}), ...spec.env };
    const checked = checkSpec({ command: spec.command, env, stdin: pty ? 'pipe' : spec.stdin, onOutputLimit: spec.onOutputLimit });
    const cwd = spec.cwd ?? '/workspace';
    if (typeof cwd !== 'string' || !cwd.startsWith('/') || cwd.includes('\0')) throw new InvalidSandboxSpec('cwd', 'must be an absolute path');
    if (spec.leftovers !== undefined && spec.leftovers !== 'keep' && spec.leftovers !== 'kill') throw new InvalidSandboxSpec('leftovers', "must be 'keep' or 'kill'");
    const { limits, rlimits } = commandLimits(this.limits, spec.limits, this.settings.maxLimits, this.cgroup.controllers.includes('memory'));
    const child = await this.init.enter({
      argv: checked.argv,
      env: checked.env,
      cwd,
      uid: SANDBOX_UID,
      gid: SANDBOX_UID,
      rlimits,
      stdin: checked.stdin === 'pipe',
      cgroup: { name: `cmd-${randomUUID()}` },
      pty: pty ? { cols: pty.cols, rows: pty.rows } : null,
    });
    const cgroup = child.cgroupDirs ? TaskCgroup.adopt(this.version, child.cgroupDirs) : null;
    const proc = new Sandbox(child, this.shared, limits, checked.onOutputLimit, this.settings.pollIntervalMs, cgroup, null, (spec.leftovers ?? 'keep') === 'keep');
    this.running.add(proc);
    void proc.exited.then(() => this.running.delete(proc));
    await proc.started.catch(async (err: unknown) => {
      await proc.exited;
      throw err;
    });
    return proc;
  }

  get live(): boolean {
    return !this.over && this.endReason === null;
  }

  adopt(settings: { env?: Record<string, string>; lifetimeMs: number }): void {
    if (!Number.isSafeInteger(settings.lifetimeMs) || settings.lifetimeMs <= 0) throw new InvalidSandboxSpec('lifetimeMs', 'must be a positive integer');
    const checked = checkSpec({ command: SENTINEL, env: settings.env });
    this.settings.env = { ...checked.env, HOSTNAME: this.settings.env.HOSTNAME! };
    clearTimeout(this.lifetimeTimer);
    this.lifetimeTimer = setTimeout(() => this.kill('timeout'), settings.lifetimeMs);
    this.lifetimeTimer.unref();
  }

  kill(reason: PersistentEndReason = 'killed'): void {
    if (this.over) return;
    this.endReason ??= reason;
    for (const p of this.running) p.kill('killed');
    // PID 1's exit makes the kernel kill every process in the sandbox's PID namespace.
    this.init.kill(this.initPid);
  }

  cleanup(): Promise<CleanupReport> {
    this.removal ??= this.ended.then(async () => {
      const cgroupsLeft = await removeSandboxCgroups(this.version, this.cgroup.directories).catch(() => ['(cgroups unreadable)']);
      // Every process of the slot uid, wherever it is, then the uid is free; kept locked if one survives.
      const swept = await this.slot.release(true).catch(() => false);
      const processesLeft = swept ? 0 : (await pidsOfUid(this.slot.uid)).length || 1;
      // Only with nothing left can no process race the removal of the workspace.
      await this.ws.remove(swept && cgroupsLeft.length === 0).catch(() => {});
      const workspaceLeft = existsSync(this.ws.dir);
      return { clean: processesLeft === 0 && cgroupsLeft.length === 0 && !workspaceLeft, processesLeft, cgroupsLeft, workspaceLeft };
    });
    return this.removal;
  }
}
