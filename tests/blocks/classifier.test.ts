// The block classifier on synthetic sample sequences: each reason fires once its window has
// passed, and progress of any kind (output, I/O, a new process) keeps a busy task from a block.
import { describe, expect, it } from "vitest";
import { BLOCK_DETECTION_DEFAULTS } from "../../functions/_shared/recovery/options.ts";
import { BlockClassifier, type Observation } from "../../worker/blocks/classifier.ts";

const MiB = 1024 * 1024;
const limits = { memoryBytes: 100 * MiB, processes: 100, outputBytes: 10 * MiB };
const options = {
  ...BLOCK_DETECTION_DEFAULTS,
  infiniteLoopMs: 2000,
  idleStallMs: 3000,
  waitingForInputMs: 1000,
  deadlockMs: 1500,
  memoryMs: 500,
  forkBombMs: 300,
  outputFloodMs: 1000,
};

const quietWaits = { stdin: 0, output: 0, lock: 0, child: 0, other: 1, running: 0 };

/** Feeds `n` observations 250 ms apart; `step(i)` changes each from an idle baseline. Returns the first detection and when. */
function run(n: number, step: (i: number, prev: Observation) => Partial<Observation>) {
  const c = new BlockClassifier(options, limits);
  let prev: Observation = { at: 0, cpuMs: 0, outputBytes: 0, ioDelta: 0, newProcess: false, runnable: false, memoryBytes: 10 * MiB, tasks: 3, oomKills: 0, forkFailures: 0 };
  c.observe(prev);
  for (let i = 1; i <= n; i++) {
    const ob: Observation = { ...prev, at: i * 250, ioDelta: 0, newProcess: false, waits: undefined, ...step(i, prev) };
    const d = c.observe(ob);
    if (d) return { ...d, at: ob.at };
    prev = ob;
  }
  return null;
}

