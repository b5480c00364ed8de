import { execFileSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll } from 'vitest';
import { sandboxFacts, startSandbox, type SandboxExit, type SandboxOptions, type SandboxProcess, type SandboxSpec } from '../../worker/sandbox/index.ts';

export const isRoot = process.geteuid?.() === 0;

/**
 * Slot uids of these tests: apart from the default range, so a worker of another session on the
 * machine never takes a uid a test has just freed (and shows up in a "nothing left" check).
 */
export const TEST_UID_BASE = 400_000;

export interface Finished {
  exit: SandboxExit;
  stdout: string;
  stderr: string;
  proc: SandboxProcess;
}

/**
 * A sandbox root for one test file. Fails the file with an install hint when bubblewrap is
 * missing; every sandbox started through `start`/`run` is killed and cleaned up after its test,
 * and a workspace left behind by anything else fails the file.
 */
export function useSandboxRoot() {
  let root = '';
  const started: SandboxProcess[] = [];
  beforeAll(async () => {
    await sandboxFacts().catch((err: Error) => {
      throw new Error(`sandbox tests need bubblewrap (apt-get install bubblewrap): ${err.message}`);
    });
    root = mkdtempSync(join(tmpdir(), 'cogo-sandbox-test-'));
  });
  afterEach(async () => {
    for (const p of started.splice(0)) {
      p.kill('killed');
      await p.cleanup();
    }
  });
  afterAll(async () => {
    const left = readdirSync(root).filter((n) => n.startsWith('ws-'));
    for (const n of left) if (isRoot) execFileSync('umount', ['--lazy', join(root, n)], { stdio: 'ignore' });
    await rm(root, { recursive: true, force: true });
    if (left.length > 0) throw new Error(`workspaces left behind: ${left.join(', ')}`);
  });
  const options = (): SandboxOptions => ({ root, uid: TEST_UID_BASE });
  const start = async (spec: SandboxSpec, opts: Partial<SandboxOptions> = {}) => {
    const p = await startSandbox(spec, { ...options(), ...opts });
    started.push(p);
    return p;
  };
  const run = async (spec: SandboxSpec, opts: Partial<SandboxOptions> = {}) => collect(await start(spec, opts));
  return { options, start, run };
}

export async function collect(proc: SandboxProcess): Promise<Finished> {
  const out: Buffer[] = [];
  const err: Buffer[] = [];
  proc.stdout.on('data', (c: Buffer) => out.push(c));
  proc.stderr.on('data', (c: Buffer) => err.push(c));
  const exit = await proc.exited;
  return { exit, stdout: Buffer.concat(out).toString(), stderr: Buffer.concat(err).toString(), proc };
}

/** The host uid a sandbox runs as: its workspace (a tmpfs when root) belongs to it. */
export function slotUid(proc: SandboxProcess): number {
  return statSync(proc.workspace).uid;
}

/** Live host processes (not zombies) with `uid` as real/effective/saved/fs uid. */
export function liveProcessesOf(uid: number): { pid: number; cmd: string }[] {
  const out: { pid: number; cmd: string }[] = [];
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const status = readFileSync(`/proc/${name}/status`, 'utf8');
      const uids = /^Uid:\s+(.*)$/m.exec(status)?.[1]?.split(/\s+/).map(Number) ?? [];
      const state = /^State:\s+(\S)/m.exec(status)?.[1];
      if (!uids.includes(uid) || state === 'Z') continue;
      out.push({ pid: Number(name), cmd: readFileSync(`/proc/${name}/cmdline`, 'utf8').replaceAll('\0', ' ') });
    } catch {
      // exited while we looked
    }
  }
  return out;
}
