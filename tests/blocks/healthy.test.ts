// Slow but healthy programs, watched with the same tight windows as the block corpus: none may be
// flagged. Each keeps a CPU busy or sits idle for longer than a window, but between signs of
// progress (output, file writes, new processes) never waits as long as one.
import { beforeAll, describe, expect, it } from "vitest";
import { startWorker, uniqueKind } from "../helpers/env.ts";
import { FAST_DETECTION, runTask } from "./helpers.ts";

const kind = uniqueKind("healthy");
beforeAll(async () => {
  await startWorker({ kind, concurrency: 4 });
});

const base = { requirements: { kind }, blockDetection: FAST_DETECTION };

const PROGRESS_C = `
#include <stdio.h>
#include <time.h>
static double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec + t.tv_nsec / 1e9; }
int main(void) {
  volatile unsigned long x = 0;
  for (int step = 1; step <= 10; step++) {
    double end = now() + 0.3;
    while (now() < end) x++;
    printf("step %d\\n", step); fflush(stdout);
  }
  return 0;
}
`;

const cases: { name: string; spec: Record<string, unknown>; stdout?: RegExp }[] = [
  {
    name: "shell: busy steps (new processes) with a line after each",
    spec: { command: "for i in 1 2 3 4 5 6 7 8; do timeout 0.3 sh -c 'while :; do :; done'; echo step $i; done" },
    stdout: /step 8\n$/,
  },
  {
    name: "python: CPU-heavy, silent on stdout, writing a results file as it goes",
    spec: {
      command: "python3 work.py && wc -l < out.txt",
      files: [
        {
          path: "work.py",
          content:
            "import time\nwith open('out.txt', 'w') as f:\n    end = time.time() + 4\n    while time.time() < end:\n        t = time.time() + 0.2\n        n = 0\n        while time.time() < t: n += 1\n        f.write(str(n) + '\\n'); f.flush()\n",
        },
      ],
    },
  },
  {
    name: "node: compute with progress lines",
    spec: { command: "node -e 'let i=0; const end=Date.now()+4000; while(Date.now()<end){ const t=Date.now()+250; while(Date.now()<t){} console.log(\"progress\", ++i) }'" },
    stdout: /progress \d+\n$/,
  },
  {
    name: "C: a real gcc compile, then a long computation printing progress",
    spec: { command: "gcc -O1 -o prog prog.c && ./prog", files: [{ path: "prog.c", content: PROGRESS_C }] },
    stdout: /step 10\n$/,
  },
  {
    // Empty files carry no write I/O: the workspace's inode count is the sign of progress.
    name: "python: silently creating empty files for longer than a window",
    spec: { command: "python3 -c \"import os,time\nend=time.time()+4\nn=0\nwhile time.time()<end:\n  open('f%d'%n,'w').close(); n+=1\nprint(n>1000)\"" },
    stdout: /^True\n$/,
  },
  {
    name: "shell: idle sleeps shorter than the window, with output between",
    spec: { command: "for i in 1 2 3 4 5; do sleep 0.7; echo tick $i; done" },
    stdout: /tick 5\n$/,
  },
  {
    name: "python: a prompt answered by the client in time",
    spec: { command: 'python3 -c \'print("go" if input() == "yes" else "no")\'', stdin: "pipe", recovery: { automatic: false } },
    stdout: /^go\n$/,
  },
];

describe("healthy work is not flagged", () => {
  for (const c of cases) {
    it(c.name, async () => {
      const { result, events } = await runTask({ ...base, ...c.spec } as never, c.spec.stdin === "pipe" ? await answering() : undefined);
      expect(events.filter((e) => e.type === "block_detected" || e.type.startsWith("recovery_"))).toEqual([]);
      expect(result.status).toBe("succeeded");
      if (c.stdout) expect(result.stdout).toMatch(c.stdout);
      if ((result.task.usage as { wallMs: number }).wallMs > 2500) {
        // Long enough for resource samples: at most one per ~2 s.
        const samples = events.filter((e) => e.type === "resource_sample");
        expect(samples.length).toBeGreaterThan(0);
        expect(samples.length).toBeLessThanOrEqual(Math.ceil((result.task.usage as { wallMs: number }).wallMs / 2000) + 1);
        expect(samples[0]!.data).toMatchObject({ cpuPercent: expect.any(Number), rssBytes: expect.any(Number), processes: expect.any(Number) });
      }
    }, 60_000);
  }
});

/** A user whose SDK writes "yes" shortly after the task starts. */
async function answering() {
  const { newUser } = await import("../helpers/env.ts");
  const user = await newUser();
  const execute = user.sandbox.execute.bind(user.sandbox);
  user.sandbox.execute = async (spec, callbacks, options) => {
    const handle = await execute(spec, callbacks, options);
    setTimeout(() => void handle.write("yes\n"), 300);
    return handle;
  };
  return user;
}
