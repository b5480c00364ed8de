// `npx tsx bench/enter.ts [N]` (root): command → first stdout byte and → exit in one live persistent
// sandbox (worker/sandbox/persistent.ts `exec`, launcher.py `enter`), N runs of `echo hi` (default
// 50), no stack. Prints p50/p90 and the load average; the target is p50 < 15 ms to first byte.
import { mkdtempSync } from "node:fs";
import { readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { startPersistentSandbox } from "../worker/sandbox/persistent.ts";

const n = Number(process.argv[2] ?? 50);
const root = mkdtempSync(join(tmpdir(), "cogo-bench-enter-"));
const s = await startPersistentSandbox({}, { root, uid: 410_000 });
const first: number[] = [];
const exit: number[] = [];
try {
  for (let i = 0; i < n + 3; i++) {
    const t = performance.now();
    const p = await s.exec({ command: ["echo", "hi"] });
    const byte = new Promise<number>((resolve) => p.stdout.once("data", () => resolve(performance.now() - t)));
    p.stdout.resume();
    p.stderr.resume();
    await p.exited;
    const done = performance.now() - t;
    const b = await byte;
    if (i >= 3) {
      first.push(b);
      exit.push(done);
    }
    // A human types the next command later: the launcher's after-reply work is not on the path.
    await new Promise((r) => setTimeout(r, 20));
  }
} finally {
  s.kill();
  const report = await s.cleanup();
  await rm(root, { recursive: true, force: true });
  if (!report.clean) console.error("not clean:", report);
}
const q = (xs: number[], f: number) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length * f)]!.toFixed(1);
const load = (await readFile("/proc/loadavg", "utf8")).split(" ")[0];
console.log(`enter \`echo hi\` ×${n}: first byte p50 ${q(first, 0.5)} ms p90 ${q(first, 0.9)} ms; exit p50 ${q(exit, 0.5)} ms p90 ${q(exit, 0.9)} ms (load ${load})`);
