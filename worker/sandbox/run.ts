import { once } from 'node:events';
import { isAbsolute } from 'node:path';
import { availableParallelism, constants as osConstants } from 'node:os';
import type { Socket } from 'node:net';
import { PassThrough, type Readable, type Writable } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import { bwrapCommand, bwrapInfo } from './bwrap.ts';
import { TaskCgroup, cgroupRequest, detectCgroups } from './cgroups.ts';
import { InvalidSandboxSpec, SandboxStartFailed } from './errors.ts';
import { STATUS_FD, launch, sandboxRlimits, type Launched } from './launcher.ts';
import { HELPER_PROCESSES, SANDBOX_DEFAULTS, resolveLimits, type SandboxLimits, type SandboxOptions } from './options.ts';
import { acquireSlot, type Slot } from './slots.ts';
import { checkSpec } from './spec.ts';
import type { SandboxExit, SandboxExitReason, SandboxProcess, SandboxSpec } from './types.ts';
import { UsageMonitor, type UsageFigures } from './usage.ts';
import { createWorkspace, hasFileOfSize, prepareRoot, reapStaleWorkspaces, workspaceSpace, writeFiles, type Owner, type Workspace } from './workspace.ts';
import { FILE_TOO_LARGE, NO_SPACE, type ExitEvidence } from './exit-reason.ts';

/** Cores a task can keep busy at once: how fast its CPU time can grow per wall-clock ms. */
const CPUS = availableParallelism();
/** Longest wait between CPU limit checks of a task with exact cgroup figures. */
const MAX_POLL_MS = 10_000;

/** How long stdout/stderr may stay open after every process is gone (only a leak could hold them). */
const STREAM_DRAIN_MS = 2000;

/**
 * Starts `spec` in a fresh bubblewrap sandbox and resolves once the command is running (bwrap
 * reported its pid). Rejects with a CogoError subclass if the spec is invalid or the sandbox could
 * not be set up; nothing is left behind in that case.
 */
export async function startSandbox(spec: SandboxSpec, options: SandboxOptions): Promise<SandboxProcess> {
  const checked = checkSpec(spec);
  const o = resolveOptions(options);
  const limits = resolveLimits(spec.limits, o.maxLimits);
  const asRoot = process.geteuid?.() === 0;
  const [bw, , support] = await Promise.all([
    bwrapInfo(),
    prepareRoot(o.root, asRoot).then(() => reapStaleWorkspaces(o.root)),
    o.cgroups === false ? null : detectCgroups(o.cgroups),
  ]);

  const undo: (() => Promise<unknown>)[] = [];
  try {
    // Root drops to a per-slot uid; never run bwrap as root (the user namespace would map to host root).
    const slot = asRoot ? await acquireSlot({ uidBase: o.uid, gidBase: o.gid, slots: o.slots, slotDir: o.slotDir, waitMs: o.slotWaitMs }) : null;
    if (slot) undo.push(() => slot.release(true));
    const owner: Owner | null = slot && { uid: slot.uid, gid: slot.gid };
    const workspace = await createWorkspace(o.root, limits.workspaceBytes, owner, o.workspacePool);
    // Nothing has run in it yet, so a pooled mount can be kept.
    undo.push(() => workspace.remove(true));
    await writeFiles(workspace.dir, checked.files, owner, limits.workspaceBytes);

    const bwrap = await bwrapCommand({
      workspace: workspace.dir,
      hostname: o.hostname,
      network: checked.network && o.allowNetwork,
      readOnlyBinds: checked.readOnlyBinds,
      tmpBytes: limits.workspaceBytes,
      env: { ...checked.env, HOSTNAME: o.hostname },
      argv: checked.argv,
      statusFd: STATUS_FD,
    });
    const child = await launch({
      path: bw.path,
      argv: bwrap.argv,
      fds: bwrap.fds,
      filterFds: bwrap.filterFds,
      owner,
      rlimits: sandboxRlimits(limits, !support?.usable.memory),
      // The launcher makes them and starts the task in them (a spare forked in ahead of time).
      cgroup:
        support && Object.keys(support.usable).length > 0 ? await cgroupRequest(support, { memoryBytes: limits.memoryBytes, pids: limits.processes + HELPER_PROCESSES }) : null,
      stdin: checked.stdin === 'pipe',
    });
    const cgroup = child.cgroupDirs && support?.using ? TaskCgroup.adopt(support.using, child.cgroupDirs) : null;
    undo.length = 0; // from here on the Sandbox owns every resource
    const sandbox = new Sandbox(child, workspace, limits, checked.onOutputLimit, o.pollIntervalMs, cgroup, slot);
    await sandbox.started.catch(async (err: unknown) => {
      await sandbox.cleanup();
      throw err;
    });
    return sandbox;
  } catch (err) {
    for (const step of undo.reverse()) await step().catch(() => {});
    throw err;
  }
}

