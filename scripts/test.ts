// `npm test`: the whole suite in two lanes that share nothing, so CI's wall time is the longer
// lane, not the sum of both.
//
//   lane 1 (live output): the integration project: one embedded stack, its files one at a time.
//   lane 2 (output kept, printed when it ends): typecheck, lint, the unit project, then the
//          standalone project (sandbox, launcher and own-stack files that never touch the shared
//          stack; see STANDALONE in vitest.config.ts).
//
// Each lane runs its files one after another, so at most two test files run at once on the
// machine; the suite passes with every core kept busy (fresh-check --loaded), which is harder.
// Exits non-zero if either lane fails, after both have ended; a failed typecheck or lint stops
// lane 1 at once, since nothing lands with it anyway.
import { spawn, type ChildProcess } from "node:child_process";

interface Step {
  name: string;
  argv: string[];
}

const LANE_2: Step[] = [
  { name: "typecheck", argv: ["npm", "run", "--silent", "typecheck"] },
  { name: "lint", argv: ["npm", "run", "--silent", "lint"] },
  { name: "unit + standalone tests", argv: ["npx", "vitest", "run", "--project", "unit", "--project", "standalone"] },
];

const children = new Set<ChildProcess>();
for (const signal of ["SIGINT", "SIGTERM"] as const) {
  process.on(signal, () => {
    for (const c of children) c.kill(signal);
    process.exit(130);
  });
}

function run(argv: string[], capture: Buffer[] | null): { child: ChildProcess; done: Promise<number> } {
  const child = spawn(argv[0]!, argv.slice(1), { stdio: capture ? ["ignore", "pipe", "pipe"] : "inherit", env: process.env });
  children.add(child);
  if (capture) {
    child.stdout!.on("data", (d: Buffer) => capture.push(d));
    child.stderr!.on("data", (d: Buffer) => capture.push(d));
  }
  const done = new Promise<number>((resolve) => {
    child.on("error", (err) => {
      capture?.push(Buffer.from(`${argv.join(" ")}: ${err.message}\n`));
      resolve(127);
    });
    child.on("close", (code, signal) => {
      children.delete(child);
      resolve(code ?? (signal ? 128 : 1));
    });
  });
  return { child, done };
}

const started = Date.now();
const seconds = () => `${((Date.now() - started) / 1000).toFixed(0)} s`;
const integration = run(["npx", "vitest", "run", "--project", "integration"], null);

const lane2 = (async () => {
  const out: Buffer[] = [];
  for (const step of LANE_2) {
    out.push(Buffer.from(`\n── ${step.name}: ${step.argv.join(" ")}\n`));
    const code = await run(step.argv, out).done;
    if (code !== 0) {
      out.push(Buffer.from(`── ${step.name} failed (exit ${code}) after ${seconds()}\n`));
      return { ok: false, out, early: step.name !== LANE_2.at(-1)!.name };
    }
    out.push(Buffer.from(`── ${step.name} passed after ${seconds()}\n`));
  }
  return { ok: true, out, early: false };
})();

const second = await lane2;
if (second.early) integration.child.kill("SIGTERM");
const first = await integration.done;
process.stdout.write(`\n════ lane 2 (typecheck, lint, unit and standalone tests) ════\n`);
process.stdout.write(Buffer.concat(second.out));
process.stdout.write(
  `\n════ npm test after ${seconds()}: integration ${first === 0 ? "passed" : `FAILED (exit ${first})`}; ` +
    `typecheck, lint, unit, standalone ${second.ok ? "passed" : "FAILED"} ════\n`,
);
process.exit(first === 0 && second.ok ? 0 : 1);
