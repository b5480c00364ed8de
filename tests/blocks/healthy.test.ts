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

// Silent for long stretches, prompt-looking output without a read of stdin, heavy file I/O: on
// the DEFAULT settings (the 2 s prompt and deadlock windows; no history, so 30/60 s loop and stall
// windows) none is flagged. Each is a new command of a new user: no learned window applies.
const GEN_C = `
n = 400
print('#include <stdio.h>')
for i in range(n):
    print(f'int f{i}(int x){{int s=0; for(int k=0;k<x;k++){{s+=k*{i}^(s>>3); if(s%7=={i%7}) s-=k;}} return s;}}')
print('int main(void){long t=0;')
for i in range(n): print(f't+=f{i}({i});')
print('printf("%ld\\\\n",t);return 0;}')
`;

const onDefaults: { name: string; spec: Record<string, unknown>; stdout: RegExp }[] = [
  {
    name: "gcc -O2 on a large generated file (cc1 silent and busy for seconds), then run",
    spec: { command: "python3 gen.py > big.c && gcc -O2 -o big big.c && ./big", files: [{ path: "gen.py", content: GEN_C }] },
    stdout: /^\d+\n$/,
  },
  {
    name: "pip install of a local package (offline), then import it",
    spec: {
      command:
        "python3 -m pip install -q --no-index --no-build-isolation --no-cache-dir --disable-pip-version-check --target site ./pkg && PYTHONPATH=site python3 -c 'import hello; print(hello.hi())'",
      files: [
        { path: "pkg/setup.py", content: "from setuptools import setup\nsetup(name='hello', version='1.0', packages=['hello'])\n" },
        { path: "pkg/hello/__init__.py", content: "def hi():\n    return 'hi from hello'\n" },
      ],
    },
    stdout: /hi from hello\n$/,
  },
  {
    name: "npm install of a local directory package (offline), then require it",
    spec: {
      command: "cd app && HOME=$PWD/.home npm install --offline --no-audit --no-fund --loglevel=error ../lib && node -e 'console.log(require(\"lib\")())'",
      files: [
        { path: "app/package.json", content: '{"name":"app","version":"1.0.0","private":true}\n' },
        { path: "lib/package.json", content: '{"name":"lib","version":"1.0.0","main":"index.js"}\n' },
        { path: "lib/index.js", content: "module.exports = () => 'hi from lib';\n" },
      ],
    },
    stdout: /hi from lib\n$/,
  },
  {
    name: "a test runner: prompt-looking output, then sleeps (stdin is a pipe it never reads)",
    spec: {
      command:
        "for t in 1 2; do printf 'test_%s ... Continue? [y/N] ' $t; sleep 2.5; echo ok; done; python3 -c \"import time; print('Password:', end='', flush=True); time.sleep(2.5); print(' ok')\"",
      stdin: "pipe",
    },
    stdout: /Password: ok\n$/,
  },
  {
    name: "a program reading a large file from its workspace",
    spec: {
      command:
        "head -c 150000000 /dev/urandom > big.bin && python3 -c \"import hashlib,time\nh=hashlib.sha256()\nf=open('big.bin','rb')\nwhile True:\n  b=f.read(1<<20)\n  if not b: break\n  h.update(b); time.sleep(0.01)\nprint(len(h.hexdigest()))\"",
    },
    stdout: /^64\n$/,
  },
  {
    name: "a long silent dd and tar writing files",
    spec: {
      command: "for i in 1 2 3 4; do dd if=/dev/urandom of=part$i bs=64k count=600 status=none; done && tar cf all.tar part* && mkdir x && tar xf all.tar -C x && ls x | wc -l",
    },
    stdout: /^4\n$/,
  },
];

describe.concurrent("healthy work on the default settings is not flagged", () => {
  for (const c of onDefaults) {
    it(c.name, async () => {
      const { result, events } = await runTask({ requirements: { kind }, ...c.spec } as never);
      expect(events.filter((e) => e.type === "block_detected" || e.type.startsWith("recovery_"))).toEqual([]);
      expect(result.stderr ?? "").toBe("");
      expect(result.status).toBe("succeeded");
      expect(result.stdout).toMatch(c.stdout);
    }, 30_000);
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
