// The scenario corpus: real programs (shell, node, python, C) that block one way each, run as
// tasks through the full stack. Each asserts the reason detected, the recovery steps taken, and
// the state the task ends in.
import { beforeAll, describe, expect, it } from "vitest";
import { startWorker, uniqueKind } from "../helpers/env.ts";
import { FAST_DETECTION, runTask, story } from "./helpers.ts";

const kind = uniqueKind("blocks");
beforeAll(async () => {
  await startWorker({ kind, concurrency: 4 });
});

const base = { requirements: { kind }, blockDetection: FAST_DETECTION };
const MiB = 1024 * 1024;

const DEADLOCK_C = `
#include <pthread.h>
#include <stdio.h>
#include <unistd.h>
pthread_mutex_t a = PTHREAD_MUTEX_INITIALIZER, b = PTHREAD_MUTEX_INITIALIZER;
void *one(void *x) { pthread_mutex_lock(&a); usleep(100000); pthread_mutex_lock(&b); return 0; }
void *two(void *x) { pthread_mutex_lock(&b); usleep(100000); pthread_mutex_lock(&a); return 0; }
int main(void) {
  pthread_t t1, t2;
  puts("locking"); fflush(stdout);
  pthread_create(&t1, 0, one, 0); pthread_create(&t2, 0, two, 0);
  pthread_join(t1, 0); pthread_join(t2, 0);
  puts("never"); return 0;
}
`;

