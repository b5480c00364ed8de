// The worker's line → event stage on its own: what it writes, when, and in which batches.
import { describe, expect, it } from "vitest";
import { LineEvents, type TaskEvent } from "../../worker/stream/line-events.ts";

const enc = (s: string) => new TextEncoder().encode(s);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function recorder(options: { historyMs?: number | null; appendMs?: number } = {}) {
  const batches: TaskEvent[][] = [];
  const notices: string[] = [];
  let historyAsked = 0;
  const events = new LineEvents({
    command: "make",
    append: async (batch) => {
      batches.push(batch);
      if (options.appendMs) await sleep(options.appendMs);
    },
    estimateDurationMs: async () => (historyAsked++, options.historyMs ?? null),
    notice: (t) => notices.push(t),
    log: () => {},
  });
  return { events, batches, notices, all: () => batches.flat(), historyAsked: () => historyAsked };
}

describe("LineEvents", () => {
  it("writes a diagnostic as soon as its line is complete, without waiting for the end", async () => {
    const r = recorder();
    r.events.push("stderr", enc("bad.c:1:2: error: one\n"));
    await sleep(5);
    expect(r.all()).toEqual([{ type: "diagnostic", data: expect.objectContaining({ file: "bad.c", message: "one" }) }]);
    r.events.push("stderr", enc("bad.c:2:2: error: two"));
    await sleep(50);
    expect(r.all()).toHaveLength(1); // no newline yet
    await r.events.close();
    expect(r.all().map((e) => (e.data as { message: string }).message)).toEqual(["one", "two"]);
  });

  it("batches what arrives while a write is in flight, in order", async () => {
    const r = recorder({ appendMs: 300 }); // long enough that the next lines surely find it in flight
    r.events.push("stdout", enc("a.c:1:1: error: e1\n"));
    await sleep(5);
    for (let i = 2; i <= 6; i++) r.events.push("stdout", enc(`a.c:${i}:1: error: e${i}\n`));
    await r.events.close();
    expect(r.batches.map((b) => b.length)).toEqual([1, 5]);
    expect(r.all().map((e) => (e.data as { message: string }).message)).toEqual(["e1", "e2", "e3", "e4", "e5", "e6"]);
  });

  it("keeps stdout and stderr apart: a message split across them is not merged", async () => {
    const r = recorder();
    r.events.push("stdout", enc("error[E0308]: mismatched types\n"));
    r.events.push("stderr", enc(" --> src/main.rs:3:18\n"));
    await r.events.close();
    expect(r.all()).toEqual([{ type: "diagnostic", data: expect.objectContaining({ code: "E0308", file: null }) }]);
  });

  it("throttles progress (the latest wins, 100 % goes at once) and adds an ETA from history", async () => {
    const r = recorder({ historyMs: 60_000 });
    for (let i = 1; i <= 50; i++) r.events.push("stdout", enc(`[ ${i}%] Building C object f${i}.o\n`));
    await sleep(400);
    r.events.push("stdout", enc("[100%] Built target app\n"));
    await r.events.close();
    const progress = r.all().map((e) => e.data as { percentage: number; etaMs: number; stage: string });
    expect(progress.map((p) => p.percentage)).toEqual([1, 50, 100]);
    expect(r.historyAsked()).toBe(1);
    // 1 % done: history alone (60 s minus the few ms elapsed); at 100 %: nothing left.
    expect(progress[0]!.etaMs).toBeGreaterThan(50_000);
    expect(progress[0]!.etaMs).toBeLessThanOrEqual(60_000);
    expect(progress.at(-1)!.etaMs).toBe(0);
  });

  it("stops publishing diagnostics past the cap and says so once", async () => {
    const r = recorder();
    r.events.push("stderr", enc(Array.from({ length: 520 }, (_, i) => `x.c:${i + 1}:1: warning: w\n`).join("")));
    await r.events.close();
    expect(r.all()).toHaveLength(500);
    expect(r.notices).toEqual(["diagnostics: more than 500; later ones are in the output only"]);
  });
});
