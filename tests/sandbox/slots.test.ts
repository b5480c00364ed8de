import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { SandboxBusy } from '../../worker/sandbox/index.ts';
import { readStat } from '../../worker/sandbox/procfs.ts';
import { acquireSlot } from '../../worker/sandbox/slots.ts';
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

describe('uid slot locks', () => {
  it("concurrent takes of one process get distinct slots past another live worker's lock; the next scan starts after the last slot taken", async () => {
    const cfg = { uidBase: 310_000 + (process.pid % 1000) * 10, gidBase: 310_000 + (process.pid % 1000) * 10, slots: 8, slotDir, waitMs: 0 };
    // Slot 0 is held by another live process (our parent stands in for another worker).
    const parent = await readStat(process.ppid);
    writeFileSync(join(slotDir, String(cfg.uidBase)), `${process.ppid}-${parent!.startTime}`);

    const taken = await Promise.all(Array.from({ length: 5 }, () => acquireSlot(cfg)));
    expect(taken.map((s) => s.uid - cfg.uidBase).sort()).toEqual([1, 2, 3, 4, 5]);
    for (const s of taken) await s.release(false);
    // Freed slots 1..5 are not taken again first: the scan goes on from slot 6 and wraps past slot 0.
    const next = await Promise.all(Array.from({ length: 3 }, () => acquireSlot(cfg)));
    expect(next.map((s) => s.uid - cfg.uidBase)).toEqual([6, 7, 1]);
    for (const s of next) await s.release(false);
    const all = await Promise.allSettled(Array.from({ length: 8 }, () => acquireSlot(cfg)));
    const got = all.flatMap((r) => (r.status === 'fulfilled' ? [r.value] : []));
    expect(got.map((s) => s.uid - cfg.uidBase).sort()).toEqual([1, 2, 3, 4, 5, 6, 7]);
    expect(all.filter((r) => r.status === 'rejected').map((r) => (r as PromiseRejectedResult).reason)).toEqual([expect.any(SandboxBusy)]);
    for (const s of got) await s.release(false);
  });
});
