import { execFile } from 'node:child_process';
import { constants } from 'node:fs';
import { access, lstat, readdir, readlink } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { SandboxUnavailable } from './errors.ts';
import { SANDBOX_UID, etcFiles } from './etc.ts';

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

export async function findExecutable(name: string): Promise<string | null> {
  for (const dir of SYSTEM_DIRS) {
    const p = join(dir, name);
    if (await access(p, constants.X_OK).then(() => true, () => false)) return p;
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

export interface BwrapPlan {
  workspace: string;
  etcDir: string;
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

export async function bwrapArgs(plan: BwrapPlan): Promise<string[]> {
  const bw = await bwrapInfo();
  const sized = (bytes: number) => (bw.size ? ['--size', String(bytes)] : []);
  return [
    '--unshare-all',
    '--unshare-user',
    ...(bw.disableUserns ? ['--disable-userns'] : []),
    ...(plan.network ? ['--share-net'] : []),
    '--new-session',
    '--die-with-parent',
    '--cap-drop', 'ALL',
    '--uid', String(SANDBOX_UID),
    '--gid', String(SANDBOX_UID),
    '--hostname', plan.hostname,
    ...(await hostLayout()),
    ...Object.keys(etcFiles(plan.hostname)).flatMap((name) => ['--ro-bind', join(plan.etcDir, name), `/etc/${name}`]),
    ...(plan.network ? ['--ro-bind-try', '/etc/resolv.conf', '/etc/resolv.conf'] : []),
    '--proc', '/proc',
    '--dev', '/dev',
    ...sized(plan.tmpBytes), '--tmpfs', '/tmp',
    ...sized(plan.tmpBytes), '--tmpfs', '/dev/shm',
    '--bind', plan.workspace, '/workspace',
    ...(plan.readOnlyBinds ?? []).flatMap((b) => ['--ro-bind', b.source, b.target]),
    // The root itself is bwrap's unsized tmpfs: nothing may be written outside the mounts above.
    '--remount-ro', '/',
    '--chdir', '/workspace',
    '--clearenv',
    ...Object.entries(plan.env).flatMap(([k, v]) => ['--setenv', k, v]),
    '--json-status-fd', String(plan.statusFd),
    '--',
    ...plan.argv,
  ];
}
