import { execFile } from 'node:child_process';
import { constants } from 'node:fs';
import { access, lstat, readdir, readlink } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { SandboxUnavailable } from './errors.ts';
import { SANDBOX_UID, etcFiles } from './etc.ts';
import type { FdData } from './launcher.ts';

const run = promisify(execFile);

/** Where helper binaries are looked for; the worker's own PATH is not trusted to find them. */
const SYSTEM_DIRS = ['/usr/bin', '/bin', '/usr/sbin', '/sbin', '/usr/local/bin'];

/** Safe base environment of every task; SandboxSpec.env is layered on top. */
export const BASE_ENV: Readonly<Record<string, string>> = Object.freeze({
  PATH: '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin',
  HOME: '/workspace',
  USER: 'sandbox',
  LOGNAME: 'sandbox',
  SHELL: '/bin/sh',
  LANG: 'C.UTF-8',
  TERM: 'dumb',
  TMPDIR: '/tmp',
});

/** Host /etc entries tools need (dynamic linker, TLS roots, alternatives symlinks, zone, Java config). */
const ETC_BINDS = ['ld.so.cache', 'ld.so.conf', 'ld.so.conf.d', 'alternatives', 'ssl', 'ca-certificates', 'localtime', 'os-release'];
/** Merged-/usr links (or real directories on older systems) recreated at the sandbox root. */
const ROOT_DIRS = ['bin', 'sbin', 'lib', 'lib32', 'lib64', 'libx32'];

/**
 * /proc entries hidden as Docker hides them (plus the kernel's build config, boot command line,
 * pressure stall figures, symbols and key users): a file reads empty (/dev/null bound read-only
 * over it), a directory is an empty read-only tmpfs. Only those the kernel has. They tell about
 * the host (hardware, boot, other tenants' load and timers, kernel layout) or reach it (sysrq).
 * bwrap itself already binds `sys`, `sysrq-trigger`, `irq` and `bus` read-only.
 */
export const PROC_MASKED_FILES = [
  'kcore',
  'kallsyms',
  'keys',
  'key-users',
  'timer_list',
  'timer_stats',
  'sched_debug',
  'latency_stats',
  'config.gz',
  'cmdline',
  'interrupts',
  'sysrq-trigger',
];
export const PROC_MASKED_DIRS = ['acpi', 'asound', 'scsi', 'pressure'];

/**
 * Descriptors of bwrap besides stdio and the status pipe (3): memory files the launcher writes
 * (launcher.py place_data). bwrap reads each and closes it before the task starts.
 */
const ARGS_FD = 4;
/** The launcher's two seccomp programs (syscall_filter.py): the denylist and the personality rule. */
export const FILTER_FDS = [5, 6];
const FIRST_FILE_FD = 7;

export async function findExecutable(name: string): Promise<string | null> {
  for (const dir of SYSTEM_DIRS) {
    const p = join(dir, name);
    if (
      await access(p, constants.X_OK).then(
        () => true,
        () => false,
      )
    )
      return p;
  }
  return null;
}

export interface BwrapInfo {
  path: string;
  version: string;
  /** `--size` for tmpfs (bwrap ≥ 0.5). */
  size: boolean;
  /** `--disable-userns` (bwrap ≥ 0.8). */
  disableUserns: boolean;
}

let info: Promise<BwrapInfo> | undefined;

export function bwrapInfo(): Promise<BwrapInfo> {
  info ??= (async () => {
    const path = await findExecutable('bwrap');
    if (!path) throw new SandboxUnavailable('bubblewrap (bwrap) is not installed: apt-get install bubblewrap');
    const env = { PATH: BASE_ENV.PATH };
    const [{ stdout: version }, { stdout: help }] = await Promise.all([run(path, ['--version'], { env }), run(path, ['--help'], { env })]);
    // Every sandbox gets the seccomp filter (--add-seccomp-fd, bwrap >= 0.6) and files written by --file with --perms.
    if (!help.includes('--add-seccomp-fd') || !help.includes('--perms')) {
      throw new SandboxUnavailable(`bubblewrap ${version.trim()} is too old (no --add-seccomp-fd or --perms; 0.6 or later needed): apt-get install bubblewrap`);
    }
    return { path, version: version.trim(), size: help.includes('--size'), disableUserns: help.includes('--disable-userns') };
  })();
  info.catch(() => (info = undefined));
  return info;
}

type Layout = string[];
let layout: Promise<Layout> | undefined;

/** Read-only view of the host: /usr, the root links into it, and the needed bits of /etc. */
function hostLayout(): Promise<Layout> {
  layout ??= (async () => {
    const args = ['--ro-bind', '/usr', '/usr'];
    for (const d of ROOT_DIRS) {
      const st = await lstat(`/${d}`).catch(() => null);
      if (st?.isSymbolicLink()) args.push('--symlink', await readlink(`/${d}`), `/${d}`);
      else if (st?.isDirectory()) args.push('--ro-bind', `/${d}`, `/${d}`);
    }
    const java = (await readdir('/etc').catch(() => [])).filter((n) => /^java-\d+-openjdk$/.test(n));
    for (const e of [...ETC_BINDS, ...java]) args.push('--ro-bind-try', `/etc/${e}`, `/etc/${e}`);
    return args;
  })();
  return layout;
}

