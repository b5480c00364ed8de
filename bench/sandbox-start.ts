// Start overhead of the sandbox: `true` in a sandbox vs a plain spawn, 50 runs each.
// Run: npx tsx bench/sandbox-start.ts
import { spawn } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { sandboxFacts, startSandbox } from '../worker/sandbox/index.ts';

const RUNS = 50;

async function main(): Promise<void> {
  const facts = await sandboxFacts();
  const root = mkdtempSync(join(tmpdir(), 'cogo-bench-'));
  const rows: Record<string, number[]> = {
    'plain spawn true (spawn → exit)': [],
    'sandbox true: start (→ running)': [],
    'sandbox true: start → exit': [],
    'sandbox cleanup (workspace removal)': [],
    'sandbox total (start → exit → cleanup)': [],
  };
  try {
    // One warm-up each, so one-time detection and file generation are not counted.
    await plain();
    await sandboxed(root, {});
    for (let i = 0; i < RUNS; i++) rows['plain spawn true (spawn → exit)']!.push(await plain());
    for (let i = 0; i < RUNS; i++) await sandboxed(root, rows);
  } finally {
    await rm(root, { recursive: true, force: true });
  }
  console.log(`bwrap: ${facts.bwrap}; cgroups: ${facts.cgroups}; limits: ${facts.limitsBy}`);
  console.log(`${RUNS} runs each, milliseconds\n`);
  const name = Math.max(...Object.keys(rows).map((k) => k.length));
  console.log(`${'measure'.padEnd(name)}  ${'p50'.padStart(7)}  ${'p99'.padStart(7)}  ${'mean'.padStart(7)}`);
  for (const [k, v] of Object.entries(rows)) {
    const mean = v.reduce((a, b) => a + b, 0) / v.length;
    console.log(`${k.padEnd(name)}  ${fmt(pct(v, 50))}  ${fmt(pct(v, 99))}  ${fmt(mean)}`);
  }
}

function plain(): Promise<number> {
  const t0 = performance.now();
  return new Promise((resolve, reject) => {
    spawn('/usr/bin/true', { stdio: 'ignore' })
      .on('error', reject)
      .on('exit', () => resolve(performance.now() - t0));
  });
}

async function sandboxed(root: string, rows: Record<string, number[]>): Promise<void> {
  const t0 = performance.now();
  const p = await startSandbox({ command: ['true'] }, { root });
  const t1 = performance.now();
  p.stdout.resume();
  p.stderr.resume();
  const exit = await p.exited;
  const t2 = performance.now();
  await p.cleanup();
  const t3 = performance.now();
  if (exit.exitCode !== 0) throw new Error(`sandboxed true failed: ${JSON.stringify(exit)}`);
  rows['sandbox true: start (→ running)']?.push(t1 - t0);
  rows['sandbox true: start → exit']?.push(t2 - t0);
  rows['sandbox cleanup (workspace removal)']?.push(t3 - t2);
  rows['sandbox total (start → exit → cleanup)']?.push(t3 - t0);
}

/** Nearest-rank percentile. */
function pct(values: number[], p: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]!;
}

function fmt(ms: number): string {
  return ms.toFixed(1).padStart(7);
}

await main();
