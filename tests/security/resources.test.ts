// Resource exhaustion from an untrusted command: every bomb is stopped by its limit with the right
// reason, nothing of it survives on the host, and the same worker runs the next task at once.
import { randomUUID } from "node:crypto";
import { existsSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { peakSandboxProcesses, py, requireMemoryCgroup, securitySuite } from "./helpers.ts";

const MiB = 1024 * 1024;
const s = securitySuite("res");

describe("resource exhaustion", () => {
  it("fork bomb: never more than `processes` alive, ended by the wall limit", async () => {
    // The sandbox's limit alone: with block detection on, the monitor may end it first as a
    // fork_bomb block (tests/blocks covers that), and which comes first is a race.
    const { value: r, peak } = await peakSandboxProcesses(
      s.run({
        command: "sleep 60 & (bomb() { bomb | bomb & sleep 100; }; bomb) & wait",
        timeoutMs: 2000,
        limits: { processes: 24 },
        blockDetection: { enabled: false },
      }),
    );
    expect(r).toMatchObject({ status: "timed_out", signal: "SIGKILL", reason: "wall time limit of 2000 ms reached" });
    expect(r.stderr).toContain("Cannot fork");
    expect(peak).toBeGreaterThanOrEqual(10); // it really forked...
    expect(peak).toBeLessThanOrEqual(24 + 2); // ...but never past the limit (+ bwrap's two helpers)
    expect(r.elapsedMs).toBeLessThan(6000);
    await s.expectHealthy();
  });

  it("thread bomb: thread creation fails at the process limit", async () => {
    const r = await s.run({
      command: "python3 threads.py",
      files: [
        py(
          "threads.py",
          `
import os, threading, time
n = 0
try:
    while n < 100000:
        threading.Thread(target=time.sleep, args=(30,), daemon=True).start()
        n += 1
except RuntimeError as e:
    print(f"stopped at {n}: {e}", flush=True)
    os._exit(3)
print("started all", n)
`,
        ),
      ],
      timeoutMs: 5000,
      limits: { processes: 16 },
    });
    expect(r).toMatchObject({ status: "failed", exitCode: 3, reason: "exited with code 3" });
    const n = Number(/^stopped at (\d+): can't start new thread\n$/.exec(r.stdout)?.[1]);
    expect(n).toBeGreaterThanOrEqual(8);
    expect(n).toBeLessThan(16);
    await s.expectHealthy();
  });

  it("output flood (`yes`): cut at exactly outputBytes, then killed", async () => {
    const r = await s.run({ command: "yes", timeoutMs: 10_000, limits: { outputBytes: 64 * 1024 } });
    expect(r).toMatchObject({ status: "failed", signal: "SIGKILL", reason: "output byte limit reached; output after it was dropped" });
    expect(r.stdout).toBe("y\n".repeat(32 * 1024));
    expect(r.elapsedMs).toBeLessThan(4000);
    await s.expectHealthy();
  });

  it("output that lands exactly on the limit and then continues is cut and killed, not passed as success", async () => {
    // Regression: a chunk filling outputBytes exactly used to disable the limit, so later output
    // was dropped silently and the task ran on (a flood until its wall time, a short one "succeeded").
    const r = await s.run({ command: "head -c 65536 /dev/zero | tr '\\0' a; sleep 0.3; echo more; sleep 30", timeoutMs: 10_000, limits: { outputBytes: 65536 } });
    expect(r).toMatchObject({ status: "failed", signal: "SIGKILL", reason: "output byte limit reached; output after it was dropped" });
    expect(r.stdout).toBe("a".repeat(65536));
    expect(r.elapsedMs).toBeLessThan(5000);
    const exact = await s.run({ command: "head -c 65536 /dev/zero | tr '\\0' a", limits: { outputBytes: 65536 } });
    expect(exact).toMatchObject({ status: "succeeded", reason: "exited with code 0", stdout: "a".repeat(65536) });
    await s.expectHealthy();
  });

  it("output flood with onOutputLimit 'truncate': cut at exactly outputBytes, the client told, the task runs to its end", async () => {
    let system = "";
    const r = await s.run(
      { command: "yes | head -c 1000000; echo late >&2; exit 0", limits: { outputBytes: 64 * 1024, onOutputLimit: "truncate" } },
      { onOutput: (c) => c.stream === "system" && (system += c.data) },
    );
    expect(r).toMatchObject({ status: "succeeded", exitCode: 0, reason: "exited with code 0; output past the byte limit was dropped" });
    expect(r.stdout).toBe("y\n".repeat(32 * 1024));
    expect(r.stderr).toBe("");
    expect(system).toContain("output limit of 65536 bytes reached: further output is dropped, the task keeps running");
    await s.expectHealthy();
  });

  it("output flood (`cat /dev/zero | tr` on both streams): cut at exactly outputBytes", async () => {
    const r = await s.run({
      command: "cat /dev/zero | tr '\\0' o & cat /dev/zero | tr '\\0' e >&2; wait",
      timeoutMs: 10_000,
      limits: { outputBytes: 100_000 },
    });
    expect(r).toMatchObject({ status: "failed", reason: "output byte limit reached; output after it was dropped" });
    expect(r.stdout.length + r.stderr.length).toBe(100_000);
    expect(r.stdout).toMatch(/^o*$/);
    expect(r.stderr).toMatch(/^e*$/);
    await s.expectHealthy();
  });

  it("disk fill: /workspace, /tmp and /dev/shm each stop at workspaceBytes; nothing reaches the host", async () => {
    const name = `cogo-fill-${randomUUID()}`;
    const r = await s.run({
      command: [
        `for d in /workspace /tmp /dev/shm; do`,
        `  dd if=/dev/zero of=$d/${name} bs=1M count=64 2>&1 | grep -o 'No space left on device'`,
        `  stat -c "$d %s" $d/${name}`,
        `done`,
      ].join("\n"),
      timeoutMs: 10_000,
      limits: { workspaceBytes: 4 * MiB, memoryBytes: 96 * MiB },
    });
    expect(r).toMatchObject({ status: "succeeded", stderr: "" });
    expect(r.stdout).toBe(`No space left on device\n/workspace ${4 * MiB}\nNo space left on device\n/tmp ${4 * MiB}\nNo space left on device\n/dev/shm ${4 * MiB}\n`);
    for (const dir of ["/tmp", "/dev/shm", "/var/tmp", s.root]) expect(existsSync(`${dir}/${name}`), dir).toBe(false);
    await s.expectHealthy();
  });

  it("one huge file: RLIMIT_FSIZE stops the writer with SIGXFSZ", async () => {
    const r = await s.run({ command: "dd if=/dev/zero of=big bs=64k count=1000 2>/dev/null; echo rc=$?; stat -c %s big", limits: { fileSizeBytes: MiB } });
    expect(r).toMatchObject({ status: "succeeded", stdout: `rc=${128 + 25}\n${MiB}\n` }); // 25 = SIGXFSZ
    await s.expectHealthy();
  });

  it("memory bomb: OOM-killed at memoryBytes and reported as the memory limit", async () => {
    requireMemoryCgroup();
    const r = await s.run({
      command: "python3 -c 'a = []\nwhile True: a.append(bytearray(1 << 20))'",
      timeoutMs: 10_000,
      limits: { memoryBytes: 48 * MiB },
    });
    expect(r).toMatchObject({ status: "failed", signal: "SIGKILL", reason: "memory limit reached (48 MiB)" });
    expect((r.usage as { maxRssBytes: number }).maxRssBytes).toBeLessThanOrEqual(48 * MiB);
    expect(r.elapsedMs).toBeLessThan(5000);
    await s.expectHealthy();
  });

  it("memory bomb through tmpfs: files in /dev/shm count against memoryBytes", async () => {
    requireMemoryCgroup();
    const r = await s.run({
      command: "dd if=/dev/zero of=/dev/shm/fill bs=1M count=200 2>/dev/null; rc=$?; stat -c %s /dev/shm/fill; exit $rc",
      timeoutMs: 10_000,
      limits: { memoryBytes: 32 * MiB, workspaceBytes: 256 * MiB },
    });
    // dd is OOM-killed (exit 137 reads as SIGKILL) well before its 200 MiB, inside a tmpfs of 256 MiB.
    expect(r).toMatchObject({ status: "failed", exitCode: null, signal: "SIGKILL", reason: "memory limit reached (32 MiB)" });
    expect(Number(r.stdout)).toBeGreaterThan(4 * MiB);
    expect(Number(r.stdout)).toBeLessThan(32 * MiB);
    expect((r.usage as { maxRssBytes: number }).maxRssBytes).toBeLessThanOrEqual(32 * MiB);
    await s.expectHealthy();
  });

  it("CPU burner in the background: stopped at cpuTimeMs although the shell only waits", async () => {
    const r = await s.run({ command: "(while :; do :; done) & (while :; do :; done) & wait", timeoutMs: 10_000, limits: { cpuTimeMs: 600 } });
    expect(r).toMatchObject({ status: "failed", signal: "SIGKILL", reason: "CPU time limit reached" });
    const cpu = (r.usage as { cpuUserMs: number; cpuSystemMs: number }).cpuUserMs + (r.usage as { cpuSystemMs: number }).cpuSystemMs;
    expect(cpu).toBeGreaterThanOrEqual(550);
    expect(cpu).toBeLessThan(1500);
    await s.expectHealthy();
  });
});