let masks: Promise<{ args: Layout; masked: string[] }> | undefined;

/** The /proc masks this kernel needs (after `--proc /proc`), and the entries they cover. */
function procMaskPlan(): Promise<{ args: Layout; masked: string[] }> {
  masks ??= (async () => {
    const args: string[] = [];
    const masked: string[] = [];
    for (const name of PROC_MASKED_FILES) {
      if ((await lstat(`/proc/${name}`).catch(() => null))?.isFile()) args.push('--dev-bind', '/dev/null', `/proc/${name}`), masked.push(name);
    }
    for (const name of PROC_MASKED_DIRS) {
      if ((await lstat(`/proc/${name}`).catch(() => null))?.isDirectory()) args.push('--tmpfs', `/proc/${name}`, '--remount-ro', `/proc/${name}`), masked.push(name);
    }
    return { args, masked };
  })();
  return masks;
}

const procMasks = async (): Promise<Layout> => (await procMaskPlan()).args;

/** The /proc entries masked on this kernel, as the worker reports them (the same list bwrap gets). */
export const maskedProcEntries = async (): Promise<string[]> => (await procMaskPlan()).masked;

export interface BwrapPlan {
  workspace: string;
  hostname: string;
  network: boolean;
  /** Host directories bound read-only (checked by checkSpec). */
  readOnlyBinds?: { source: string; target: string }[];
  /** Size of /tmp and /dev/shm. */
  tmpBytes: number;
  env: Record<string, string>;
  argv: string[];
  /** Inherited fd where bwrap writes JSON status ("child-pid" once the command starts, "exit-code"). */
  statusFd: number;
}

/** How to start bwrap for a plan: its argv, and the descriptors the launcher prepares for it. */
export interface BwrapCommand {
  /**
   * bwrap's own argv after its path: `--args <fd> -- <the task's command>`. Its process is the
   * sandbox's PID 1, whose command line every task can read; its options name host paths.
   */
  argv: string[];
  /** The options (NUL-terminated) and the generated /etc files, by descriptor. */
  fds: FdData[];
  /** Descriptors for the launcher's seccomp programs (`--add-seccomp-fd`). */
  filterFds: number[];
  /** The options, as the fd at `--args` holds them. */
  args: string[];
}

export async function bwrapCommand(plan: BwrapPlan): Promise<BwrapCommand> {
  const args = await bwrapOptions(plan);
  // A NUL would split an argument in two (checkSpec refuses them in anything a task gives).
  if (args.some((a) => a.includes('\0'))) throw new SandboxUnavailable('a bwrap argument contains NUL');
  const etc = Object.values(etcFiles(plan.hostname)).map((data, i) => ({ fd: FIRST_FILE_FD + i, data }));
  return {
    // bwrap takes the command only from its own argv, after the options read from the fd.
    argv: ['--args', String(ARGS_FD), '--', ...plan.argv],
    fds: [{ fd: ARGS_FD, data: args.map((a) => `${a}\0`).join('') }, ...etc],
    filterFds: FILTER_FDS,
    args,
  };
}

async function bwrapOptions(plan: BwrapPlan): Promise<string[]> {
  const bw = await bwrapInfo();
  const sized = (bytes: number) => (bw.size ? ['--size', String(bytes)] : []);
  return [
    '--unshare-all',
    '--unshare-user',
    ...(bw.disableUserns ? ['--disable-userns'] : []),
    ...(plan.network ? ['--share-net'] : []),
    '--new-session',
    '--die-with-parent',
    '--cap-drop',
    'ALL',
    '--uid',
    String(SANDBOX_UID),
    '--gid',
    String(SANDBOX_UID),
    '--hostname',
    plan.hostname,
    ...(await hostLayout()),
    // Generated files written into the root (no bind mount, so no host path in mountinfo).
    ...Object.keys(etcFiles(plan.hostname)).flatMap((name, i) => ['--perms', '0444', '--file', String(FIRST_FILE_FD + i), `/etc/${name}`]),
    ...(plan.network ? ['--ro-bind-try', '/etc/resolv.conf', '/etc/resolv.conf'] : []),
    '--proc',
    '/proc',
    ...(await procMasks()),
    '--dev',
    '/dev',
    ...sized(plan.tmpBytes),
    '--tmpfs',
    '/tmp',
    ...sized(plan.tmpBytes),
    '--tmpfs',
    '/dev/shm',
    '--bind',
    plan.workspace,
    '/workspace',
    ...(plan.readOnlyBinds ?? []).flatMap((b) => ['--ro-bind', b.source, b.target]),
    // The root itself is bwrap's unsized tmpfs: nothing may be written outside the mounts above.
    '--remount-ro',
    '/',
    '--chdir',
    '/workspace',
    '--clearenv',
    ...Object.entries(plan.env).flatMap(([k, v]) => ['--setenv', k, v]),
    '--json-status-fd',
    String(plan.statusFd),
    // Loaded last, right before the exec of the task (and in bwrap's PID 1, which only waits).
    ...FILTER_FDS.flatMap((fd) => ['--add-seccomp-fd', String(fd)]),
  ];
}
