// `npm start` (the README's first command) on a private data directory and ports, with an empty
// Deno cache and no reachable proxy (nothing is downloaded at start): it comes up,
// and a SIGINT or SIGTERM to its own pid (a process manager, `kill <pid>`; Ctrl-C signals the
// whole group instead) stops the workers first, then the stack, and leaves no process.
import { spawn } from "node:child_process";
import { readFileSync } from "node:fs";
import { mkdir, readdir, rm } from "node:fs/promises";
import path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { freePort } from "../../embedded/ports.ts";
import { PROJECT_ROOT, startStack } from "../../embedded/stack.ts";
import { connect } from "../../functions/_shared/db.ts";
import { processTree } from "../../worker/sandbox/procfs.ts";
import { waitFor } from "../helpers/wait.ts";

const dataDir = `/var/tmp/cogo-start-test-${process.pid}`;
const analysisHome = `${dataDir}-home`;
afterAll(async () => {
  const aside = (await readdir("/var/tmp")).filter((n) => n.startsWith(`${path.basename(dataDir)}.pre-squash-`)).map((n) => `/var/tmp/${n}`);
  await Promise.all([dataDir, `${dataDir}-deno`, analysisHome, ...aside].map((d) => rm(d, { recursive: true, force: true, maxRetries: 10, retryDelay: 100 })));
});

/** Running, not a zombie (an exited child its new parent has not reaped yet holds nothing). */
const alive = (pid: number) => {
  try {
    return !/^State:\s+Z/m.test(readFileSync(`/proc/${pid}/status`, "utf8"));
  } catch {
    return false;
  }
};

describe("npm start", () => {
  it.each(["SIGINT", "SIGTERM"] as const)(
    "stops in order on %s to its own pid and leaves no process",
    async (signal) => {
      await mkdir(analysisHome, { recursive: true });
      const child = spawn(process.execPath, ["--import", "tsx", path.join(PROJECT_ROOT, "scripts/start.ts")], {
        cwd: PROJECT_ROOT,
        env: {
          ...process.env,
          COGO_DATA_DIR: dataDir,
          COGO_DB_PORT: String(await freePort()),
          COGO_API_PORT: String(await freePort()),
          // As on a new machine offline: an empty Deno cache, and proxies that answer nothing.
          DENO_DIR: `${dataDir}-deno`,
          HTTPS_PROXY: "http://127.0.0.1:9",
          https_proxy: "http://127.0.0.1:9",
          // npm's INIT_CWD: where the user typed `npm start`, which analysis may then read.
          INIT_CWD: analysisHome,
        },
        stdio: ["ignore", "pipe", "pipe"],
        detached: true, // its own group: only the signal below reaches it
      });
      let out = "";
      child.stdout!.on("data", (d: Buffer) => (out += d));
      child.stderr!.on("data", (d: Buffer) => (out += d));
      const exited = new Promise<number | null>((resolve) => child.on("exit", (code) => resolve(code)));
      try {
        await waitFor(() => out.includes("COGO Sandbox is running"), "npm start to come up", 90_000);
        // Two workers (basic, analysis) online, and Postgres among the descendants.
        await waitFor(() => (out.match(/ online: /g) ?? []).length === 2, "both workers online", 30_000);
        const descendants = (await processTree(child.pid!)).filter((p) => p !== child.pid);
        expect(descendants.length).toBeGreaterThanOrEqual(3);
        // Repository analysis works out of the box: that directory is a local root, and it says so.
        expect(out).toContain(`Analysis: git repositories under ${analysisHome} (a path or file:// URL); https URLs of public hosts`);
        const db = connect(/DB URL: (\S+)/.exec(out)![1]!, { max: 1 });
        try {
          expect((await db<{ localRoots: string[] }[]>`select local_roots from cogo.analysis_policy`)[0]!.localRoots).toEqual([analysisHome]);
        } finally {
          await db.end();
        }

        process.kill(child.pid!, signal);
        expect(await exited).toBe(0);
        expect(out).toContain(`${signal}: stopping workers, functions, Realtime and Postgres`);
        expect(out).toMatch(/worker local-1 stopped[\s\S]*Stopped\.\n$/);
        expect(out).toContain("worker local-analysis stopped");
        const left = descendants.filter(alive).map((pid) => `${pid}: ${readFileSync(`/proc/${pid}/cmdline`, "utf8").replaceAll("\0", " ")}`);
        expect(left).toEqual([]);
      } finally {
        try {
          process.kill(-child.pid!, "SIGKILL");
        } catch {
          /* already gone */
        }
      }
    },
    150_000,
  );

  it("moves aside a local database made by the migrations squashed since, and starts a fresh one", async () => {
    // A data directory whose history names a pre-squash migration (20261125…), as an older checkout left it.
    const old = await startStack({ dataDir, dbPort: await freePort(), apiPort: 0, watch: false });
    const sql = connect(old.dbUrl, { max: 1 });
    await sql`insert into supabase_migrations.schema_migrations (version, name, statements) values ('20261125000100', 'create_task_queue', '{}')`;
    await sql.end();
    await old.stop();
    const child = spawn(process.execPath, ["--import", "tsx", path.join(PROJECT_ROOT, "scripts/start.ts"), "--workers", "0"], {
      cwd: PROJECT_ROOT,
      env: { ...process.env, COGO_DATA_DIR: dataDir, COGO_DB_PORT: String(await freePort()), COGO_API_PORT: String(await freePort()), DENO_DIR: `${dataDir}-deno` },
      stdio: ["ignore", "pipe", "pipe"],
      detached: true,
    });
    let out = "";
    child.stdout!.on("data", (d: Buffer) => (out += d));
    child.stderr!.on("data", (d: Buffer) => (out += d));
    try {
      await waitFor(() => out.includes("COGO Sandbox is running") || child.exitCode !== null, "npm start to come up", 90_000);
      expect(out).toMatch(/migrations have since been squashed: moved it to \/var\/tmp\/cogo-start-test-\d+\.pre-squash-/);
      expect(out).toContain("COGO Sandbox is running");
      const aside = (await readdir("/var/tmp")).filter((n) => n.startsWith(`${path.basename(dataDir)}.pre-squash-`));
      expect(aside).toHaveLength(1);
    } finally {
      try {
        process.kill(-child.pid!, "SIGKILL");
      } catch {
        /* already gone */
      }
    }
  }, 150_000);
});