describe("block classifier", () => {
  it("a CPU-bound task without progress is an infinite loop after the window, not before", () => {
    const d = run(40, (_, p) => ({ cpuMs: p.cpuMs + 245, runnable: true }));
    expect(d).toMatchObject({ reason: "infinite_loop" });
    expect(d!.at).toBeGreaterThanOrEqual(2000);
    expect(d!.at).toBeLessThanOrEqual(2500);
    expect(d!.summary).toMatch(/^CPU 98 % for 2\.\d s with no output/);
  });

  it("a loop starved by a busy machine (runnable at every sample, 10 % CPU) is still a loop", () => {
    expect(run(40, (_, p) => ({ cpuMs: p.cpuMs + 25, runnable: true }))).toMatchObject({ reason: "infinite_loop" });
    // Runnable now and then (a process waking up periodically) is not.
    expect(run(40, (i, p) => ({ cpuMs: p.cpuMs + 25, runnable: i % 3 === 0, waits: { stdin: 0, output: 0, lock: 0, child: 0, other: 1, running: 0 } }))).toBeNull();
  });

  it("busy with output, file writes or new processes now and then is healthy", () => {
    expect(run(80, (i, p) => ({ cpuMs: p.cpuMs + 250, runnable: true, outputBytes: p.outputBytes + (i % 6 === 0 ? 10 : 0) }))).toBeNull();
    expect(run(80, (i, p) => ({ cpuMs: p.cpuMs + 250, runnable: true, ioDelta: i % 6 === 0 ? 4096 : 0 }))).toBeNull();
    expect(run(80, (i, p) => ({ cpuMs: p.cpuMs + 250, runnable: true, newProcess: i % 6 === 0 }))).toBeNull();
  });

  it("quiet threads reading stdin: waiting for input; in locks: deadlock; otherwise idle stall", () => {
    const stdin = run(40, () => ({ waits: { ...quietWaits, stdin: 1, other: 2 } }));
    expect(stdin).toMatchObject({ reason: "waiting_for_input" });
    expect(stdin!.at).toBeLessThan(2000);
    expect(run(40, () => ({ waits: { stdin: 0, output: 0, lock: 3, child: 1, other: 0, running: 0 } }))).toMatchObject({ reason: "deadlock" });
    // A lock waiter next to a thread doing something else is not a deadlock (a pool waiting for work).
    expect(run(40, () => ({ waits: { stdin: 0, output: 0, lock: 3, child: 0, other: 1, running: 0 } }))).toMatchObject({ reason: "idle_stall" });
    // Waits read only now and then: the windows hold between reads.
    expect(run(40, (i) => (i % 4 === 0 ? { waits: { ...quietWaits, stdin: 1 } } : {}))).toMatchObject({ reason: "waiting_for_input" });
    // Blocked writing output the worker has not read yet is back-pressure, not a stall.
    expect(run(40, () => ({ waits: { ...quietWaits, output: 1 } }))).toBeNull();
    const idle = run(40, () => ({ waits: quietWaits }));
    expect(idle).toMatchObject({ reason: "idle_stall" });
    expect(idle!.at).toBeGreaterThanOrEqual(3000);
  });

  it("idle with a tick of output more often than the window is healthy", () => {
    expect(run(80, (i, p) => ({ outputBytes: p.outputBytes + (i % 8 === 0 ? 5 : 0), waits: quietWaits }))).toBeNull();
  });

  it("memory near the limit, an OOM kill, processes at the limit, output floods", () => {
    expect(run(20, () => ({ memoryBytes: 97 * MiB }))).toMatchObject({ reason: "memory_exhausted" });
    expect(run(20, (_, p) => ({ memoryBytes: 90 * MiB, outputBytes: p.outputBytes + 1 }))).toBeNull();
    // An OOM kill the task survives is not a block by itself.
    expect(run(20, (i, p) => ({ oomKills: i >= 2 ? 1 : 0, cpuMs: i * 100, outputBytes: p.outputBytes + 1 }))).toBeNull();
    expect(run(20, (_, p) => ({ tasks: 95, cpuMs: p.cpuMs + 50, newProcess: true }))).toMatchObject({ reason: "fork_bomb" });
    expect(run(20, (i, p) => ({ forkFailures: i, cpuMs: p.cpuMs + 10 }))).toMatchObject({ reason: "fork_bomb" });
    // The total alone is left to the sandbox's exact cut unless outputPercent is below 100.
    expect(run(20, (_, p) => ({ outputBytes: Math.min(p.outputBytes + 0.5 * MiB, 10 * MiB), cpuMs: p.cpuMs + 250 }))).toBeNull();
    const early = new BlockClassifier({ ...options, outputPercent: 50 }, limits);
    early.observe({ at: 0, cpuMs: 0, outputBytes: 0, ioDelta: 0, newProcess: false, runnable: true, memoryBytes: 0, tasks: 1, oomKills: 0, forkFailures: 0 });
    expect(
      early.observe({ at: 250, cpuMs: 250, outputBytes: 6 * MiB, ioDelta: 0, newProcess: false, runnable: true, memoryBytes: 0, tasks: 1, oomKills: 0, forkFailures: 0 }),
    ).toMatchObject({ reason: "output_flood" });
    const rate = run(40, (_, p) => ({ outputBytes: p.outputBytes + 1.2 * MiB, cpuMs: p.cpuMs + 250 }));
    expect(rate).toMatchObject({ reason: "output_flood" });
  });

  it("reset() forgets the windows", () => {
    const c = new BlockClassifier(options, limits);
    const ob = (at: number): Observation => ({
      at,
      cpuMs: at,
      outputBytes: 0,
      ioDelta: 0,
      newProcess: false,
      runnable: true,
      memoryBytes: 0,
      tasks: 1,
      oomKills: 0,
      forkFailures: 0,
    });
    for (let t = 0; t <= 1750; t += 250) expect(c.observe(ob(t))).toBeNull();
    c.reset();
    for (let t = 2000; t <= 3750; t += 250) expect(c.observe(ob(t))).toBeNull();
    expect(c.observe(ob(4250))).toMatchObject({ reason: "infinite_loop" });
  });
});
