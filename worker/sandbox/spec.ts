import { BASE_ENV } from './bwrap.ts';
import { InvalidSandboxSpec } from './errors.ts';
import type { SandboxFile, SandboxSpec } from './types.ts';

/** bwrap receives command and env as arguments; stay well under the kernel's ARG_MAX. */
const MAX_ARG_BYTES = 1024 * 1024;

export interface CheckedSpec {
  argv: string[];
  env: Record<string, string>;
  files: SandboxFile[];
  stdin: 'pipe' | 'closed';
  network: boolean;
  readOnlyBinds: { source: string; target: string }[];
  onOutputLimit: 'stop' | 'truncate';
}

/** Validates the untrusted parts of a spec (limits are checked by resolveLimits). */
export function checkSpec(spec: SandboxSpec): CheckedSpec {
  if (typeof spec !== 'object' || spec === null) throw new InvalidSandboxSpec('spec', 'must be an object');
  const argv = commandArgv(spec.command);
  const env = { ...BASE_ENV, ...checkEnv(spec.env) };
  const bytes = [...argv, ...Object.entries(env).flat()].reduce((n, s) => n + Buffer.byteLength(s) + 1, 0);
  if (bytes > MAX_ARG_BYTES) throw new InvalidSandboxSpec('command', `command and env exceed ${MAX_ARG_BYTES} bytes`);
  if (spec.files !== undefined && !Array.isArray(spec.files)) throw new InvalidSandboxSpec('files', 'must be an array');
  if (spec.stdin !== undefined && spec.stdin !== 'pipe' && spec.stdin !== 'closed') throw new InvalidSandboxSpec('stdin', "must be 'pipe' or 'closed'");
  if (spec.network !== undefined && typeof spec.network !== 'boolean') throw new InvalidSandboxSpec('network', 'must be a boolean');
  if (spec.onOutputLimit !== undefined && spec.onOutputLimit !== 'stop' && spec.onOutputLimit !== 'truncate') {
    throw new InvalidSandboxSpec('onOutputLimit', "must be 'stop' or 'truncate'");
  }
  return {
    argv,
    env,
    files: spec.files ?? [],
    stdin: spec.stdin ?? 'closed',
    network: spec.network ?? false,
    readOnlyBinds: checkBinds(spec.readOnlyBinds),
    onOutputLimit: spec.onOutputLimit ?? 'stop',
  };
}

function checkBinds(binds: unknown): { source: string; target: string }[] {
  if (binds === undefined) return [];
  if (!Array.isArray(binds)) throw new InvalidSandboxSpec('readOnlyBinds', 'must be an array');
  return binds.map((b: { source?: unknown; target?: unknown }, i) => {
    const ok = (p: unknown): p is string => typeof p === 'string' && p.startsWith('/') && !p.includes('\0') && !p.split('/').includes('..');
    if (!ok(b?.source)) throw new InvalidSandboxSpec(`readOnlyBinds[${i}].source`, 'must be an absolute path without ..');
    if (!ok(b?.target) || !/^\/mnt\/[A-Za-z0-9._-]+$/.test(b.target)) throw new InvalidSandboxSpec(`readOnlyBinds[${i}].target`, 'must be /mnt/<name>');
    return { source: b.source, target: b.target };
  });
}

function commandArgv(command: unknown): string[] {
  if (typeof command === 'string') {
    if (command.trim() === '') throw new InvalidSandboxSpec('command', 'is empty');
    if (command.includes('\0')) throw new InvalidSandboxSpec('command', 'contains NUL');
    return ['/bin/sh', '-c', command];
  }
  if (!Array.isArray(command) || command.length === 0) throw new InvalidSandboxSpec('command', 'must be a string or a non-empty array');
  command.forEach((a, i) => {
    if (typeof a !== 'string') throw new InvalidSandboxSpec(`command[${i}]`, 'must be a string');
    if (a.includes('\0')) throw new InvalidSandboxSpec(`command[${i}]`, 'contains NUL');
  });
  if (command[0] === '') throw new InvalidSandboxSpec('command[0]', 'is empty');
  return command as string[];
}

function checkEnv(env: unknown): Record<string, string> {
  if (env === undefined) return {};
  if (typeof env !== 'object' || env === null || Array.isArray(env)) throw new InvalidSandboxSpec('env', 'must be an object');
  for (const [k, v] of Object.entries(env)) {
    if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(k)) throw new InvalidSandboxSpec(`env.${k}`, 'is not a valid variable name');
    if (typeof v !== 'string') throw new InvalidSandboxSpec(`env.${k}`, 'must be a string');
    if (v.includes('\0')) throw new InvalidSandboxSpec(`env.${k}`, 'contains NUL');
  }
  return env as Record<string, string>;
}
