// `npm run bench [-- <suite>…] [--json]` (suites: SUITES below; all by default): starts a private embedded stack, measures, and
// prints one table; results are appended to bench/results/<timestamp>.json.
import { mkdir, writeFile } from "node:fs/promises";
import path from "node:path";
import { parseArgs } from "node:util";
import { connect } from "../functions/_shared/db.ts";
import { freePort } from "../embedded/ports.ts";
import { PROJECT_ROOT, startStack } from "../embedded/stack.ts";
import { benchAnalysis } from "./analysis.ts";
import { benchDiagnostics } from "./diagnostics.ts";
import { benchFeedback } from "./feedback.ts";
import { benchBlocks } from "./blocks.ts";
import { benchLifecycle } from "./lifecycle.ts";
import { benchSandbox } from "./sandbox.ts";
import { benchSandboxes } from "./sandboxes.ts";
import { benchStall } from "./stall.ts";
import { benchFairness } from "./fairness.ts";
import { benchCompare } from "./compare.ts";
import { benchRealtime } from "./realtime.ts";
import { printTable, type Row } from "./stats.ts";
import { ignorePostgresClosedSocketWrites } from "../worker/process-guard.ts";

ignorePostgresClosedSocketWrites();

const SUITES = ["lifecycle", "stall", "fairness", "sandbox", "diagnostics", "feedback", "analysis", "blocks", "compare", "realtime", "sandboxes"] as const;
const { values, positionals } = parseArgs({ allowPositionals: true, options: { json: { type: "boolean" }, help: { type: "boolean", short: "h" } } });
if (values.help) {
  console.log(`Usage: npm run bench [-- <suite>…] [--json]\n\nSuites: ${SUITES.join(", ")} (default: all). Starts its own embedded stack in /var/tmp.`);
  process.exit(0);
}
const chosen = positionals.length ? positionals : [...SUITES];
for (const s of chosen)
  if (!(SUITES as readonly string[]).includes(s)) {
    console.error(`unknown suite ${s}; choose from ${SUITES.join(", ")}`);
    process.exit(2);
  }

const progress = (s: string) => process.stderr.write(`  ${s}\n`);
const dataDir = `/var/tmp/cogo-bench-${process.pid}`;
progress("starting a private embedded stack…");
const stack = await startStack({
  dataDir,
  reset: true,
  dbPort: await freePort(),
  apiPort: 0,
  watch: false,
  log: (l) => process.env.COGO_BENCH_DEBUG && l.startsWith("[realtime]") && progress(l),
});
const sql = connect(stack.dbUrl, { max: 4 });
const results: Record<string, Row[]> = {};
try {
  if (chosen.includes("lifecycle")) results.lifecycle = await benchLifecycle(stack, sql, progress);
  if (chosen.includes("stall")) results.stall = await benchStall(stack, sql, progress);
  if (chosen.includes("fairness")) results.fairness = await benchFairness(stack, sql, progress);
  if (chosen.includes("sandbox")) results.sandbox = await benchSandbox(stack, sql, progress);
  if (chosen.includes("diagnostics")) results.diagnostics = await benchDiagnostics(stack, progress);
  if (chosen.includes("feedback")) results.feedback = await benchFeedback(stack, sql, progress);
  if (chosen.includes("analysis")) results.analysis = await benchAnalysis(stack, sql, progress);
  if (chosen.includes("blocks")) results.blocks = await benchBlocks(stack, sql, progress);
  if (chosen.includes("compare")) results.compare = await benchCompare(stack, sql, progress);
  if (chosen.includes("realtime")) results.realtime = await benchRealtime(stack, sql, progress);
  if (chosen.includes("sandboxes")) results.sandboxes = await benchSandboxes(stack, sql, progress);
} finally {
  await sql.end();
  await stack.stop();
  const { rm } = await import("node:fs/promises");
  await rm(dataDir, { recursive: true, force: true });
}
const record = { at: new Date().toISOString(), machine: { cpus: (await import("node:os")).cpus().length, node: process.version }, results };
const dir = path.join(PROJECT_ROOT, "bench", "results");
await mkdir(dir, { recursive: true });
await writeFile(path.join(dir, `${record.at.replace(/[:.]/g, "-")}.json`), JSON.stringify(record, null, 2) + "\n");
if (values.json) console.log(JSON.stringify(record, null, 2));
else for (const [suite, rows] of Object.entries(results)) printTable(`${suite} (${record.machine.cpus} cores, ${record.machine.node})`, rows);
