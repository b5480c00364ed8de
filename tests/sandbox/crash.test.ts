import { spawn } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { describe, expect, it, onTestFinished } from 'vitest';
import { isRoot, liveProcessesOf, TEST_UID_BASE, useSandboxRoot } from './helpers.ts';

const sb = useSandboxRoot();
const SANDBOX = resolve(import.meta.dirname, '../../worker/sandbox/index.ts');

describe('a worker that dies mid-task', () => {
  it('takes its sandbox down with it, and the next worker reclaims the workspace', async () => {
    const root = sb.options().root;
    const script = join(root, 'crashing-worker.mts');
    writeFileSync(
      script,
      `import { startSandbox } from ${JSON.stringify(SANDBOX)};
       const p = await startSandbox({ command: 'sleep 100 & sleep 100' }, { root: ${JSON.stringify(root)}, uid: ${TEST_UID_BASE} });
       console.log(p.workspace);
       setInterval(() => {}, 1000);`,
    );
    const worker = spawn(process.execPath, ['--import', 'tsx', script], { cwd: resolve(import.meta.dirname, '../..'), stdio: ['ignore', 'pipe', 'inherit'] });
    onTestFinished(() => {
      worker.kill('SIGKILL');
    });
    let workspace = '';
    worker.stdout.on('data', (c: Buffer) => (workspace += c.toString()));
    for (let i = 0; i < 200 && !workspace.includes('\n'); i++) await sleep(50);
    workspace = workspace.trim();
    expect(workspace).toMatch(/\/ws-\d+-\d+-/);
    const uid = isRoot ? statSync(workspace).uid : -1;
    const sleeping = () => liveProcessesOf(uid).filter((p) => p.cmd.startsWith('sleep 100')).length;
    for (let i = 0; i < 40 && isRoot && sleeping() < 2; i++) await sleep(50);
    if (isRoot) expect(sleeping()).toBe(2);

    worker.kill('SIGKILL');
    await new Promise((r) => worker.once('exit', r));
    await sleep(500);
    if (isRoot) expect(liveProcessesOf(uid)).toEqual([]);
    expect(existsSync(workspace)).toBe(true); // nobody cleaned up yet...

    const next = await sb.run({ command: 'echo ok' }); // ...until the next worker starts on this root
    expect(next.stdout).toBe('ok\n');
    expect(existsSync(workspace)).toBe(false);
    expect(readFileSync('/proc/self/mounts', 'utf8')).not.toContain(workspace);
  });
});

/** Our launcher (worker/sandbox/launcher.py): a child of this process. */
function launcherPid(): number | undefined {
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const stat = readFileSync(`/proc/${name}/stat`, 'utf8');
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      if (ppid === process.pid && readFileSync(`/proc/${name}/cmdline`, 'utf8').includes('launcher.py')) return Number(name);
    } catch {
      // exited while we looked
    }
  }
  return undefined;
}

describe('a launcher that dies', () => {
  it('takes its sandboxes down (read as SIGKILL), leaves nothing, and the next start gets a new launcher', async () => {
    const p = await sb.start({ command: 'sleep 100 & sleep 100' });
    const uid = isRoot ? statSync(p.workspace).uid : -1;
    const pid = launcherPid();
    expect(pid, 'the launcher is a child of the test process').toBeDefined();
    process.kill(pid!, 'SIGKILL');
    const exit = await p.exited;
    expect(exit).toMatchObject({ exitCode: null, signal: 'SIGKILL', reason: 'exited' });
    if (isRoot) expect(liveProcessesOf(uid)).toEqual([]);
    await p.cleanup();

    const next = await sb.run({ command: 'echo again' });
    expect(next.stdout).toBe('again\n');
    expect(launcherPid()).not.toBe(pid);
  });
});
