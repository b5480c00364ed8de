// The SDK as a package (sdk/package.json): built (scripts/build-sdk.ts), packed by `npm pack`,
// installed from the tarball into a fresh project outside the checkout, then used as a user would:
// plain `node` imports it and runs a task on the real stack, tsc checks a consumer against its
// declarations, and the packed `cogo` bin runs from that project with its paths and .env.local.
import { spawn } from "node:child_process";
import { mkdtemp, readFile, realpath, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { buildSdk, SDK_DIR } from "../../scripts/build-sdk.ts";
import { newUser, stack, startWorker, uniqueKind } from "../helpers/env.ts";

const ROOT = path.dirname(SDK_DIR);
const kind = uniqueKind("pkg");

interface Ran {
  code: number | null;
  stdout: string;
  stderr: string;
  ms: number;
}

/**
 * The environment a user's shell would give: this one without what `npm test` sets for its script
 * (INIT_CWD, npm_lifecycle_*, npm_package_*, the checkout as local prefix: the CLI and a child npm
 * would take them for their own) and without connection settings, so each call passes exactly the
 * ones it tests. npm's config (registry, proxy, cafile: npm_config_*) stays, for the install.
 */
function userEnv(extra: Record<string, string> = {}): Record<string, string> {
  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries(process.env)) {
    if (v === undefined || /^(INIT_CWD|npm_(command|execpath|node_execpath|lifecycle_.*|package_.*|config_local_prefix))$|^(SUPABASE|COGO)_/.test(k)) continue;
    env[k] = v;
  }
  return { ...env, ...extra };
}

function run(argv: string[], cwd: string, env: Record<string, string> = userEnv()): Promise<Ran> {
  const started = performance.now();
  const child = spawn(argv[0]!, argv.slice(1), { cwd, env, stdio: ["ignore", "pipe", "pipe"] });
  let stdout = "";
  let stderr = "";
  child.stdout.on("data", (d) => (stdout += d));
  child.stderr.on("data", (d) => (stderr += d));
  return new Promise((resolve, reject) => {
    child.on("error", (err) => reject(new Error(`${argv.join(" ")}: ${err.message}`)));
    child.on("close", (code) => resolve({ code, stdout, stderr, ms: Math.round(performance.now() - started) }));
  });
}

/** Runs a step that must succeed; a failure names the step and shows its output. */
async function step(what: string, argv: string[], cwd: string, env?: Record<string, string>): Promise<Ran> {
  const r = await run(argv, cwd, env);
  if (r.code !== 0) throw new Error(`${what} failed (exit ${r.code}): ${argv.join(" ")} in ${cwd}\n${r.stdout}\n${r.stderr}`);
  return r;
}

let work: string;
let project: string;
let tarballBytes: number;
let user: Awaited<ReturnType<typeof newUser>>;
let failed = false;
const figures: string[] = [];

beforeAll(async () => {
  const started = performance.now();
  await startWorker({ kind });
  user = await newUser();
  await buildSdk();
  work = await mkdtemp(path.join(tmpdir(), "cogo-sdk-package-"));
  const [packed] = JSON.parse((await step("npm pack of sdk/", ["npm", "pack", "--json", "--pack-destination", work], SDK_DIR)).stdout) as { filename: string; size: number }[];
  tarballBytes = packed!.size;
  project = path.join(work, "project");
  await step("mkdir", ["mkdir", project], work);
  await writeFile(path.join(project, "package.json"), JSON.stringify({ name: "cogo-sdk-consumer", private: true, type: "module" }));
  // The dependencies' tarballs are in npm's cache since the checkout's install; their registry
  // metadata may not be (`npm ci` needs none), so npm may ask the registry for it: prefer-offline.
  const install = await step("npm install of the tarball", ["npm", "install", "--prefer-offline", "--no-audit", "--no-fund", path.join(work, packed!.filename)], project);
  figures.push(`tarball ${(tarballBytes / 1024).toFixed(1)} KiB`, `npm install ${install.ms} ms`, `setup ${Math.round(performance.now() - started)} ms`);
}, 120_000);

beforeEach((ctx) => ctx.onTestFailed(() => void (failed = true)));

afterAll(async () => {
  console.log(`[sdk package] ${figures.join(", ")}`);
  // Kept when something failed, to look at.
  if (failed) console.log(`[sdk package] kept ${work}`);
  else if (work) await rm(work, { recursive: true, force: true });
});

