// Blocks on the DEFAULT detection settings (no per-task windows), as a new user gets them: a
// prompt on a piped stdin and a lock cycle are called in about 2 s; a loop or stall of a command
// that succeeded before is called after the window its history justifies, not the 30/60 s default.
import { beforeAll, describe, expect, it } from "vitest";
import { BLOCK_DETECTION_DEFAULTS } from "../../functions/_shared/recovery/options.ts";
import { commandKey, learnedWindows } from "../../worker/blocks/history.ts";
import { newUser, sql, startWorker, uniqueKind } from "../helpers/env.ts";
import { runTask, story, type TaskEvent } from "./helpers.ts";

const kind = uniqueKind("defaults");
beforeAll(async () => {
  await startWorker({ kind, concurrency: 4 });
});
const base = { requirements: { kind } };

/** Onset (the output row matching `re`, stamped by the database) → block_detected, in ms. */
async function onsetToDetection(taskId: string, events: TaskEvent[], re: RegExp): Promise<number> {
  const block = events.find((e) => e.type === "block_detected");
  expect(block).toBeDefined();
  const rows = await sql<{ data: string; createdAt: Date }[]>`select data, created_at from public.task_output where task_id = ${taskId} order by seq`;
  const onset = rows.find((r) => re.test(r.data));
  expect(onset, `no output matching ${re}`).toBeDefined();
  return block!.createdAt.getTime() - onset!.createdAt.getTime();
}

/** Default windows (1.5 s) a 30 s (or the old 5 s) window could not meet, with honest margin for a loaded 2-core machine. */
const PROMPT_BUDGET_MS = 4000;

const prompts: { name: string; spec: Record<string, unknown>; prompt: RegExp; stdout: RegExp }[] = [
  { name: "shell read after printf 'Name: '", spec: { command: "printf 'Name: '; read name; echo \"hello $name\"" }, prompt: /Name: $/, stdout: /hello y$/m },
  {
    name: "python input('Continue? ')",
    spec: { command: "python3 ask.py", files: [{ path: "ask.py", content: "a = input('Continue? ')\nprint('got', a)\n" }] },
    prompt: /Continue\? $/,
    stdout: /got y$/m,
  },
  {
    name: "node readline.question",
    spec: {
      command: "node ask.js",
      files: [
        {
          path: "ask.js",
          content:
            "const rl = require('readline').createInterface({ input: process.stdin, output: process.stdout });\nrl.question('Project name? ', (a) => { console.log('got ' + a); rl.close(); process.stdin.destroy(); });\n",
        },
      ],
    },
    prompt: /Project name\? $/,
    stdout: /got y$/m,
  },
  {
    name: "an apt-get-like [Y/n] confirmation after complete lines",
    spec: {
      command: "sh install.sh",
      files: [
        {
          path: "install.sh",
          content:
            "echo 'Reading package lists... Done'\necho 'The following NEW packages will be installed:'\necho '  libfoo1 foo-utils'\nprintf 'After this operation, 12.3 MB of additional disk space will be used.\\nDo you want to continue? [Y/n] '\nread ans\ncase \"$ans\" in y|Y|'') echo 'Setting up foo-utils';; *) echo Abort.; exit 1;; esac\n",
        },
      ],
    },
    prompt: /continue\? \[Y\/n\] $/,
    stdout: /Setting up foo-utils$/m,
  },
];

describe.concurrent("prompts on the default windows: waiting_for_input ~2 s after the prompt, the answer fed", () => {
  for (const c of prompts) {
    it(c.name, async () => {
      const { result, events } = await runTask({ ...base, ...c.spec, stdin: "pipe", recovery: { stdinAnswer: "y\n" } } as never);
      expect(story(events)).toEqual(["block_detected:waiting_for_input", "recovery_started:feed_stdin", "recovery_succeeded:feed_stdin"]);
      const block = events.find((e) => e.type === "block_detected")!;
      expect(block.data.evidence.summary).toMatch(/^reading stdin after the prompt /);
      const ms = await onsetToDetection(result.task.id, events, c.prompt);
      expect(ms).toBeGreaterThanOrEqual(1300);
      expect(ms).toBeLessThanOrEqual(PROMPT_BUDGET_MS);
      expect(result.status).toBe("succeeded");
      expect(result.stdout).toMatch(c.stdout);
    }, 20_000);
  }
});

const DEADLOCK_PY = `
import threading, time
a, b = threading.Lock(), threading.Lock()
def one():
    with a:
        time.sleep(0.1)
        with b: pass
def two():
    with b:
        time.sleep(0.1)
        with a: pass
print("locking", flush=True)
t1, t2 = threading.Thread(target=one), threading.Thread(target=two)
t1.start(); t2.start(); t1.join(); t2.join()
print("never")
`;

const DEADLOCK_C = `
#include <pthread.h>
#include <stdio.h>
#include <unistd.h>
pthread_mutex_t a = PTHREAD_MUTEX_INITIALIZER, b = PTHREAD_MUTEX_INITIALIZER;
void *one(void *x) { pthread_mutex_lock(&a); usleep(100000); pthread_mutex_lock(&b); return 0; }
void *two(void *x) { pthread_mutex_lock(&b); usleep(100000); pthread_mutex_lock(&a); return 0; }
int main(void) {
  pthread_t t1, t2;
  pthread_create(&t1, 0, one, 0); pthread_create(&t2, 0, two, 0);
  puts("locking"); fflush(stdout);
  pthread_join(t1, 0); pthread_join(t2, 0);
  puts("never"); return 0;
}
`;

