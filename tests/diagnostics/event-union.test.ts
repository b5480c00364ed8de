// The event contract on its own (functions/_shared/events.ts): one valid example of every event
// each writer produces parses; bad data is refused with the field named; an event this build does
// not know is tolerated by the readers clients use. Pure: no stack.
import { describe, expect, it } from "vitest";
import {
  checkPlanEvent,
  checkTaskEvent,
  parsePlanEvent,
  parseTaskEvent,
  parseTaskEventMessage,
  PLAN_EVENT_TYPES,
  TASK_EVENT_TYPES,
  taskEvent,
  type TaskEvent,
  type TaskEventMessage,
} from "../../functions/_shared/events.ts";
import { describePlanEvent } from "../../sdk/plan-cli.ts";
import { LineEvents } from "../../worker/stream/line-events.ts";

const usage = { cpuPercent: 99.5, cpuMs: 2010, rssBytes: 31_000_000, processes: 2, threads: 3, outputBytes: 6, wallMs: 2400, memoryLimitBytes: 536_870_912, processLimit: null };
const TASK_ID = "7d5c6a2e-3f1b-4e0a-9d8c-1b2a3c4d5e6f";

/** What the writers produce today, one example per shape (SQL and worker). */
const TASK_EXAMPLES: { type: string; data: unknown; writer: string }[] = [
  { writer: "publish_status_change", type: "task_status", data: { status: "claimed", previous: "queued", attempt: 1, workerId: TASK_ID } },
  { writer: "publish_status_change", type: "task_status", data: { status: "failed", previous: "running", attempt: 2, workerId: TASK_ID, exitCode: 1, reason: "exit code 1" } },
  { writer: "publish_status_change", type: "task_status", data: { status: "cancelled", previous: "queued", attempt: 0, reason: "cancelled" } },
  { writer: "LineEvents", type: "progress_update", data: { percentage: 40, stage: "compiling", message: "building bad.c", source: "protocol", etaMs: null } },
  { writer: "on_step_task_status", type: "progress_update", data: { percentage: 33.3, stage: "building", message: "step 2 of 3: build", etaMs: 1200, source: "plan" } },
  { writer: "LineEvents", type: "diagnostic", data: { tool: "gcc", file: "bad.c", line: 1, column: 25, severity: "error", code: null, message: "‘x’ undeclared" } },
  { writer: "LineEvents", type: "diagnostic", data: { tool: "rustc", file: null, line: null, column: null, severity: "error", code: "E0425", message: "cannot find value `x`" } },
  { writer: "LineEvents", type: "test_results", data: { tool: "pytest", passed: 1, failed: 1, skipped: 1, failures: ["test_calc.py::test_wrong"] } },
  { writer: "BlockSupervisor.tick", type: "resource_sample", data: usage },
  {
    writer: "BlockSupervisor.handle",
    type: "block_detected",
    data: {
      reason: "infinite_loop",
      durationMs: 2000,
      usage,
      recoverable: true,
      plan: ["terminate", "retry"],
      evidence: {
        summary: "CPU 100 % for 2 s, no output",
        lastOutput: ["looping"],
        processes: [{ pid: 12, tid: 12, comm: "sh", state: "R", wchan: "0", syscall: null, kind: "running" }],
      },
    },
  },
  {
    writer: "BlockSupervisor.settle",
    type: "block_detected",
    data: { reason: "timeout", durationMs: 0, usage, recoverable: false, plan: ["give_up"], evidence: { summary: "killed at its wall-time limit", lastOutput: [], processes: [] } },
  },
  {
    writer: "publish_worker_lost",
    type: "block_detected",
    data: {
      reason: "worker_lost",
      durationMs: 2400,
      usage: {},
      recoverable: true,
      evidence: { workerId: TASK_ID, workerName: "w1", lastHeartbeatAt: "2026-01-01T00:00:00.123+00:00", leaseExpiredAt: "2026-01-01T00:00:02+00:00" },
    },
  },
  {
    writer: "BlockSupervisor.apply",
    type: "recovery_started",
    data: { action: "raise_limit", attempt: 1, reason: "memory_exhausted", delayMs: 0, limits: { memoryBytes: 1 << 30 } },
  },
  { writer: "BlockSupervisor.apply", type: "recovery_started", data: { action: "feed_stdin", attempt: 1, reason: "manual", stdin: "eof" } },
  { writer: "publish_worker_lost", type: "recovery_started", data: { attempt: 1, reason: "worker_lost", action: "reassign" } },
  { writer: "BlockSupervisor.apply", type: "recovery_succeeded", data: { action: "terminate", attempt: 1, reason: "idle_stall", message: "process tree killed (SIGKILL)" } },
  {
    writer: "requeue_for_recovery",
    type: "recovery_succeeded",
    data: { action: "raise_limit", attempt: 1, reason: "timeout", message: "re-queued; the next attempt may start in 0 ms", limits: { wallTimeMs: 4000 } },
  },
  {
    writer: "BlockSupervisor.apply",
    type: "recovery_succeeded",
    data: { action: "feed_stdin", attempt: 1, reason: "waiting_for_input", stdin: "answer", message: "wrote 2 character(s) to stdin" },
  },
  // Written before 20261208000100_recovery_gave_up.sql: still readable.
  { writer: "BlockSupervisor.apply (old)", type: "recovery_failed", data: { action: "give_up", attempt: 3, reason: "idle_stall", diagnosis: "idle for 2 s; gave up" } },
  { writer: "BlockSupervisor.handle (refused)", type: "recovery_failed", data: { attempt: 1, reason: "manual", message: "recover retry refused: no attempts left" } },
  { writer: "publish_worker_lost (old)", type: "recovery_failed", data: { attempt: 1, reason: "worker_lost", action: "give_up", diagnosis: null } },
  {
    writer: "give_up_recovery",
    type: "recovery_gave_up",
    data: { action: "give_up", attempt: 3, reason: "idle_stall", diagnosis: "blocked: idle_stall on attempt 3 of 3: it sat idle.", tried: ["terminate", "retry", "reassign"] },
  },
  { writer: "record_worker_lost", type: "recovery_gave_up", data: { action: "give_up", attempt: 1, reason: "worker_lost", diagnosis: null, tried: [] } },
  {
    writer: "sandbox_status_event",
    type: "sandbox_status",
    data: { sandboxId: TASK_ID, status: "ready", previous: "starting", workerId: TASK_ID, expiresAt: "2026-12-07T10:00:00+00:00", idleTimeoutMs: 300000 },
  },
];