const connection = () => ({ SUPABASE_URL: stack.apiUrl, SUPABASE_ANON_KEY: stack.anonKey, COGO_TOKEN: user.token });
/**
 * All `cogo run` writes on stderr for a task that succeeds: the task's id and its page in the
 * dashboard the stack serves (no deprecation notice, no warning, nothing else).
 */
const literally = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
const TASK_LINE = new RegExp(`^task ([0-9a-f-]{36})  ${literally(`${stack.apiUrl}/dashboard/#/tasks/`)}\\1\n$`);

describe("the SDK package", () => {
  it("installs from its tarball outside the checkout: an exports map with types, bundled ESM, a cogo bin", async () => {
    const installed = path.join(project, "node_modules", "@cogo-sandbox", "sdk");
    expect((await realpath(installed)).startsWith(ROOT)).toBe(false);
    const pkg = JSON.parse(await readFile(path.join(installed, "package.json"), "utf8"));
    // "default" as well: require() of ESM (Node ≥ 20.19) and bundlers with other conditions.
    expect(pkg.exports["."]).toEqual({ types: "./dist/types/sdk/index.d.ts", import: "./dist/index.js", default: "./dist/index.js" });
    expect(pkg.bin).toEqual({ cogo: "./dist/cli.js" });
    // The versions the checkout is tested with, so the package never drifts from them.
    const root = JSON.parse(await readFile(path.join(ROOT, "package.json"), "utf8"));
    for (const [name, version] of Object.entries(pkg.dependencies)) expect(`${name}@${version}`).toBe(`${name}@${root.dependencies[name]}`);
    const lib = await readFile(path.join(installed, "dist", "index.js"), "utf8");
    // Browser-safe and self-contained: no Node modules, nothing left pointing into the checkout.
    expect(lib).not.toMatch(/from "node:|\.\.\/functions\/|\.ts"/);
    expect(tarballBytes).toBeLessThan(1024 * 1024);
  });

  it("runs a task from plain node: import, create a client, execute echo hi", async () => {
    const script = path.join(project, "task.mjs");
    await writeFile(
      script,
      `import { createClient } from "@supabase/supabase-js";
import WebSocket from "ws";
import { createSandboxClient, TASK_STATES } from "@cogo-sandbox/sdk";

const token = process.env.COGO_TOKEN;
const supabase = createClient(process.env.SUPABASE_URL, process.env.SUPABASE_ANON_KEY, { accessToken: async () => token, realtime: { transport: WebSocket } });
const sandbox = createSandboxClient(supabase);
const task = await sandbox.execute({ command: "echo hi", requirements: { kind: process.env.KIND } });
const { status, exitCode, stdout } = await task.result();
console.log(JSON.stringify({ status, exitCode, stdout, states: TASK_STATES.length }));
process.exit(0);
`,
    );
    const r = await step("node task.mjs", [process.execPath, "task.mjs"], project, userEnv({ ...connection(), KIND: kind }));
    expect(JSON.parse(r.stdout.trim().split("\n").at(-1)!)).toEqual({ status: "succeeded", exitCode: 0, stdout: "hi\n", states: 9 });
    figures.push(`node task.mjs (echo hi) ${r.ms} ms`);
  });

  it("serves Deno and browsers too: Deno imports it from the project's node_modules, esbuild bundles it for the browser", async () => {
    await writeFile(
      path.join(project, "other.mjs"),
      `import { createClient } from "@supabase/supabase-js";
import { createSandboxClient, TASK_STATES } from "@cogo-sandbox/sdk";
const sandbox = createSandboxClient(createClient("http://127.0.0.1:1", "anon"));
console.log(typeof sandbox.execute, TASK_STATES.length);
`,
    );
    const deno = await step("deno run", [path.join(ROOT, "node_modules", ".bin", "deno"), "run", "--no-prompt", "--node-modules-dir=manual", "other.mjs"], project);
    expect(deno.stdout).toBe("function 9\n");
    // A browser bundle fails on any Node built-in left in the main entry or what it imports.
    const esbuild = await import("esbuild");
    try {
      const bundled = await esbuild.build({ entryPoints: [path.join(project, "other.mjs")], bundle: true, platform: "browser", format: "esm", write: false, logLevel: "silent" });
      expect(bundled.errors).toEqual([]);
    } finally {
      await esbuild.stop();
    }
    figures.push(`deno run ${deno.ms} ms`);
  });

  it("type-checks a consumer with strict NodeNext tsc against its declarations", async () => {
    await writeFile(
      path.join(project, "check.ts"),
      `import { createClient } from "@supabase/supabase-js";
import { createSandboxClient, type ExecuteRequest, type TaskResult } from "@cogo-sandbox/sdk";

const sandbox = createSandboxClient(createClient("http://127.0.0.1:1", "anon"));
export async function status(req: ExecuteRequest): Promise<TaskResult["status"]> {
  return (await (await sandbox.execute(req)).result()).status;
}
// @ts-expect-error a command is a string: fails here only if the declarations lost their types
export const wrong: ExecuteRequest = { command: 42 };
`,
    );
    await writeFile(
      path.join(project, "tsconfig.json"),
      JSON.stringify({
        compilerOptions: {
          strict: true,
          module: "nodenext",
          moduleResolution: "nodenext",
          target: "es2022",
          noEmit: true,
          lib: ["es2023", "dom"],
          types: [],
          // As most projects do (supabase-js's declarations want @types/node). A declaration of ours
          // that lost its import would make ExecuteRequest `any`: the @ts-expect-error catches that.
          skipLibCheck: true,
        },
        files: ["check.ts"],
      }),
    );
    const r = await run([process.execPath, path.join(ROOT, "node_modules", "typescript", "bin", "tsc"), "-p", "."], project);
    expect(r.stdout + r.stderr).toBe("");
    expect(r.code).toBe(0);
    figures.push(`tsc consumer ${r.ms} ms`);
  });

  it("runs the packed cogo from the project: --help fast, --file and .env.local from the user's directory", async () => {
    const cogo = path.join(project, "node_modules", ".bin", "cogo");
    const helps: Ran[] = [];
    for (let i = 0; i < 3; i++) helps.push(await run([cogo, "--help"], project));
    expect(helps[0]!.code).toBe(0);
    expect(helps[0]!.stdout).toMatch(/^Usage: cogo /);
    const helpMs = Math.min(...helps.map((h) => h.ms));
    figures.push(`cogo --help ${helps.map((h) => h.ms).join("/")} ms`);
    // tsx took 1.2–1.9 s; the target is < 300 ms, with room here for a machine kept busy by others.
    expect(helpMs).toBeLessThan(1000);

    // --url/--anon-key flags, the token from the environment, a --file path relative to the project.
    await writeFile(path.join(project, "local.txt"), "from the user's directory\n");
    const { SUPABASE_URL, SUPABASE_ANON_KEY, COGO_TOKEN } = connection();
    const withFile = await run(
      [cogo, "--url", SUPABASE_URL, "--anon-key", SUPABASE_ANON_KEY, "run", "--kind", kind, "--file", "in.txt=local.txt", "--", "cat in.txt"],
      project,
      userEnv({ COGO_TOKEN }),
    );
    expect(withFile.stderr).toMatch(TASK_LINE); // supabase-js's Node 20 deprecation line is dropped
    expect(withFile.stdout).toBe("from the user's directory\n");
    expect(withFile.code).toBe(0);

    // Nothing in the environment: .env.local of the directory it runs in, the exit code the task's.
    await writeFile(path.join(project, ".env.local"), `SUPABASE_URL=${SUPABASE_URL}\nSUPABASE_ANON_KEY=${SUPABASE_ANON_KEY}\nCOGO_TOKEN=${COGO_TOKEN}\n`);
    const ok = await run([cogo, "run", "--kind", kind, "--", "true"], project);
    expect(ok.stderr).toMatch(TASK_LINE);
    expect(ok.code).toBe(0);
    const exit3 = await run([cogo, "run", "--kind", kind, "--", "exit 3"], project);
    expect(exit3.code).toBe(3);
    figures.push(`cogo run -- true ${ok.ms} ms`);
  });

  it("keeps npm run cogo working in the checkout, taking paths from where it is typed", async () => {
    await writeFile(path.join(project, "typed-here.txt"), "typed here\n");
    const r = await run(
      ["npm", "--prefix", ROOT, "run", "--silent", "cogo", "--", "run", "--kind", kind, "--file", "in.txt=typed-here.txt", "--", "cat in.txt"],
      project,
      userEnv(connection()),
    );
    expect(r.stderr).toMatch(TASK_LINE);
    expect(r.stdout).toBe("typed here\n");
    expect(r.code).toBe(0);
    figures.push(`npm run cogo (tsx, checkout) run ${r.ms} ms`);
  });
});
