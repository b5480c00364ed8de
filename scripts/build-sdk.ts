// Builds the SDK package (sdk/ → sdk/dist): the library as one ESM file with no Node imports (it
// runs in browsers and Deno too), the `cogo` CLI as one ESM file with a shebang, and .d.ts files
// by tsc. The SDK's own imports from functions/_shared are bundled in; its dependencies
// (@supabase/supabase-js, ws, zod: sdk/package.json) stay imports. `npm pack ./sdk` after this.
import { spawn } from "node:child_process";
import { chmod, rm } from "node:fs/promises";
import path from "node:path";
import { fileURLToPath } from "node:url";
import * as esbuild from "esbuild";

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
export const SDK_DIR = path.join(ROOT, "sdk");
export const SDK_DIST = path.join(SDK_DIR, "dist");
/** Installed with the package (sdk/package.json `dependencies`), so never bundled. */
const EXTERNAL = ["@supabase/supabase-js", "ws", "zod"];
/**
 * The CLI bundles zod's used parts: importing all of "zod" (its locales included) costs ~300 ms
 * per command, most of `cogo --help`'s time. supabase-js and ws load only once a command connects.
 */
const CLI_EXTERNAL = ["@supabase/supabase-js", "ws"];

function declarations(): Promise<void> {
  const tsc = path.join(ROOT, "node_modules", "typescript", "bin", "tsc");
  const child = spawn(process.execPath, [tsc, "-p", path.join(SDK_DIR, "tsconfig.build.json")], { stdio: "inherit" });
  return new Promise((resolve, reject) => {
    child.on("error", reject);
    child.on("exit", (code) => (code === 0 ? resolve() : reject(new Error(`tsc (declarations) exited with ${code}`))));
  });
}

async function bundles(): Promise<void> {
  const common = { bundle: true, format: "esm", target: "es2022", external: EXTERNAL, logLevel: "warning", metafile: true } as const;
  const lib = await esbuild.build({ ...common, entryPoints: [path.join(SDK_DIR, "index.ts")], outfile: path.join(SDK_DIST, "index.js"), platform: "neutral" });
  // The main entry is for browsers and Deno as well: a node: import there is a bug, not a warning.
  const nodeImports = Object.values(lib.metafile.outputs).flatMap((o) => o.imports.filter((i) => i.path.startsWith("node:")).map((i) => i.path));
  if (nodeImports.length > 0) throw new Error(`sdk/index.ts must not import Node modules (browser entry), but its bundle imports ${[...new Set(nodeImports)].join(", ")}`);
  const cli = path.join(SDK_DIST, "cli.js");
  await esbuild.build({ ...common, external: CLI_EXTERNAL, entryPoints: [path.join(SDK_DIR, "cli.ts")], outfile: cli, platform: "node", banner: { js: "#!/usr/bin/env node" } });
  await chmod(cli, 0o755);
}

export async function buildSdk(): Promise<string> {
  await rm(SDK_DIST, { recursive: true, force: true });
  try {
    await Promise.all([bundles(), declarations()]);
  } finally {
    // esbuild's service child would otherwise keep the calling process (a test) alive.
    await esbuild.stop();
  }
  return SDK_DIST;
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const started = Date.now();
  await buildSdk();
  console.log(`built ${path.relative(process.cwd(), SDK_DIST)} in ${Date.now() - started} ms`);
}
