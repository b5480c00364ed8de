// The recovery planner (pure): every reason's plan, escalation over the task's history, and the
// bounds that keep recovery from looping.
import { describe, expect, it } from "vitest";
import { BLOCK_REASONS, type BlockReason } from "../../functions/_shared/recovery/options.ts";
import { planRecovery, type PlanInput } from "../../functions/_shared/recovery/planner.ts";

const MiB = 1024 * 1024;
const input = (over: Partial<PlanInput> & { reason: PlanInput["reason"] }): PlanInput => ({
  attempt: 1,
  maxAttempts: 3,
  previousBlocks: [],
  previousActions: [],
  limits: { wallTimeMs: 10_000, memoryBytes: 64 * MiB },
  maxLimits: { wallTimeMs: 3_600_000, memoryBytes: 8192 * MiB },
  processAlive: true,
  stdinOpen: false,
  otherWorkers: false,
  ...over,
});
const actions = (i: PlanInput) => planRecovery(i).steps.map((s) => s.action);

describe("recovery planner", () => {
  it("infinite loop: the alternative command first, else one retry with backoff, then gives up", () => {
    expect(actions(input({ reason: "infinite_loop", options: { alternativeCommand: "make -j1" } }))).toEqual(["terminate", "alternative_command"]);
    const first = planRecovery(input({ reason: "infinite_loop", options: { backoffMs: 500 } }));
    expect(first.steps).toEqual([{ action: "terminate" }, { action: "retry", delayMs: 500 }]);
    expect(first.recoverable).toBe(true);
    const again = planRecovery(input({ reason: "infinite_loop", attempt: 2, previousBlocks: ["infinite_loop"], previousActions: [{ action: "terminate" }, { action: "retry" }] }));
    expect(again.steps.map((s) => s.action)).toEqual(["terminate", "give_up"]);
    expect(again.recoverable).toBe(false);
    expect(again.diagnosis).toMatch(/^blocked: infinite_loop on attempt 2 of 3: .*exit condition.* Already tried: retry\.$/);
  });

  it("backoff doubles with each earlier retry and is capped", () => {
    const retried = (n: number) => Array.from({ length: n }, () => ({ action: "retry" as const }));
    expect(planRecovery(input({ reason: "deadlock", previousActions: [], options: { backoffMs: 1000 } })).steps[1]).toMatchObject({ delayMs: 1000 });
    expect(planRecovery(input({ reason: "idle_stall", previousActions: retried(2), options: { backoffMs: 1000, maxRecoveries: 10 } })).steps[1]).toMatchObject({ delayMs: 4000 });
    expect(planRecovery(input({ reason: "idle_stall", previousActions: retried(12), options: { backoffMs: 1000, maxRecoveries: 20 } })).steps[1]).toMatchObject({
      delayMs: 60_000,
    });
  });

  it("waiting for input: the supplied answer, then closing stdin, then giving up", () => {
    const open = { stdinOpen: true };
    expect(planRecovery(input({ reason: "waiting_for_input", ...open, options: { stdinAnswer: "y\n" } })).steps).toEqual([{ action: "feed_stdin", stdin: "y\n" }]);
    expect(planRecovery(input({ reason: "waiting_for_input", ...open })).steps).toEqual([{ action: "feed_stdin", stdin: null }]);
    const fed = planRecovery(
      input({
        reason: "waiting_for_input",
        ...open,
        options: { stdinAnswer: "y\n" },
        previousBlocks: ["waiting_for_input"],
        previousActions: [{ action: "feed_stdin", stdin: "answer" }],
      }),
    );
    expect(fed.steps).toEqual([{ action: "feed_stdin", stdin: null }]);
    const closed = planRecovery(
      input({ reason: "waiting_for_input", stdinOpen: false, previousBlocks: ["waiting_for_input"], previousActions: [{ action: "feed_stdin", stdin: "eof" }] }),
    );
    expect(closed.steps.map((s) => s.action)).toEqual(["terminate", "give_up"]);
    expect(closed.diagnosis).toMatch(/recovery\.stdinAnswer/);
  });

  it("idle stall: retry, then another worker when there is one", () => {
    expect(actions(input({ reason: "idle_stall" }))).toEqual(["terminate", "retry"]);
    const second = { reason: "idle_stall" as const, attempt: 2, previousBlocks: ["idle_stall" as BlockReason], previousActions: [{ action: "retry" as const }] };
    expect(actions(input({ ...second, otherWorkers: true }))).toEqual(["terminate", "reassign"]);
    expect(actions(input({ ...second, otherWorkers: false }))).toEqual(["terminate", "give_up"]);
  });

  it("memory and time: raised within the ceiling and the worker's maxima, never without a ceiling", () => {
    const mem = planRecovery(input({ reason: "memory_exhausted", processAlive: false, options: { limitCeilings: { memoryBytes: 100 * MiB } } }));
    expect(mem.steps).toEqual([{ action: "raise_limit", limits: { memoryBytes: 100 * MiB }, delayMs: 0 }]);
    expect(actions(input({ reason: "memory_exhausted", processAlive: false }))).toEqual(["give_up"]);
    const atCeiling = input({
      reason: "memory_exhausted",
      processAlive: false,
      limits: { wallTimeMs: 1000, memoryBytes: 100 * MiB },
      options: { limitCeilings: { memoryBytes: 100 * MiB } },
    });
    expect(actions(atCeiling)).toEqual(["give_up"]);
    const time = planRecovery(
      input({ reason: "timeout", processAlive: false, options: { limitCeilings: { wallTimeMs: 1_000_000_000 } }, maxLimits: { wallTimeMs: 15_000, memoryBytes: 0 } }),
    );
    expect(time.steps).toEqual([{ action: "raise_limit", limits: { wallTimeMs: 15_000 }, delayMs: 0 }]);
    const gaveUp = planRecovery(input({ reason: "timeout", processAlive: false }));
    expect(gaveUp.finalStatus).toBe("timed_out");
  });

  it("fork bombs and floods are never retried with the same command", () => {
    for (const reason of ["fork_bomb", "output_flood"] as const) {
      expect(actions(input({ reason }))).toEqual(["terminate", "give_up"]);
      expect(actions(input({ reason, options: { alternativeCommand: "true" } }))).toEqual(["terminate", "alternative_command"]);
    }
  });

  it("is bounded: no attempts left, maxRecoveries reached, or an action already used", () => {
    for (const reason of BLOCK_REASONS) {
      const last = planRecovery(
        input({ reason, attempt: 3, maxAttempts: 3, stdinOpen: false, options: { alternativeCommand: "x", limitCeilings: { wallTimeMs: 1e6, memoryBytes: 1e9 } } }),
      );
      expect(last.steps.at(-1)!.action, reason).toBe("give_up");
      const many = planRecovery(input({ reason, previousBlocks: [reason, reason, reason], options: { maxRecoveries: 3 } }));
      expect(many.steps.at(-1)!.action, reason).toBe("give_up");
      expect(many.diagnosis).toMatch(/Gave up after 3 recoveries/);
    }
    const usedAlt = input({
      reason: "infinite_loop",
      attempt: 2,
      previousBlocks: ["infinite_loop"],
      previousActions: [{ action: "alternative_command" }],
      options: { alternativeCommand: "x" },
    });
    expect(actions(usedAlt)).toEqual(["terminate", "give_up"]);
  });

  it("worker loss is reassigned while attempts remain", () => {
    expect(actions(input({ reason: "worker_lost", processAlive: false }))).toEqual(["reassign"]);
    expect(actions(input({ reason: "worker_lost", processAlive: false, attempt: 3 }))).toEqual(["give_up"]);
  });

  it("a forced action is applied when it can be and refused with the reason when not", () => {
    expect(planRecovery(input({ reason: "manual", request: { action: "feed_stdin", data: "y\n" }, stdinOpen: true })).steps).toEqual([{ action: "feed_stdin", stdin: "y\n" }]);
    expect(planRecovery(input({ reason: "manual", request: { action: "feed_stdin" } })).refused).toMatch(/stdin is not an open pipe/);
    expect(planRecovery(input({ reason: "manual", request: { action: "reassign" } })).refused).toMatch(/no other live worker/);
    expect(planRecovery(input({ reason: "manual", request: { action: "retry" }, attempt: 3 })).refused).toMatch(/no attempts left/);
    expect(planRecovery(input({ reason: "manual", request: { action: "raise_limit" } })).refused).toMatch(/limitCeilings/);
    expect(actions(input({ reason: "idle_stall", request: { action: "reassign" }, otherWorkers: true }))).toEqual(["terminate", "reassign"]);
    expect(actions(input({ reason: "manual", request: { action: "terminate" } }))).toEqual(["terminate", "give_up"]);
    expect(actions(input({ reason: "manual" }))).toEqual(["terminate", "retry"]);
  });
  it("no diagnosis has a double space, an edge space or an empty sentence", () => {
    const seen: string[] = [];
    const histories: PlanInput["previousActions"][] = [[], [{ action: "terminate" }, { action: "retry" }], [{ action: "feed_stdin", stdin: "eof" }]];
    for (const reason of [...BLOCK_REASONS, "manual"] as const)
      for (const attempt of [1, 3])
        for (const previousActions of histories)
          for (const previousBlocks of [[], [reason, reason, reason, reason, reason, reason]] as BlockReason[][])
            for (const summary of [undefined, "a summary"]) {
              const i = input({ reason, attempt, previousActions, previousBlocks, ...(summary ? { summary } : {}) });
              seen.push(planRecovery(i).diagnosis);
              seen.push(planRecovery({ ...i, request: { action: "retry" } }).diagnosis);
            }
    expect(seen.length).toBeGreaterThan(200);
    for (const d of seen) {
      expect(d, d).not.toContain("  ");
      expect(d, d).toBe(d.trim());
      expect(d, d).not.toMatch(/\.\s*\./);
    }
  });
});
