// Serving edge functions in Deno: packages come from the project's node_modules (no download at
// start, even with an empty Deno cache and no reachable proxy), and a function that fails to load
// fails the start at once, quoting its own log, with nothing left running.
import { writeFile } from "node:fs/promises";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { readFunctionConfigs, serveFunction, stopFunction, type RunningFunction } from "../../embedded/functions.ts";
import { PROJECT_ROOT } from "../../embedded/stack.ts";
import { tempDirs } from "../helpers/temp.ts";

const tempDir = tempDirs("cogo-fn-");

/** Runs `fn` with an empty Deno cache and every proxy pointing at a closed port. */
async function offline<T>(fn: () => Promise<T>): Promise<T> {
  const keys = ["DENO_DIR", "HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy"] as const;
  const saved = Object.fromEntries(keys.map((k) => [k, process.env[k]]));
  process.env.DENO_DIR = await tempDir();
  for (const k of keys.slice(1)) process.env[k] = "http://127.0.0.1:9";
  try {
    return await fn();
  } finally {
    for (const k of keys) saved[k] === undefined ? delete process.env[k] : (process.env[k] = saved[k]);
  }
}

const alive = (pid: number) => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

describe("edge functions in Deno", () => {
  it("the sandbox function starts with an empty Deno cache and no network", async () => {
    const [config] = readFunctionConfigs(path.join(PROJECT_ROOT, "supabase")).filter((c) => c.slug === "sandbox");
    const logs: string[] = [];
    let fn: RunningFunction | undefined;
    try {
      const t0 = performance.now();
      fn = await offline(() =>
        serveFunction(config!, {
          env: { SUPABASE_DB_URL: "postgres://nobody@127.0.0.1:9/none" },
          watch: true,
          log: (l) => logs.push(l),
          startTimeoutMs: 20_000,
        }),
      );
      const ms = performance.now() - t0;
      // Listening is not enough: the module graph (zod, postgres, jose) loaded from node_modules.
      const res = await fetch(`http://127.0.0.1:${fn.port}/sandbox/no-such-route`);
      expect(res.status, logs.join("\n")).toBeLessThan(500);
      expect(logs.join("\n")).not.toMatch(/Download/);
      expect(ms).toBeLessThan(20_000);
    } finally {
      if (fn) await stopFunction(fn);
    }
  });

  it("a function that cannot load fails the start with its own log lines, under --watch too", async () => {
    const dir = await tempDir();
    await writeFile(path.join(dir, "index.ts"), 'import leftPad from "npm:left-pad@1.3.0";\nDeno.serve(() => new Response(leftPad("x", 3)));\n');
    const pids: number[] = [];
    const t0 = performance.now();
    const err = await offline(() =>
      serveFunction(
        { slug: "broken", verifyJwt: true, entrypoint: path.join(dir, "index.ts"), importMap: undefined },
        { env: {}, watch: true, log: () => {}, startTimeoutMs: 20_000 },
      ).then(
        (fn) => (pids.push(fn.process.pid!), stopFunction(fn).then(() => undefined)),
        (e: Error) => e,
      ),
    );
    expect(err, "a function importing a package that is not installed must not start").toBeInstanceOf(Error);
    expect((err as { code?: string }).code).toBe("function_failed");
    expect(err!.message).toMatch(/^Function broken failed to load\. Run npm install[^\n]*\nIts last log lines:\n[\s\S]*npm:left-pad@1\.3\.0/);
    expect(performance.now() - t0).toBeLessThan(15_000);
    // Nothing left: no deno process runs this entrypoint any more.
    const { execFileSync } = await import("node:child_process");
    const left = execFileSync("ps", ["-eo", "pid,args"], { encoding: "utf8" })
      .split("\n")
      .filter((l) => l.includes(dir));
    expect(left).toEqual([]);
    expect(pids.filter(alive)).toEqual([]);
  });
});
