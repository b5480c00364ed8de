// The CLI's plan commands: `cogo watch` (a directory's changes reach the workspace as one change
// per burst and re-run the plan's steps) and `cogo plan`.
import { spawn } from "node:child_process";
import { mkdir, mkdtemp, rm, symlink, unlink, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import type { ChangeResult } from "../../functions/_shared/plans/view.ts";
import { watchDirectory } from "../../sdk/watch.ts";
import { newUser, sql, stack, startWorker, uniqueKind, waitFor } from "../helpers/env.ts";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function cli(args: string[], env: Record<string, string> = {}) {
  const child = spawn(process.execPath, ["--import", "tsx", "sdk/cli.ts", ...args], {
    env: { PATH: process.env.PATH!, SUPABASE_URL: stack.apiUrl, SUPABASE_ANON_KEY: stack.anonKey, ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let stdout = "";
  let stderr = "";
  child.stdout.on("data", (d) => (stdout += d));
  child.stderr.on("data", (d) => (stderr += d));
  const exited = new Promise<number>((resolve) => child.on("exit", (code) => resolve(code ?? -1)));
  return { child, exited, out: () => stdout, err: () => stderr };
}

describe("cogo watch", () => {
  it("sends a burst of saves as one change, deletes too, never symlinks; the affected step re-runs", async () => {
    const kind = uniqueKind("watch");
    await startWorker({ kind });
    const user = await newUser();
    const dir = await mkdtemp(join(tmpdir(), "cogo-watch-"));
    try {
      await writeFile(join(dir, "a.txt"), "a0");
      await writeFile(join(dir, "b.txt"), "b0");
      const plan = await user.sandbox.createPlan({
        requirements: { kind },
        files: [
          { path: "a.txt", content: "a0" },
          { path: "b.txt", content: "b0" },
        ],
        steps: [{ name: "test", command: "cat a.txt; test ! -e b.txt || cat b.txt" }],
      });
      const first = await plan.wait();
      expect(first.status).toBe("succeeded");
      const changes: ChangeResult[] = [];
      const warnings: string[] = [];
      const watcher = await watchDirectory(user.sandbox, dir, {
        workspaceId: first.workspaceId,
        debounceMs: 500,
        onChange: (c) => changes.push(c),
        onWarning: (w) => warnings.push(w),
      });
      const [before] = await sql<{ revision: string }[]>`select revision from public.workspaces where id = ${first.workspaceId}`;
      await writeFile(join(dir, "a.txt"), "a1");
      await sleep(30);
      await writeFile(join(dir, "b.txt"), "b1");
      await sleep(30);
      await writeFile(join(dir, "a.txt"), "a2");
      await symlink("/etc/passwd", join(dir, "leak"));
      await waitFor(() => changes.length >= 1, "the debounced change", 10_000);
      await sleep(800);
      expect(changes).toHaveLength(1);
      expect(changes[0]!.changed.sort()).toEqual(["a.txt", "b.txt"]);
      expect(changes[0]!.reruns.map((r) => r.step)).toEqual(["test"]);
      expect(warnings).toContain("leak: symlinks are not uploaded");
      const [after] = await sql<{ revision: string }[]>`select revision from public.workspaces where id = ${first.workspaceId}`;
      expect(Number(after!.revision)).toBe(Number(before!.revision) + 1);
      const rerun = await plan.wait((p) => p.status !== "running" && p.steps[0]!.runs === 2, 60_000);
      expect((await (await user.sandbox.attach(rerun.steps[0]!.taskId!)).result()).stdout).toBe("a2b1");

      await unlink(join(dir, "b.txt"));
      await waitFor(() => changes.length >= 2, "the delete", 10_000);
      expect(changes[1]!.changed).toEqual(["b.txt"]);
      expect((await user.sandbox.listFiles(first.workspaceId)).files.map((f) => f.path)).toEqual(["a.txt"]);

      // A new directory arrives whole; removing it deletes what was under it.
      await mkdir(join(dir, "lib/deep"), { recursive: true });
      await writeFile(join(dir, "lib/deep/x.txt"), "x");
      await writeFile(join(dir, "lib/y.txt"), "y");
      await waitFor(() => changes.length >= 3, "the new directory", 10_000);
      await waitFor(async () => (await user.sandbox.listFiles(first.workspaceId)).files.length === 3, "lib uploaded", 10_000);
      await rm(join(dir, "lib"), { recursive: true });
      await waitFor(async () => (await user.sandbox.listFiles(first.workspaceId)).files.length === 1, "lib deleted", 10_000);
      await watcher.close();
      await plan.close();
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it("the CLI: --help, a clear error without a target, and a real watch stopped by Ctrl-C", async () => {
    const help = cli(["watch", "--help"]);
    expect(await help.exited).toBe(0);
    expect(help.out()).toContain("watch <dir> (--plan ID | --workspace ID)");

    const user = await newUser();
    const noTarget = cli(["watch", "."], { COGO_TOKEN: user.token });
    expect(await noTarget.exited).toBe(2);
    expect(noTarget.err()).toContain("watch needs exactly one of --plan <planId> or --workspace <workspaceId>");

    const plan = await user.sandbox.createPlan({ steps: [{ name: "a", command: "true", requirements: { kind: uniqueKind("nobody") } }] });
    const ws = (await plan.get()).workspaceId;
    const dir = await mkdtemp(join(tmpdir(), "cogo-watch-cli-"));
    try {
      const run = cli(["watch", dir, "--plan", plan.planId, "--debounce", "50"], { COGO_TOKEN: user.token });
      await waitFor(() => run.err().includes("[watch] watching"), "the watcher to start", 30_000);
      await writeFile(join(dir, "new.txt"), "hello");
      await waitFor(async () => (await user.sandbox.listFiles(ws)).files.some((f) => f.path === "new.txt"), "new.txt uploaded", 10_000);
      await waitFor(() => run.err().includes("[watch] sent 1 change(s): new.txt"), "the change to be reported", 5_000);
      run.child.kill("SIGINT");
      expect(await run.exited).toBe(0);
    } finally {
      await rm(dir, { recursive: true, force: true });
      await plan.cancel();
      await plan.close();
    }
  });

  it("cogo plan submits a plan file, prints its step events and exits with its outcome", async () => {
    const kind = uniqueKind("cliplan");
    await startWorker({ kind });
    const user = await newUser();
    const dir = await mkdtemp(join(tmpdir(), "cogo-plan-cli-"));
    try {
      const spec = (ok: boolean) => ({
        requirements: { kind },
        files: [{ path: "x.txt", content: "x" }],
        steps: [
          { name: "check", command: ok ? "cat x.txt" : "exit 4" },
          { name: "after", command: "true" },
        ],
      });
      await writeFile(join(dir, "good.json"), JSON.stringify(spec(true)));
      await writeFile(join(dir, "bad.json"), JSON.stringify(spec(false)));
      const good = cli(["plan", join(dir, "good.json")], { COGO_TOKEN: user.token });
      expect(await good.exited, good.err()).toBe(0);
      expect(JSON.parse(good.out())).toMatchObject({ planId: expect.any(String), topic: expect.stringMatching(/^plan:/) });
      expect(good.err()).toContain("[plan] check: succeeded");
      expect(good.err()).toContain("[plan] 2 of 2 steps passed");
      const bad = cli(["plan", join(dir, "bad.json")], { COGO_TOKEN: user.token });
      expect(await bad.exited).toBe(1);
      expect(bad.err()).toContain("[plan] 0 of 2 steps passed; check failed (exited with code 4); not run: after");
      const missing = cli(["plan", join(dir, "nope.json")], { COGO_TOKEN: user.token });
      expect(await missing.exited).toBe(2);
      expect(missing.err()).toMatch(/nope\.json: ENOENT/);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
