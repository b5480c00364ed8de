// Shared by the analysis tests: repositories made on disk, the operator policy, and waiting for
// an analysis through the API.
import { execFileSync } from "node:child_process";
import { mkdirSync, writeFileSync } from "node:fs";
import path from "node:path";
import { api, sql, waitFor } from "../helpers/env.ts";

export const ROOT = `/var/tmp/cogo-analysis-test-${process.pid}`;

export function git(cwd: string, ...args: string[]): string {
  return execFileSync("git", ["-c", "user.email=t@example.com", "-c", "user.name=t", "-c", "init.defaultBranch=main", ...args], { cwd, encoding: "utf8" }).trim();
}

/** A git repository at ROOT/name with `files` committed. */
export function makeRepo(name: string, files: Record<string, string | Buffer>): string {
  const dir = path.join(ROOT, name);
  mkdirSync(dir, { recursive: true });
  git(dir, "init", "-q");
  writeFiles(dir, files);
  git(dir, "add", "-A");
  git(dir, "commit", "-qm", "initial");
  return dir;
}

export function writeFiles(dir: string, files: Record<string, string | Buffer>): void {
  for (const [p, content] of Object.entries(files)) {
    mkdirSync(path.dirname(path.join(dir, p)), { recursive: true });
    writeFileSync(path.join(dir, p), content);
  }
}

export async function setPolicy(localRoots: string[], allowPrivateHosts = false): Promise<void> {
  await sql`update cogo.analysis_policy set local_roots = ${localRoots}, allow_private_hosts = ${allowPrivateHosts}, updated_at = now()`;
}

export async function waitForAnalysis(token: string, id: string, timeoutMs = 120_000): Promise<any> {
  return await waitFor(
    async () => {
      const r = await api("GET", `/analysis/${id}/status`, { token });
      if (r.status !== 200) throw new Error(`status ${r.status}: ${JSON.stringify(r.body)}`);
      if (r.body.phase === "failed") throw new Error(`analysis failed: ${r.body.error}`);
      return r.body.phase === "completed" ? r.body : undefined;
    },
    `analysis ${id} to complete`,
    timeoutMs,
    200,
  );
}

/** cloc's per-file counts for `files` under `dir`, as {language: {files, code, comment, blank, paths}}. */
export function clocByFile(dir: string, files: string[]): Record<string, Record<string, { language: string; code: number; comment: number; blank: number }>> {
  const list = path.join(ROOT, `cloc-list-${Date.now()}`);
  writeFileSync(list, files.map((f) => path.join(dir, f)).join("\n") + "\n");
  let out: string;
  try {
    out = execFileSync("cloc", ["--json", "--by-file", "--skip-uniqueness", "--quiet", `--list-file=${list}`], { encoding: "utf8", maxBuffer: 64 * 1024 * 1024 });
  } catch (err) {
    throw new Error(`cloc is needed to check line counts: apt-get install -y cloc (${(err as Error).message})`);
  }
  const json = JSON.parse(out) as Record<string, { language: string; code: number; comment: number; blank: number }>;
  const byLanguage: Record<string, Record<string, { language: string; code: number; comment: number; blank: number }>> = {};
  for (const [file, r] of Object.entries(json)) {
    if (file === "header" || file === "SUM") continue;
    (byLanguage[r.language] ??= {})[path.relative(dir, file)] = r;
  }
  return byLanguage;
}
