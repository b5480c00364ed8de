// Evidence-aware windows on the DEFAULT options: a prompt before a read of stdin and an all-locks
// wait are called in seconds, a silent read only after the long window; loop and stall windows
// learned from a command's successful runs. Pure: prompt detection, window choice, classifier.
import { describe, expect, it } from "vitest";
import { BLOCK_DETECTION_DEFAULTS, type BlockDetectionOptions, BlockDetectionSchema } from "../../functions/_shared/recovery/options.ts";
import { BlockClassifier, type Observation } from "../../worker/blocks/classifier.ts";
import { commandKey, HISTORY_FLOOR_MS, learnedWindows } from "../../worker/blocks/history.ts";
import { looksLikePrompt } from "../../worker/blocks/prompt.ts";

const MiB = 1024 * 1024;
const limits = { memoryBytes: 100 * MiB, processes: 100, outputBytes: 10 * MiB };
const none = { stdin: 0, output: 0, lock: 0, child: 0, other: 0, running: 0 };

describe("looksLikePrompt", () => {
  it.each([
    "Name: ",
    "Continue? ",
    "Do you want to continue? [Y/n] ",
    "Proceed (yes/no)? ",
    "Password:",
    ">>> ",
    "Enter a number",
    "Overwrite file.txt? [y/N]\n",
    "Continue?\n",
    "Name:\r\n",
    "line one\nline two\nYour choice> ",
    "progress 10%\rprogress 20%\rType a key: ",
  ])("%j is a prompt", (tail) => expect(looksLikePrompt(tail)).toBe(true));

  it.each(["", "done\n", "step 3 of 10\n", "Name: x\nresult 42\n", "   \n", "\n\n", "compiling foo.c\n"])("%j is not", (tail) => expect(looksLikePrompt(tail)).toBe(false));
});

describe("learned windows", () => {
  const d = BLOCK_DETECTION_DEFAULTS;
  it("no history: the defaults", () => {
    expect(learnedWindows(d, undefined, null)).toEqual(d);
    expect(learnedWindows(d, undefined, { runs: 0, maxBusyMs: 0, maxQuietMs: 0 })).toEqual(d);
  });
  it("3× the longest stretch, floored at 5 s, capped at the default", () => {
    expect(learnedWindows(d, undefined, { runs: 2, maxBusyMs: 3000, maxQuietMs: 4000 })).toMatchObject({ infiniteLoopMs: 9000, idleStallMs: 12_000 });
    expect(learnedWindows(d, undefined, { runs: 1, maxBusyMs: 200, maxQuietMs: 0 })).toMatchObject({ infiniteLoopMs: HISTORY_FLOOR_MS, idleStallMs: HISTORY_FLOOR_MS });
    expect(learnedWindows(d, undefined, { runs: 5, maxBusyMs: 25_000, maxQuietMs: 50_000 })).toMatchObject({ infiniteLoopMs: 30_000, idleStallMs: 60_000 });
  });
  it("a window the user set wins over the learned one", () => {
    const given = { infiniteLoopMs: 20_000 };
    const o = learnedWindows({ ...d, ...given }, given, { runs: 3, maxBusyMs: 100, maxQuietMs: 100 });
    expect(o).toMatchObject({ infiniteLoopMs: 20_000, idleStallMs: HISTORY_FLOOR_MS });
  });
  it("the key: whitespace-normalized command; a plan step by its name", () => {
    const t = { step: null, planId: null, argv: null };
    expect(commandKey({ ...t, command: "  make   -j4\ttest " })).toBe(commandKey({ ...t, command: "make -j4 test" }));
    expect(commandKey({ ...t, command: "make test" })).not.toBe(commandKey({ ...t, command: "make check" }));
    expect(commandKey({ ...t, command: null, argv: ["a", "b"] })).not.toBe(commandKey({ ...t, command: null, argv: ["a b"] }));
    expect(commandKey({ step: "build", planId: "p1", argv: null, command: "make" })).toBe(commandKey({ step: "build", planId: "p2", argv: null, command: "make" }));
    expect(commandKey({ step: "build", planId: "p1", argv: null, command: "make" })).not.toBe(commandKey({ ...t, command: "make" }));
    expect(commandKey({ ...t, command: "x" })).toMatch(/^[0-9a-f]{64}$/);
  });
  it("promptMs is validated like the other windows", () => {
    expect(BlockDetectionSchema.safeParse({ promptMs: 50 }).success).toBe(false);
    expect(BlockDetectionSchema.safeParse({ promptMs: 1500 }).success).toBe(true);
    expect(BLOCK_DETECTION_DEFAULTS).toMatchObject({ promptMs: 1500, deadlockMs: 1500, waitingForInputMs: 30_000 });
  });
});

/**
 * A task sampled every 500 ms (the default) on the default windows: output `tail` at 1.2 s, quiet
 * after, `waits` seen from the first quiet sample. Returns the first detection and when.
 */