describe("block corpus", () => {
  it("shell busy loop → infinite_loop → alternative_command → succeeded", async () => {
    const { result, events } = await runTask({
      ...base,
      command: "echo looping; while :; do :; done",
      recovery: { alternativeCommand: "echo recovered" },
    });
    expect(story(events)).toEqual([
      "block_detected:infinite_loop",
      "recovery_started:terminate",
      "recovery_succeeded:terminate",
      "recovery_started:alternative_command",
      "recovery_succeeded:alternative_command",
    ]);
    const block = events.find((e) => e.type === "block_detected")!;
    expect(block.data).toMatchObject({ recoverable: true, evidence: { lastOutput: ["looping"] } });
    expect(block.data.durationMs).toBeGreaterThanOrEqual(FAST_DETECTION.infiniteLoopMs);
    expect(block.data.usage.cpuPercent).toBeGreaterThanOrEqual(5); // a loop starved by a busy machine gets little
    expect(result).toMatchObject({ status: "succeeded", stdout: "looping\nrecovered\n" });
    expect(result.task.attempt).toBe(2);
  });

  it("python busy loop, no alternative → infinite_loop, retried once, then gives up with a diagnosis", async () => {
    const { result, events } = await runTask({ ...base, command: "python3 -c 'while True: pass'", maxAttempts: 3, recovery: { backoffMs: 100 } });
    expect(story(events)).toEqual([
      "block_detected:infinite_loop",
      "recovery_started:terminate",
      "recovery_succeeded:terminate",
      "recovery_started:retry",
      "recovery_succeeded:retry",
      "block_detected:infinite_loop",
      "recovery_started:terminate",
      "recovery_succeeded:terminate",
      "recovery_started:give_up",
      "recovery_gave_up:give_up",
    ]);
    expect(result.status).toBe("failed");
    expect(result.reason).toMatch(/^blocked: infinite_loop \(CPU \d+ % for [\d.]+ s with no output.*attempt 2 of 3.*exit condition/);
  });

  it("bash prompt on a stdin pipe → waiting_for_input → the supplied answer is fed → succeeded", async () => {
    const { result, events } = await runTask({
      ...base,
      command: 'read -p "Continue? [y/N] " a; echo "answer: $a"',
      stdin: "pipe",
      recovery: { stdinAnswer: "y\n" },
    });
    expect(story(events)).toEqual(["block_detected:waiting_for_input", "recovery_started:feed_stdin", "recovery_succeeded:feed_stdin"]);
    const block = events.find((e) => e.type === "block_detected")!;
    expect(block.data.evidence.processes.some((p: { kind: string; comm: string }) => p.kind === "stdin" && p.comm === "sh")).toBe(true);
    expect(result).toMatchObject({ status: "succeeded", stdout: "answer: y\n" });
    const statuses = events.filter((e) => e.type === "task_status").map((e) => e.data.status);
    expect(statuses).toEqual(["claimed", "running", "blocked", "recovering", "running", "succeeded"]);
  });

  it("node readline prompt, no answer given → waiting_for_input → stdin closed → the program goes on", async () => {
    const js = `const rl = require("readline").createInterface({ input: process.stdin });
process.stdout.write("Name? ");
rl.on("line", (l) => console.log("hi " + l));
rl.on("close", () => console.log("no input, using default"));`;
    const { result, events } = await runTask({ ...base, command: "node prompt.js", files: [{ path: "prompt.js", content: js }], stdin: "pipe" });
    expect(story(events)).toEqual(["block_detected:waiting_for_input", "recovery_started:feed_stdin", "recovery_succeeded:feed_stdin"]);
    expect(events.find((e) => e.type === "recovery_started")!.data.stdin).toBe("eof");
    expect(result).toMatchObject({ status: "succeeded", stdout: "Name? no input, using default\n" });
  });

  it("python input() with a closed prompt that asks again → fed, closed, then gives up", async () => {
    const py =
      "import sys\nwhile True:\n    try:\n        input('again? ')\n    except EOFError:\n        sys.stdout.write('eof\\n'); sys.stdout.flush()\n        import time; time.sleep(3600)\n";
    const { result, events } = await runTask({ ...base, command: "python3 -u ask.py", files: [{ path: "ask.py", content: py }], stdin: "pipe", recovery: { stdinAnswer: "x\n" } });
    const s = story(events);
    expect(s.slice(0, 3)).toEqual(["block_detected:waiting_for_input", "recovery_started:feed_stdin", "recovery_succeeded:feed_stdin"]);
    expect(s).toContain("recovery_succeeded:feed_stdin");
    expect(s.at(-1)).toBe("recovery_gave_up:give_up");
    expect(result.status).toBe("failed");
  });

  it("sleep infinity → idle_stall → retry → idle_stall again → gives up (one worker: no reassign)", async () => {
    const { result, events } = await runTask({ ...base, command: "echo waiting; sleep infinity", maxAttempts: 3, recovery: { backoffMs: 100 } });
    expect(story(events)).toEqual([
      "block_detected:idle_stall",
      "recovery_started:terminate",
      "recovery_succeeded:terminate",
      "recovery_started:retry",
      "recovery_succeeded:retry",
      "block_detected:idle_stall",
      "recovery_started:terminate",
      "recovery_succeeded:terminate",
      "recovery_started:give_up",
      "recovery_gave_up:give_up",
    ]);
    expect(result.status).toBe("failed");
    expect(result.reason).toMatch(/idle_stall.*Already tried: retry/);
  });

  it("C program (gcc) whose threads deadlock → deadlock → alternative_command → succeeded", async () => {
    const { result, events } = await runTask({
      ...base,
      command: "gcc -pthread -o dl dl.c && ./dl",
      files: [{ path: "dl.c", content: DEADLOCK_C }],
      maxAttempts: 3,
      recovery: { alternativeCommand: "echo fixed", backoffMs: 100 },
    });
    const s = story(events);
    expect(s[0]).toBe("block_detected:deadlock");
    const block = events.find((e) => e.type === "block_detected")!;
    expect(block.data.evidence.processes.filter((p: { kind: string }) => p.kind === "lock").length).toBeGreaterThanOrEqual(2);
    expect(block.data.evidence.lastOutput).toEqual(["locking"]);
    // Deadlocks are often races: retried first, then the alternative.
    expect(s).toContain("recovery_succeeded:retry");
    expect(s.at(-1)).toBe("recovery_succeeded:alternative_command");
    expect(result).toMatchObject({ status: "succeeded" });
    expect(result.stdout.endsWith("fixed\n")).toBe(true);
  });

  it("python allocating past its memory limit → memory_exhausted → raise_limit within the ceiling → succeeded", async () => {
    const { result, events } = await runTask({
      ...base,
      command: 'python3 -c \'b = bytearray(96 * 1024 * 1024); print("allocated", len(b) >> 20, "MiB")\'',
      limits: { memoryBytes: 64 * MiB },
      recovery: { limitCeilings: { memoryBytes: 256 * MiB } },
    });
    const s = story(events);
    expect(s[0]).toBe("block_detected:memory_exhausted");
    expect(s).toContain("recovery_succeeded:raise_limit");
    const raise = events.find((e) => e.type === "recovery_started" && e.data.action === "raise_limit")!;
    expect(raise.data.limits).toEqual({ memoryBytes: 128 * MiB });
    expect(result).toMatchObject({ status: "succeeded", stdout: "allocated 96 MiB\n" });
    expect(result.task.limits).toMatchObject({ memoryBytes: 128 * MiB });
  });

  it("bash fork bomb → fork_bomb → terminated, not retried", async () => {
    const { result, events } = await runTask({ ...base, command: "bash -c ':(){ :|:& };:; sleep 30'", limits: { processes: 64 }, maxAttempts: 3 });
    expect(story(events)).toEqual([
      "block_detected:fork_bomb",
      "recovery_started:terminate",
      "recovery_succeeded:terminate",
      "recovery_started:give_up",
      "recovery_gave_up:give_up",
    ]);
    expect(events.find((e) => e.type === "block_detected")!.data.recoverable).toBe(false);
    expect(result.status).toBe("failed");
    expect(result.reason).toMatch(/fork_bomb.*Not retried/);
    expect(result.task.attempt).toBe(1);
  });

  it("yes flooding stdout → output_flood → ended", async () => {
    // 4 KB lines: the worker's per-line diagnostics scan of 2 M two-byte lines would hold its event loop for seconds.
    const { result, events } = await runTask({ ...base, command: 'yes "$(head -c 4000 /dev/zero | tr "\\0" y)"', limits: { outputBytes: 4 * MiB }, maxAttempts: 3 });
    const s = story(events);
    expect(s[0]).toBe("block_detected:output_flood");
    expect(s.at(-1)).toBe("recovery_gave_up:give_up");
    expect(result.status).toBe("failed");
    expect(result.task.attempt).toBe(1);
  });

  it("sleep past its wall time → timeout → raise_limit → succeeded on the longer limit", async () => {
    const { result, events } = await runTask({ ...base, command: "sleep 1.5; echo finished", timeoutMs: 1000, recovery: { limitCeilings: { wallTimeMs: 10_000 } } });
    expect(story(events)).toEqual(["block_detected:timeout", "recovery_started:raise_limit", "recovery_succeeded:raise_limit"]);
    expect(result).toMatchObject({ status: "succeeded", stdout: "finished\n" });
    expect(result.task.timeoutMs).toBe(2000);
    expect(result.task.limits).not.toHaveProperty("wallTimeMs");
  });

  it("a timeout without a ceiling is reported and ends timed_out with the plain reason", async () => {
    const { result, events } = await runTask({ ...base, command: "sleep 5", timeoutMs: 500 });
    expect(story(events)).toEqual(["block_detected:timeout", "recovery_started:give_up", "recovery_gave_up:give_up"]);
    expect(result).toMatchObject({ status: "timed_out", reason: "wall time limit of 500 ms reached" });
  });
});
