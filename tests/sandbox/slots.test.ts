import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { SandboxBusy } from '../../worker/sandbox/index.ts';
import { collect, isRoot, useSandboxRoot } from './helpers.ts';

const sb = useSandboxRoot();
// A private lock directory and a uid range of our own: one slot, so the second start must wait.
const slotDir = mkdtempSync(join(tmpdir(), 'cogo-slots-'));
afterAll(() => rmSync(slotDir, { recursive: true, force: true }));
const oneSlot = (slotWaitMs: number) => ({ slots: 1, slotDir, uid: 300_000 + (process.pid % 1000) * 10, slotWaitMs });

describe.skipIf(!isRoot)('uid slots (root worker)', () => {
  it('a start waits for a slot while all are taken, and fails with SandboxBusy after slotWaitMs', async () => {
    const first = await sb.start({ command: 'sleep 30' }, oneSlot(0));
    const t0 = Date.now();
    const err = await sb.start({ command: 'true' }, oneSlot(400)).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(SandboxBusy);
    expect((err as SandboxBusy).message).toBe('all 1 sandbox uid slots are in use');
    expect(Date.now() - t0).toBeGreaterThanOrEqual(300);

    // Freed by the first task's exit: a waiting start then gets the slot.
    const second = sb.start({ command: 'echo got it' }, oneSlot(20_000));
    setTimeout(() => first.kill('killed'), 300);
    const r = await collect(await second);
    expect(r.stdout).toBe('got it\n');
    expect((await first.exited).reason).toBe('killed');
  });
});