describe.concurrent("lock cycles on the default windows: deadlock in ~2 s", () => {
  for (const c of [
    { name: "python: two threads, two locks", spec: { command: "python3 dl.py", files: [{ path: "dl.py", content: DEADLOCK_PY }] } },
    { name: "C: pthread mutexes (gcc)", spec: { command: "gcc -O1 -pthread -o dl dl.c && ./dl", files: [{ path: "dl.c", content: DEADLOCK_C }] } },
  ]) {
    it(c.name, async () => {
      const { result, events } = await runTask({ ...base, ...c.spec, maxAttempts: 1 } as never);
      expect(story(events)[0]).toBe("block_detected:deadlock");
      const ms = await onsetToDetection(result.task.id, events, /^locking/);
      // The cycle forms ~0.1 s after "locking"; a 5 s window (the old default) fails this.
      expect(ms).toBeLessThanOrEqual(PROMPT_BUDGET_MS);
      expect(result.status).toBe("failed");
      expect(result.stdout).not.toMatch(/never/);
    }, 30_000);
  }
});

/** The history row of `user` for a command, as the worker reads it. */
async function historyOf(userId: string, command: string) {
  const [row] = await sql<{ runs: number; maxBusyMs: number; maxQuietMs: number }[]>`
    select runs, max_busy_ms, max_quiet_ms from cogo.command_history
     where owner = ${userId} and command_key = ${commandKey({ command, argv: null, planId: null, step: null })}`;
  return row ?? null;
}

describe.concurrent("loops and stalls of a command with history: the learned window", () => {
  // The same command (same key) each time; the workspace file it runs is what changes.
  const cases = [
    {
      name: "python: 2 s silent CPU then done; then the same command spins forever → infinite_loop",
      command: "python3   job.py",
      healthy: "import time\nprint('start', flush=True)\nend = time.time() + 2\nwhile time.time() < end: pass\nprint('done')\n",
      hanging: "print('start', flush=True)\nwhile True: pass\n",
      path: "job.py",
      reason: "infinite_loop",
      window: "infiniteLoopMs" as const,
    },
    {
      name: "shell: a 1 s silent sleep then done; then the same command sleeps for good → idle_stall",
      command: "sh job.sh",
      healthy: "echo start\nsleep 1\necho done\n",
      hanging: "echo start\nsleep 600\n",
      path: "job.sh",
      reason: "idle_stall",
      window: "idleStallMs" as const,
    },
  ];
  for (const c of cases) {
    it(c.name, async () => {
      const user = await newUser();
      // A different user's run of the command teaches this user's windows nothing.
      expect(await historyOf(user.id, c.command)).toBeNull();
      const first = await runTask({ ...base, command: c.command, files: [{ path: c.path, content: c.healthy }] }, user);
      expect(first.result.status).toBe("succeeded");
      expect(story(first.events)).toEqual([]);
      // Written by the worker once the attempt has ended: the client may see the result first.
      const key = c.command.replace(/\s+/g, " ");
      for (let t = Date.now(); (await historyOf(user.id, key)) === null && Date.now() - t < 5000; ) await new Promise((r) => setTimeout(r, 50));
      const history = await historyOf(user.id, key);
      expect(history).toMatchObject({ runs: 1 });
      const stretch = c.window === "infiniteLoopMs" ? history!.maxBusyMs : history!.maxQuietMs;
      // Counted between samples 500 ms apart, so a 1 s stretch reads about 500–1000 ms; timers
      // jitter a few ms either way (499 once, in a full run).
      expect(stretch).toBeGreaterThanOrEqual(400);
      expect(stretch).toBeLessThan(5000);
      const learned = learnedWindows(BLOCK_DETECTION_DEFAULTS, undefined, history)[c.window];
      expect(learned).toBeLessThan(BLOCK_DETECTION_DEFAULTS[c.window] / 2);

      const second = await runTask({ ...base, command: c.command, maxAttempts: 1, files: [{ path: c.path, content: c.hanging }] }, user);
      expect(story(second.events)[0]).toBe(`block_detected:${c.reason}`);
      const ms = await onsetToDetection(second.result.task.id, second.events, /^start/);
      expect(ms).toBeGreaterThanOrEqual(learned - 1000);
      expect(ms).toBeLessThanOrEqual(learned + 5000);
      expect(second.result.status).toBe("failed");
      // A blocked run is not a successful one: the history is unchanged.
      expect(await historyOf(user.id, c.command)).toMatchObject({ runs: 1 });
    }, 40_000);
  }

  it("a new command has no history: the default windows hold (and its success is recorded)", async () => {
    const user = await newUser();
    const command = `sh -c 'sleep 1; echo ok' # ${user.id}`;
    expect(await historyOf(user.id, command)).toBeNull();
    const { result, events } = await runTask({ ...base, command }, user);
    expect(result.status).toBe("succeeded");
    expect(story(events)).toEqual([]);
    expect(await historyOf(user.id, command)).toMatchObject({ runs: 1, maxBusyMs: expect.any(Number) });
    // A user's explicit window wins over the history on the next run.
    expect(learnedWindows({ ...BLOCK_DETECTION_DEFAULTS, idleStallMs: 45_000 }, { idleStallMs: 45_000 }, await historyOf(user.id, command))).toMatchObject({
      idleStallMs: 45_000,
    });
  }, 20_000);
});