const PLAN_EXAMPLES: { type: string; data: unknown }[] = [
  { type: "plan_status", data: { status: "running", steps: 3 } },
  { type: "plan_status", data: { status: "failed", previous: "running", reason: "lint failed: exit code 1" } },
  { type: "plan_status", data: { status: "cancelled", reason: "cancelled by its owner" } },
  { type: "step_status", data: { step: "build", status: "queued", previous: "waiting", taskId: TASK_ID, run: 1, priority: 0 } },
  { type: "step_status", data: { step: "build", status: "failed", previous: "running", taskId: TASK_ID, run: 1, exitCode: 2, reason: "exit code 2" } },
  { type: "step_status", data: { step: "test", status: "stopped", previous: "waiting", reason: "not run: dependency build failed" } },
  { type: "progress_update", data: { percentage: 100, stage: "testing", message: "all 3 steps succeeded", etaMs: null, source: "plan" } },
  { type: "diagnostic", data: { tool: "tsc", file: "a.ts", line: 1, column: 2, severity: "error", code: "TS2322", message: "no", step: "typecheck", taskId: TASK_ID } },
  { type: "test_results", data: { tool: "vitest", passed: 2, failed: 0, skipped: 0, failures: [], step: "test", taskId: TASK_ID } },
];

describe("the event union", () => {
  it("reads every task event type the writers produce, strictly, and has an example of each", () => {
    for (const e of TASK_EXAMPLES) {
      const r = checkTaskEvent(e);
      expect(r.ok ? "ok" : r.error, `${e.writer}: ${e.type}`).toBe("ok");
    }
    expect(new Set(TASK_EXAMPLES.map((e) => e.type))).toEqual(new Set(TASK_EVENT_TYPES));
  });

  it("reads every plan event type strictly", () => {
    for (const e of PLAN_EXAMPLES) {
      const r = checkPlanEvent(e);
      expect(r.ok ? "ok" : r.error, e.type).toBe("ok");
    }
    expect(new Set(PLAN_EXAMPLES.map((e) => e.type))).toEqual(new Set(PLAN_EVENT_TYPES));
  });

  it("refuses bad data with a message naming the field", () => {
    const bad = (type: string, data: unknown) => {
      const r = checkTaskEvent({ type, data });
      return r.ok ? "accepted" : r.error;
    };
    expect(bad("resource_sample", { ...usage, rssBytes: "big" })).toMatch(/^resource_sample: data\.rssBytes: .*expected number/);
    expect(bad("task_status", { status: "finished", previous: "running", attempt: 1 })).toMatch(/data\.status: /);
    expect(bad("task_status", { status: "running", previous: "claimed" })).toMatch(/data\.attempt: /);
    expect(bad("diagnostic", { tool: "gcc", file: null, line: null, column: null, severity: "fatal", code: null, message: "x" })).toMatch(/data\.severity: /);
    expect(
      bad("block_detected", { reason: "worker_lost", durationMs: 1, usage: {}, recoverable: true, evidence: { workerId: TASK_ID, workerName: null, lastHeartbeatAt: null } }),
    ).toMatch(/data\.evidence\.leaseExpiredAt: /);
    expect(bad("block_detected", { reason: "bored", durationMs: 1 })).toMatch(/data\.reason: /);
    expect(bad("recovery_started", { action: "pray", attempt: 1, reason: "idle_stall" })).toMatch(/data\.action: /);
    // Strictly, a field the contract does not have is an error too (a writer changed shape).
    expect(bad("recovery_succeeded", { action: "retry", attempt: 1, reason: "idle_stall", message: "m", extra: 1 })).toMatch(/Unrecognized key: "extra"/);
    expect(bad("resource_sample", { ...usage, gpuPercent: 3 })).toMatch(/gpuPercent/);
    expect(bad("compiled", {})).toMatch(/^compiled: type: /);
    expect(checkPlanEvent({ type: "step_status", data: { step: "x", status: "queued" } })).toMatchObject({ ok: false, error: expect.stringMatching(/data\.previous: /) });
  });

  it("tolerates what it does not know: unknown types, and known types it cannot read, become `unknown`", () => {
    expect(parseTaskEvent({ type: "gpu_sample", data: { util: 3 } })).toEqual({
      type: "unknown",
      rawType: "gpu_sample",
      data: { util: 3 },
      error: 'unknown event type "gpu_sample"',
    });
    const unreadable = parseTaskEvent({ type: "resource_sample", data: { cpuPercent: "high" } });
    expect(unreadable).toMatchObject({ type: "unknown", rawType: "resource_sample", error: expect.stringContaining("data.cpuPercent") });
    // A newer server's extra field is kept, not an error, for clients.
    expect(parseTaskEvent({ type: "resource_sample", data: { ...usage, gpuPercent: 3 } })).toEqual({ type: "resource_sample", data: { ...usage, gpuPercent: 3 } });
    expect(parsePlanEvent({ type: "step_status", data: { step: "b", status: "queued", previous: "waiting", queuePosition: 4 } })).toMatchObject({ type: "step_status" });
    expect(parsePlanEvent({ type: "plan_paused", data: null })).toMatchObject({ type: "unknown", rawType: "plan_paused" });
    // Garbage never throws.
    expect(parseTaskEvent(null as never)).toMatchObject({ type: "unknown" });
    expect(parseTaskEvent({ type: "task_status", data: null })).toMatchObject({ type: "unknown", rawType: "task_status" });
  });

  it("keeps a message's envelope and narrows on type", () => {
    const m: TaskEventMessage = parseTaskEventMessage({ taskId: TASK_ID, seq: 3, attempt: 1, timestamp: "t", type: "block_detected", data: TASK_EXAMPLES[11]!.data });
    expect(m).toMatchObject({ taskId: TASK_ID, seq: 3, attempt: 1, timestamp: "t", type: "block_detected" });
    if (m.type !== "block_detected") throw new Error("not narrowed");
    // The compiler knows a worker_lost block's evidence from a monitor's.
    expect(m.data.reason === "worker_lost" ? m.data.evidence.workerName : m.data.evidence.summary).toBe("w1");
    const unknown = parseTaskEventMessage({ taskId: TASK_ID, seq: 4, attempt: 1, timestamp: "t", type: "later", data: {} });
    expect(unknown).toMatchObject({ seq: 4, type: "unknown", rawType: "later" });
  });

  it("the CLI prints an unknown plan event instead of failing", () => {
    expect(describePlanEvent({ planId: "p", seq: 1, timestamp: "", ...parsePlanEvent({ type: "plan_paused", data: { why: "x" } }) })).toBe('plan_paused {"why":"x"}');
  });

  it("builds events the contract accepts (taskEvent), and the worker's line stage writes only such events", async () => {
    expect(taskEvent("resource_sample", usage)).toEqual({ type: "resource_sample", data: usage });
    const written: TaskEvent[] = [];
    const lines = new LineEvents({
      command: "make",
      append: async (batch) => void written.push(...batch),
      estimateDurationMs: async () => 5000,
      notice: () => {},
      log: () => {},
    });
    const enc = (s: string) => new TextEncoder().encode(s);
    lines.push("stdout", enc("::progress 40 compiling building bad.c\n[ 50%] Building C object f.o\n"));
    lines.push("stderr", enc("bad.c:1:2: error: one\nbad.c:3:1: warning: unused variable ‘x’ [-Wunused-variable]\n"));
    lines.push("stdout", enc("::test-results passed=3 failed=1 skipped=0 failures=math > adds\n"));
    await lines.close();
    expect(new Set(written.map((e) => e.type))).toEqual(new Set(["progress_update", "diagnostic", "test_results"]));
    for (const e of written) {
      const r = checkTaskEvent(e);
      expect(r.ok ? "ok" : r.error).toBe("ok");
    }
  });
});