export function resolveOptions(options: SandboxOptions) {
  if (typeof options?.root !== 'string' || !isAbsolute(options.root)) throw new InvalidSandboxSpec('options.root', 'must be an absolute path');
  const d = SANDBOX_DEFAULTS;
  const o = {
    root: options.root,
    uid: options.uid ?? d.uid,
    gid: options.gid ?? options.uid ?? d.uid,
    slots: options.slots ?? d.slots,
    slotDir: options.slotDir ?? d.slotDir,
    slotWaitMs: options.slotWaitMs ?? d.slotWaitMs,
    maxLimits: options.maxLimits,
    allowNetwork: options.allowNetwork ?? d.allowNetwork,
    hostname: options.hostname ?? d.hostname,
    cgroups: options.cgroups ?? d.cgroups,
    pollIntervalMs: options.pollIntervalMs ?? d.pollIntervalMs,
    workspacePool: options.workspacePool ?? d.workspacePool,
  };
  for (const k of ['uid', 'gid', 'slots', 'pollIntervalMs'] as const) {
    if (!Number.isSafeInteger(o[k]) || o[k] <= 0) throw new InvalidSandboxSpec(`options.${k}`, 'must be a positive integer');
  }
  if (!Number.isSafeInteger(o.slotWaitMs) || o.slotWaitMs < 0) throw new InvalidSandboxSpec('options.slotWaitMs', 'must be a whole number of ms');
  if (!Number.isSafeInteger(o.workspacePool) || o.workspacePool < 0) throw new InvalidSandboxSpec('options.workspacePool', 'must be a whole number');
  // Slot ids must never reach system or login accounts (slots.ts also checks /etc/passwd).
  for (const k of ['uid', 'gid'] as const) {
    if (o[k] < 10_000 || o[k] + o.slots > 2 ** 32 - 2) throw new InvalidSandboxSpec(`options.${k}`, 'must be an unprivileged id range (10000 .. 2^32-2)');
  }
  if (!/^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/.test(o.hostname)) throw new InvalidSandboxSpec('options.hostname', 'is not a valid host name');
  return o;
}

const SIGNAL_NAMES = new Map(Object.entries(osConstants.signals).map(([name, n]) => [n, name]));

/**
 * One started process (a task's bwrap, or a command entered into a persistent sandbox) seen as a
 * SandboxProcess: output, limits, kill, exit and usage.
 */
export class Sandbox implements SandboxProcess {
  readonly stdout = new PassThrough();
  readonly stderr = new PassThrough();
  readonly stdin: Writable | null;
  readonly exited: Promise<SandboxExit>;
  /** Resolves when bwrap reports the command running; rejects if the launcher died first. */
  readonly started: Promise<void>;
  readonly outputTruncated: Promise<void>;
  private truncated = false;
  private onTruncated!: () => void;

  private readonly startedAt = performance.now();
  private readonly usage: UsageMonitor;
  private wallTimer: NodeJS.Timeout | undefined;
  private pollTimer: NodeJS.Timeout | undefined;
  private killReason: SandboxExitReason | null = null;
  private innerPid: number | null = null;
  private launcherExited = false;
  private outputBytes = 0;
  private startupErr = '';
  /** Last stderr bytes, for telling an out-of-memory exit apart without a memory cgroup. */
  private stderrTail = '';
  private removal: Promise<void> | null = null;
  /** Teardown proved every process of the task gone: nothing can race a wipe of its workspace. */
  private gone = false;
  readonly workspace: string;

  readonly pid: number;

  constructor(
    private readonly child: Launched,
    private readonly ws: Workspace,
    readonly limits: SandboxLimits,
    private readonly onOutputLimit: 'stop' | 'truncate',
    pollIntervalMs: number,
    readonly cgroup: TaskCgroup | null,
    private readonly slot: Slot | null,
    /**
     * A command of a persistent sandbox: processes it leaves in its cgroup when its leader exits
     * on its own (a server started in the background) keep running; a kill still ends them all.
     */
    private readonly keepLeftovers = false,
  ) {
    this.pid = child.pid;
    this.workspace = ws.dir;
    this.outputTruncated = new Promise((resolve) => (this.onTruncated = resolve));
    this.usage = new UsageMonitor(child.pid, cgroup);
    this.stdin = child.stdin;
    // Writes after the task closed its stdin or exited (EPIPE) would otherwise be unhandled
    // 'error' events that crash the worker.
    for (const s of [child.stdin, child.stdout, child.stderr, child.status]) s?.on('error', () => {});
    this.forward(child.stdout, this.stdout);
    this.forward(child.stderr, this.stderr);
    this.started = this.watchStatus(child.status);
    this.started.catch(() => {});
    this.wallTimer = setTimeout(() => this.kill('timeout'), limits.wallTimeMs);
    this.pollUsage(pollIntervalMs);
    this.exited = child.exit.then(({ code, signal }) => this.finish(code, signal === null ? null : (SIGNAL_NAMES.get(signal) ?? `signal ${signal}`)));
  }

