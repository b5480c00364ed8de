// What `npm start` lets repository analysis read. The embedded stack's policy row
// (cogo.analysis_policy) starts empty, which refuses every local path; on this machine the
// functions and the workers share one filesystem, so npm start names a local root: the directory
// it was run from, or those given with --analysis-root. Its analysis worker also gets the network
// (--allow-network) so https sources of public hosts work: only the system's clone tasks run on
// that kind, and a clone reaches only the addresses it checked and pinned (worker/analysis/clone.ts).
import path from "node:path";
import type { Sql } from "postgres";

/** `--analysis-root none` turns local sources off. */
export const NO_ROOT = "none";

/**
 * The local roots npm start allows: each `--analysis-root` (made absolute against `cwd`), or
 * `cwd` itself when none is given. `cwd` is where the user ran `npm start` (npm's INIT_CWD), not
 * the checkout npm switches to. `/` is never a default: it would open every repository of the host.
 */
export function startAnalysisRoots(options: readonly string[] | undefined, cwd: string): string[] {
  if (options?.length) {
    if (options.includes(NO_ROOT)) return [];
    return [...new Set(options.map((o) => path.resolve(cwd, o)))];
  }
  const dir = path.resolve(cwd);
  return dir === "/" ? [] : [dir];
}

/** The line npm start prints: what an analysis may read on this stack. */
export function describeAnalysisSources(roots: readonly string[], network: boolean): string {
  const local = roots.length ? `git repositories under ${roots.join(", ")} (a path or file:// URL)` : "no local paths (--analysis-root DIR allows some)";
  return `${local}; ${network ? "https URLs of public hosts" : "no https URLs (--analysis-offline)"}; workspace:<id>`;
}

/** Writes the roots into the deployment's policy row (the embedded stack's; npm start owns it). */
export async function applyAnalysisRoots(sql: Sql, roots: readonly string[]): Promise<void> {
  await sql`update cogo.analysis_policy set local_roots = ${roots as string[]}, updated_at = now()`;
}