function afterOutput(tail: string, waits: Observation["waits"], untilMs = 40_000, options: BlockDetectionOptions = BLOCK_DETECTION_DEFAULTS) {
  const c = new BlockClassifier(options, limits);
  const outAt = 1200;
  for (let at = 0; at <= untilMs; at += 500) {
    const out = at >= outAt;
    const d = c.observe({
      at,
      cpuMs: Math.min(at, 1000),
      outputBytes: out ? tail.length : 0,
      ioDelta: 0,
      newProcess: at === 500,
      runnable: false,
      memoryBytes: MiB,
      tasks: 1,
      oomKills: 0,
      forkFailures: 0,
      lastOutputAt: out ? outAt : null,
      outputTail: out ? tail : "",
      ...(at > 1500 ? { waits } : {}),
    });
    if (d) return { ...d, at, sincePrompt: at - outAt };
  }
  return null;
}

describe("classifier on the default windows", () => {
  it("a prompt then a read of stdin: waiting_for_input promptMs (1.5 s) after the prompt", () => {
    for (const tail of ["Name: ", "Continue? [y/N] ", "Password:", "Proceed?\n"]) {
      const d = afterOutput(tail, { ...none, stdin: 1 });
      expect(d).toMatchObject({ reason: "waiting_for_input" });
      expect(d!.sincePrompt).toBeGreaterThanOrEqual(1500);
      expect(d!.sincePrompt).toBeLessThanOrEqual(2000);
      expect(d!.summary).toMatch(/^reading stdin after the prompt ".+" with no output for (1\.[5-9]|2\.0) s$/);
    }
  });

  it("a read of stdin after a complete, non-prompt line: the long window", () => {
    const d = afterOutput("loaded 3 records\n", { ...none, stdin: 1 });
    expect(d).toMatchObject({ reason: "waiting_for_input", summary: expect.stringMatching(/^reading stdin with no output/) });
    expect(d!.at).toBeGreaterThanOrEqual(30_000);
  });

  it("a prompt with no read of stdin (a sleep after it) is not waiting for input", () => {
    const d = afterOutput("Continue? [y/N] ", { ...none, other: 1 }, 20_000);
    expect(d).toBeNull();
  });

  it("a prompt with promptMs set higher than waitingForInputMs: the shorter one", () => {
    const d = afterOutput("Name: ", { ...none, stdin: 1 }, 40_000, { ...BLOCK_DETECTION_DEFAULTS, promptMs: 10_000, waitingForInputMs: 3000 });
    expect(d!.at).toBeLessThan(6000);
  });

  it("every thread in a lock wait: deadlock deadlockMs (1.5 s) after the task went quiet", () => {
    const d = afterOutput("locking\n", { ...none, lock: 2, child: 1 });
    expect(d).toMatchObject({ reason: "deadlock" });
    expect(d!.sincePrompt).toBeGreaterThanOrEqual(1500);
    expect(d!.sincePrompt).toBeLessThanOrEqual(2000);
  });

  it("a pending short window tells when it runs out (the supervisor samples then)", () => {
    const c = new BlockClassifier(BLOCK_DETECTION_DEFAULTS, limits);
    const ob = (at: number, waits?: Observation["waits"]): Observation => ({
      at,
      cpuMs: 0,
      outputBytes: 6,
      ioDelta: 0,
      newProcess: false,
      runnable: false,
      memoryBytes: MiB,
      tasks: 1,
      oomKills: 0,
      forkFailures: 0,
      lastOutputAt: 100,
      outputTail: "Name: ",
      ...(waits ? { waits } : {}),
    });
    c.observe(ob(0));
    expect(c.observe(ob(500, { ...none, stdin: 1 }))).toBeNull();
    expect(c.pendingDeadline).toBe(1600);
    expect(c.observe(ob(1600))).toMatchObject({ reason: "waiting_for_input", durationMs: 1500 });
  });

  it("the longest completed silent-busy and silent-idle stretches are kept for the history", () => {
    const c = new BlockClassifier(BLOCK_DETECTION_DEFAULTS, limits);
    let cpu = 0;
    let out = 0;
    // 0–3 s busy silent, output, 3.5–5 s idle, output, 5.5–6.5 s busy.
    for (let at = 0; at <= 6500; at += 500) {
      const busy = at <= 3000 || at >= 6000;
      if (busy && at > 0) cpu += 500;
      if (at === 3500 || at === 5500) out += 10;
      c.observe({ at, cpuMs: cpu, outputBytes: out, ioDelta: 0, newProcess: false, runnable: busy, memoryBytes: MiB, tasks: 1, oomKills: 0, forkFailures: 0, waits: none });
    }
    const s = c.stretches();
    expect(s.maxBusyMs).toBeGreaterThanOrEqual(2500);
    expect(s.maxBusyMs).toBeLessThanOrEqual(3000);
    expect(s.maxQuietMs).toBeGreaterThanOrEqual(1000);
    expect(s.maxQuietMs).toBeLessThanOrEqual(2000);
  });
});
