import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { BASE_ENV, bwrapInfo, findExecutable, maskedProcEntries } from './bwrap.ts';
import { detectCgroups, type CgroupMode } from './cgroups.ts';
import { seccompFilter } from './launcher.ts';

const run = promisify(execFile);

/** Tools a task is likely to want, with the flag that prints their version. */
const TOOLS: [name: string, ...args: string[]][] = [
  ['node', '--version'],
  ['npm', '--version'],
  ['python3', '--version'],
  ['gcc', '--version'],
  ['g++', '--version'],
  ['make', '--version'],
  ['git', '--version'],
  ['java', '-version'],
  ['go', 'version'],
  ['rustc', '--version'],
  ['cargo', '--version'],
  ['deno', '--version'],
];

export interface SandboxFacts {
  /** bwrap path and version. */
  bwrap: string;
  /** Cgroup hierarchy the machine mounts (hybrid counts as v1). */
  cgroups: 'v2' | 'v1' | 'none';
  /** The hierarchy task cgroups are made in, or null (rlimits only). */
  cgroupsUsed: 'v2' | 'v1' | null;
  /** Why a cgroup controller is not used, or what setting cgroups up took. */
  cgroupNotes: string[];
  /** Which mechanism enforces each limit on this machine, for a worker running with these privileges. */
  limitsBy: string;
  /**
   * Protections besides the limits, as the worker logs them: the seccomp filter, the /proc
   * entries masked on this kernel, user namespaces, what PID 1's command line shows.
   */
  protections: string;
  /** System calls the seccomp filter denies with EPERM, and its rules on arguments and ABIs. */
  seccomp: { denied: string[]; rules: string[] };
  /** Versions of tools on the sandbox's PATH (the sandbox sees the host's /usr read-only). */
  toolchain: Record<string, string>;
}

/**
 * What the sandbox can do here with these cgroup options. Throws SandboxUnavailable if bwrap is
 * missing or too old, or the seccomp filter cannot be built (python3-seccomp missing): a worker
 * never runs tasks without it.
 */
export async function sandboxFacts(cgroups: CgroupMode = true): Promise<SandboxFacts> {
  const [bw, cg, toolchain, filter, masked] = await Promise.all([bwrapInfo(), detectCgroups(cgroups), toolVersions(), seccompFilter(), maskedProcEntries()]);
  const asRoot = process.geteuid?.() === 0;
  const has = (c: 'memory' | 'pids' | 'cpu') => c in cg.usable;
  const v = cg.using;
  const limitsBy = [
    'wall=timer',
    `cpu=RLIMIT_CPU+${has('cpu') ? (v === 'v2' ? 'cgroup-v2(cpu.stat)' : 'cgroup-v1(cpuacct)') : 'proc-sampling'}`,
    `memory=${has('memory') ? `cgroup-${v}(memory, oom_kill)` : 'RLIMIT_AS(heuristic)'}`,
    `processes=${has('pids') ? `cgroup-${v}(pids)+` : ''}RLIMIT_NPROC(${asRoot ? 'per-slot-uid' : 'shared-with-worker-uid'})`,
    'openFiles=RLIMIT_NOFILE',
    'fileSize=RLIMIT_FSIZE',
    `workspace=${asRoot ? 'tmpfs(size)' : 'none(plain-dir)'}`,
    `tmp=${bw.size ? 'bwrap-tmpfs(size)' : 'bwrap-tmpfs(unsized)'}`,
    'output=byte-counter',
  ].join('; ');
  const protections = [
    `seccomp=denylist(${filter.denied.length} syscalls + ${filter.rules.length} rules, EPERM; 32-bit ABI denied)`,
    `proc-masked=${masked.join(',') || 'none'}`,
    `nested-userns=${bw.disableUserns ? 'disabled(--disable-userns)' : 'denied(seccomp)'}`,
    'caps=none',
    'pid1-argv=--args-fd',
  ].join('; ');
  return {
    bwrap: `${bw.path} (${bw.version})`,
    cgroups: cg.version,
    cgroupsUsed: v,
    cgroupNotes: cg.notes,
    limitsBy,
    protections,
    seccomp: { denied: filter.denied, rules: filter.rules },
    toolchain,
  };
}

async function toolVersions(): Promise<Record<string, string>> {
  const found = await Promise.all(
    TOOLS.map(async ([name, ...args]) => {
      // Only SYSTEM_DIRS are searched: all visible in the sandbox, unlike e.g. ~/.cargo/bin.
      const path = await findExecutable(name);
      if (!path) return null;
      const out = await run(path, args, { env: { PATH: BASE_ENV.PATH, HOME: '/nonexistent' }, timeout: 10_000 }).catch((err: { stdout?: string; stderr?: string }) => ({
        stdout: err.stdout ?? '',
        stderr: err.stderr ?? '',
      }));
      const line = `${out.stdout}\n${out.stderr}`.split('\n').find((l) => l.trim());
      return line ? ([name, line.trim()] as const) : null;
    }),
  );
  return Object.fromEntries(found.filter((f) => f !== null));
}