  /**
   * Samples usage and enforces the CPU limit. With exact cgroup figures the next check waits as
   * long as the CPU left could not be used up (all cores busy), not just `everyMs`: hundreds of
   * idle sandboxes would otherwise cost the worker thousands of file reads a second.
   */
  private pollUsage(everyMs: number, delayMs = everyMs): void {
    this.pollTimer = setTimeout(async () => {
      const cpuMs = await this.usage.sample().catch(() => null);
      if (cpuMs !== null && cpuMs >= this.limits.cpuTimeMs) this.kill('cpu_limit');
      if (this.launcherExited) return;
      // A failed sample says nothing about the CPU left: check again soon.
      const exhaustibleInMs = cpuMs === null ? 0 : (this.limits.cpuTimeMs - cpuMs) / CPUS;
      this.pollUsage(everyMs, this.usage.exact ? Math.max(everyMs, Math.min(exhaustibleInMs, MAX_POLL_MS)) : everyMs);
    }, delayMs);
  }

  resize(cols: number, rows: number): Promise<void> {
    return this.child.resize(cols, rows);
  }

  kill(reason: SandboxExitReason): void {
    if (this.launcherExited) return;
    this.killReason ??= reason;
    // Killing the namespace's init makes the kernel kill every process in the namespace.
    this.child.kill(this.innerPid);
  }

  cleanup(): Promise<void> {
    this.removal ??= this.exited.then(() => this.ws.remove(this.gone));
    return this.removal;
  }

  /**
   * Output is read eagerly and counted; past outputBytes the rest is dropped, and the tree killed
   * unless the policy is 'truncate' (then the pipes are still drained, so the task never blocks).
   */
  private forward(from: Socket, to: PassThrough): void {
    from.on('data', (chunk: Buffer) => {
      if (from === this.child.stderr) {
        if (this.startupErr.length < 4096 && this.innerPid === null) this.startupErr += chunk.toString();
        this.stderrTail = (this.stderrTail + chunk.toString('latin1')).slice(-2048);
      }
      const room = this.limits.outputBytes - this.outputBytes;
      if (chunk.length <= room) {
        this.outputBytes += chunk.length;
        to.write(chunk);
        return;
      }
      // Past the limit, also when an earlier chunk filled it exactly (pipe reads are often 64 KiB,
      // so a flood lands on round limits): forward what fits, drop the rest, kill the tree.
      if (room > 0) {
        this.outputBytes += room;
        to.write(chunk.subarray(0, room));
      }
      if (!this.truncated) {
        this.truncated = true;
        this.onTruncated();
      }
      if (this.onOutputLimit === 'truncate') return;
      // Set even if the launcher already exited: output was cut either way.
      this.killReason ??= 'output_limit';
      this.kill('output_limit');
    });
  }

  /** Keeps reading to the end: a closed pipe would SIGPIPE bwrap when it writes "exit-code". */
  private watchStatus(status: Readable): Promise<void> {
    return new Promise((resolve, reject) => {
      let buffered = '';
      status.on('data', (chunk: Buffer) => {
        if (this.innerPid !== null) return;
        buffered += chunk.toString();
        const m = /"child-pid"\s*:\s*(\d+)/.exec(buffered);
        if (m) {
          this.innerPid = Number(m[1]);
          resolve();
        }
      });
      status.on('close', () => {
        if (this.innerPid !== null) return;
        // bwrap's own error message may still be in flight on stderr until the exit is processed.
        void this.exited.then(() => {
          const stderr = this.startupErr.trim().slice(0, 4096);
          reject(new SandboxStartFailed(`sandbox failed to start: ${stderr || 'launcher exited'}`, { stderr }));
        });
      });
    });
  }

