// Runs each edge function in real Deno, one process per function, as `supabase functions serve`
// does with its edge runtime. `--watch` restarts a function when its source changes.
import { spawn, type ChildProcess } from "node:child_process";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { createRequire } from "node:module";
import net from "node:net";
import path from "node:path";
import { parse as parseToml } from "smol-toml";
import { EmbeddedError } from "./errors.ts";
import { freePort } from "./ports.ts";

export interface FunctionConfig {
  slug: string;
  verifyJwt: boolean;
  entrypoint: string;
  importMap: string | undefined;
}

interface ConfigBlock {
  enabled?: boolean;
  verify_jwt?: boolean;
  entrypoint?: string;
  import_map?: string;
}

/** Functions as the CLI sees them: folders under supabase/functions (not `_*`), refined by config.toml. */
export function readFunctionConfigs(supabaseDir: string): FunctionConfig[] {
  const toml = parseToml(readFileSync(path.join(supabaseDir, "config.toml"), "utf8")) as {
    functions?: Record<string, ConfigBlock>;
  };
  const blocks = toml.functions ?? {};
  const dir = path.join(supabaseDir, "functions");
  const slugs = new Set(
    readdirSync(dir, { withFileTypes: true })
      .filter((d) => d.isDirectory() && !d.name.startsWith("_") && existsSync(path.join(dir, d.name, "index.ts")))
      .map((d) => d.name),
  );
  for (const slug of Object.keys(blocks)) slugs.add(slug);
  const configs: FunctionConfig[] = [];
  for (const slug of slugs) {
    const block = blocks[slug] ?? {};
    if (block.enabled === false) continue;
    const defaultMap = path.join(dir, slug, "deno.json");
    configs.push({
      slug,
      verifyJwt: block.verify_jwt ?? true,
      entrypoint: path.resolve(supabaseDir, block.entrypoint ?? `./functions/${slug}/index.ts`),
      importMap: block.import_map ? path.resolve(supabaseDir, block.import_map) : existsSync(defaultMap) ? defaultMap : undefined,
    });
  }
  return configs;
}

export function denoBinary(): string {
  const require = createRequire(import.meta.url);
  const pkg = path.dirname(require.resolve("deno/package.json"));
  const bin = path.join(pkg, "deno");
  if (existsSync(bin)) return bin;
  throw new EmbeddedError("deno_missing", `No deno binary in ${pkg}. Run npm ci (the deno package's install script must run).`);
}

export interface RunningFunction {
  config: FunctionConfig;
  port: number;
  process: ChildProcess;
}

export interface ServeOptions {
  env: Record<string, string>;
  watch: boolean;
  log: (line: string) => void;
}

async function waitForPort(port: number, child: ChildProcess, slug: string, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (child.exitCode !== null) {
      throw new EmbeddedError("function_exited", `Function ${slug} exited with code ${child.exitCode} while starting; see its log lines above.`);
    }
    const ok = await new Promise<boolean>((resolve) => {
      const s = net.connect(port, "127.0.0.1", () => (s.end(), resolve(true)));
      s.once("error", () => resolve(false));
    });
    if (ok) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new EmbeddedError("function_start_timeout", `Function ${slug} did not listen on port ${port} within ${timeoutMs} ms.`);
}

export async function serveFunction(config: FunctionConfig, options: ServeOptions): Promise<RunningFunction> {
  const port = await freePort();
  const args = ["run", "--allow-net", "--allow-env", "--allow-read", "--allow-sys", "--no-prompt"];
  if (options.watch) args.push("--watch", "--no-clear-screen");
  if (config.importMap) args.push("--config", config.importMap);
  args.push(config.entrypoint);
  const child = spawn(denoBinary(), args, {
    env: {
      PATH: process.env.PATH ?? "/usr/bin:/bin",
      HOME: process.env.HOME ?? "/tmp",
      ...(process.env.DENO_DIR ? { DENO_DIR: process.env.DENO_DIR } : {}),
      NO_COLOR: "1",
      ...options.env,
      SUPABASE_FUNCTION_SLUG: config.slug,
      DENO_SERVE_ADDRESS: `tcp:127.0.0.1:${port}`,
    },
    stdio: ["ignore", "pipe", "pipe"],
  });
  const forward = (chunk: Buffer) => {
    for (const line of chunk.toString().split("\n")) if (line.trim()) options.log(`[${config.slug}] ${line}`);
  };
  child.stdout!.on("data", forward);
  child.stderr!.on("data", forward);
  await waitForPort(port, child, config.slug, 30_000);
  return { config, port, process: child };
}

export async function stopFunction(fn: RunningFunction): Promise<void> {
  if (fn.process.exitCode !== null || fn.process.signalCode !== null) return;
  const exited = new Promise((r) => fn.process.once("exit", r));
  fn.process.kill("SIGTERM");
  const timer = setTimeout(() => fn.process.kill("SIGKILL"), 3000);
  await exited;
  clearTimeout(timer);
}
