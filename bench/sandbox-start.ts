// Start overhead of the sandbox: `true` in a sandbox vs a plain spawn, 50 runs each, with a fresh
// workspace tmpfs per task and with pooled ones (workspacePool, as the worker runs it).
// Run: npx tsx bench/sandbox-start.ts
import { spawn } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { drainWorkspacePool, sandboxFacts, startSandbox } from '../worker/sandbox/index.ts';

const RUNS = 50;

async function main(): Promise<void> {
  const facts = await sandboxFacts();
  const root = mkdtempSync(join(tmpdir(), 'cogo-bench-'));
  const rows: Record<string, number[]> = { 'plain spawn true (spawn → exit)': [] };
  const modes = [
    ['tmpfs per task', 0],
    ['pooled tmpfs', 1],
  ] as const;
  try {
    // One warm-up each, so one-time detection, file generation and the pool's mount are not counted.
    await plain();
    for (let i = 0; i < RUNS; i++) rows['plain spawn true (spawn → exit)']!.push(await plain());
    for (const [mode, pool] of modes) {
      await sandboxed(root, pool, {});
      const m: Record<string, number[]> = {};
      for (let i = 0; i < RUNS; i++) await sandboxed(root, pool, m);
      for (const [k, v] of Object.entries(m)) rows[`${mode}: ${k}`] = v;
    }
  } finally {
    await drainWorkspacePool(root);
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

async function sandboxed(root: string, workspacePool: number, rows: Record<string, number[]>): Promise<void> {
  const t0 = performance.now();
  const p = await startSandbox({ command: ['true'] }, { root, workspacePool });
  const t1 = performance.now();
  p.stdout.resume();
  p.stderr.resume();
  const exit = await p.exited;
  const t2 = performance.now();
  await p.cleanup();
  const t3 = performance.now();
  if (exit.exitCode !== 0) throw new Error(`sandboxed true failed: ${JSON.stringify(exit)}`);
  const add = (k: string, v: number) => (rows[k] ??= []).push(v);
  add('start (→ running)', t1 - t0);
  add('start → exit', t2 - t0);
  add('cleanup (workspace removal)', t3 - t2);
  add('total (start → exit → cleanup)', t3 - t0);
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