  private async finish(code: number | null, signal: string | null): Promise<SandboxExit> {
    this.launcherExited = true;
    const wallMs = Math.round(performance.now() - this.startedAt);
    clearTimeout(this.wallTimer);
    clearTimeout(this.pollTimer);
    const { usage, oomKills } = await this.teardown();
    await this.drainStreams();

    let exitCode = code;
    let sig: string | null = signal;
    const bySignal = code !== null && code > 128 ? SIGNAL_NAMES.get(code - 128) : undefined;
    if (bySignal) {
      exitCode = null;
      sig = bySignal;
    }
    const failed = exitCode !== 0;
    const cpuMs = usage.cpuUserMs + usage.cpuSystemMs;
    const reason: SandboxExitReason =
      this.killReason ??
      (failed && (oomKills ?? 0) > 0
        ? 'memory_limit'
        : sig === 'SIGXCPU' || (sig === 'SIGKILL' && cpuMs >= this.limits.cpuTimeMs)
          ? 'cpu_limit'
          : failed && oomKills === null && this.looksOutOfMemory(usage.maxVsizeBytes)
            ? 'memory_limit'
            : 'exited');
    return {
      exitCode,
      signal: sig,
      reason,
      outputTruncated: this.truncated,
      evidence: failed && (reason === 'exited' || reason === 'memory_limit') ? await this.evidence(reason, sig) : undefined,
      usage: { wallMs, cpuUserMs: Math.round(usage.cpuUserMs), cpuSystemMs: Math.round(usage.cpuSystemMs), maxRssBytes: usage.maxRssBytes },
    };
  }

  /**
   * bwrap's init is gone, so its namespace is being torn down: make sure nothing of the task is
   * left, measure, then free the cgroups and the uid. Never throws: the exit must be reported.
   */
  private async teardown(): Promise<{ usage: UsageFigures; oomKills: number | null }> {
    let usage: UsageFigures = { cpuUserMs: 0, cpuSystemMs: 0, maxRssBytes: 0, maxVsizeBytes: 0 };
    let oomKills: number | null = null;
    let cgroupEmpty = false;
    try {
      const keep = this.keepLeftovers && this.killReason === null;
      cgroupEmpty = keep ? (await this.cgroup?.pids())?.length === 0 : ((await this.cgroup?.killAll()) ?? false);
      [usage, oomKills] = await Promise.all([this.usage.final(), this.cgroup?.oomKills() ?? null]);
      // Nothing but the launcher (root) can join an empty cgroup, so an empty one stays empty.
      if (cgroupEmpty || !keep) await this.cgroup?.remove();
    } catch {
      // measured what we could; the uid sweep below still runs
    }
    // An emptied cgroup proves the task gone (nothing in the sandbox can leave it); otherwise
    // every process of the slot uid is hunted down, and the uid stays locked if one survives.
    this.gone = (await this.slot?.release(!cgroupEmpty).catch(() => false)) ?? cgroupEmpty;
    return { usage, oomKills };
  }

  /**
   * What names the limit a failed command ran into (exit-reason.ts decides): the workspace tmpfs's
   * use (still mounted until cleanup), whether a file in it sits exactly at the file-size limit,
   * and stderr's last errno texts. The walk for the file runs only when the workspace holds enough
   * bytes for such a file and SIGXFSZ has not already said it.
   */
  private async evidence(reason: SandboxExitReason, signal: string | null): Promise<ExitEvidence> {
    const space = await workspaceSpace(this.ws.dir);
    const size = this.limits.fileSizeBytes;
    const walk = reason === 'exited' && signal !== 'SIGXFSZ' && (space === null || space.usedBytes >= size);
    return {
      workspaceUsedBytes: space?.usedBytes ?? null,
      workspaceFreeBytes: space?.freeBytes ?? null,
      fileAtSizeLimit: walk && (await hasFileOfSize(this.ws.dir, size)),
      stderrFileTooLarge: FILE_TOO_LARGE.test(this.stderrTail),
      stderrNoSpace: NO_SPACE.test(this.stderrTail),
    };
  }

  /**
   * Without a memory cgroup nothing records that RLIMIT_AS was hit: the program just sees ENOMEM.
   * Heuristic: it failed after a sampled address space of half the limit (growth often doubles),
   * or its last stderr reports an allocation failure.
   */
  private looksOutOfMemory(maxVsizeBytes: number): boolean {
    return maxVsizeBytes >= 0.5 * this.limits.memoryBytes || /out of memory|memory exhausted|cannot allocate memory|bad_alloc|MemoryError|\bOOM\b|ENOMEM/i.test(this.stderrTail);
  }

  private async drainStreams(): Promise<void> {
    const streams = [this.child.stdout, this.child.stderr];
    const closed = Promise.all(streams.map((s) => (s.closed ? null : once(s, 'close').catch(() => null))));
    const timedOut = await Promise.race([closed.then(() => false), sleep(STREAM_DRAIN_MS).then(() => true)]);
    if (timedOut) for (const s of streams) s.destroy();
    this.stdout.end();
    this.stderr.end();
  }
}
