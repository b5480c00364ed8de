import { readFile } from 'node:fs/promises';
import { HELPER_PROCESSES, type SandboxLimits } from './options.ts';

/** The only environment the host-side launcher sees; bwrap then clears it anyway. */
export const LAUNCHER_ENV = { PATH: '/usr/sbin:/usr/bin:/sbin:/bin' };
/** Inherited descriptor bwrap writes its JSON status to. */
export const STATUS_FD = 3;

/**
 * The bash script that runs between the worker and bwrap, already as the sandbox uid (Node drops
 * root in spawn). It closes every inherited descriptor above the status fd (Node passes on any fd
 * the worker inherited without CLOEXEC, and bwrap would hand it to the task; dash cannot close fds
 * above 9), moves itself into the task's cgroups (args up to "--"), sets the rlimits (inherited by
 * everything in the sandbox, which cannot raise a hard limit), then execs bwrap.
 */
export async function launcherScript(limits: SandboxLimits, addressSpace: boolean): Promise<string> {
  const hard = await hardLimits();
  const cap = (name: string, value: number) => Math.max(1, Math.min(value, hard[name] ?? Infinity));
  const kib = (name: string, bytes: number) => Math.max(1, Math.floor(cap(name, bytes) / 1024));
  const cpuHard = cap('Max cpu time', Math.ceil(limits.cpuTimeMs / 1000) + 1);
  const ulimits = [
    // The soft CPU limit sends SIGXCPU, the hard one a second later SIGKILL.
    `ulimit -S -t ${Math.max(1, cpuHard - 1)}`,
    `ulimit -H -t ${cpuHard}`,
    // RLIMIT_NPROC counts the slot uid's processes across the user namespace, so it is per task.
    `ulimit -u ${cap('Max processes', limits.processes + HELPER_PROCESSES)}`,
    `ulimit -n ${cap('Max open files', limits.openFiles)}`,
    // bash counts in KiB: rounded down, so never above the limit.
    `ulimit -f ${kib('Max file size', limits.fileSizeBytes)}`,
    'ulimit -c 0',
    // Stands in for memory only without a memory cgroup.
    ...(addressSpace ? [`ulimit -v ${kib('Max address space', limits.memoryBytes)}`] : []),
  ];
  return [
    `for f in /proc/self/fd/*; do n=\${f##*/}; (( n > ${STATUS_FD} )) && eval "exec $n>&-"; done`,
    'while [[ $1 != -- ]]; do echo $$ > "$1" || exit 125; shift; done; shift',
    `${ulimits.join(' && ')} || exit 125`,
    'exec "$@"',
  ].join('\n');
}

let hardCache: Promise<Record<string, number>> | undefined;

/** The worker's own hard limits: an unprivileged launcher cannot go above them. */
function hardLimits(): Promise<Record<string, number>> {
  hardCache ??= readFile('/proc/self/limits', 'utf8').then((text) => {
    const out: Record<string, number> = {};
    for (const line of text.split('\n').slice(1)) {
      const m = /^(.+?)\s{2,}(\S+)\s+(\S+)/.exec(line);
      if (m && m[3] !== 'unlimited') out[m[1]!] = Number(m[3]);
    }
    return out;
  });
  return hardCache;
}
