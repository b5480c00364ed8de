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
  /** How long a function may take to listen. @default 30000 */
  startTimeoutMs?: number;
}

/**
 * Variables a child that may reach the network needs on a network with a proxy or a private
 * certificate authority; everything else of ours stays out of the function's environment.
 */
export const NETWORK_ENV = [
  "HTTPS_PROXY",
  "https_proxy",
  "HTTP_PROXY",
  "http_proxy",
  "ALL_PROXY",
  "all_proxy",
  "NO_PROXY",
  "no_proxy",
  "SSL_CERT_FILE",
  "SSL_CERT_DIR",
  "DENO_CERT",
  "DENO_TLS_CA_STORE",
  "NODE_EXTRA_CA_CERTS",
  "NPM_CONFIG_REGISTRY",
  "npm_config_registry",
  "DENO_AUTH_TOKENS",
];

export function networkEnv(env: NodeJS.ProcessEnv = process.env): Record<string, string> {
  return Object.fromEntries(NETWORK_ENV.flatMap((k) => (env[k] ? [[k, env[k]!]] : [])));
}

/** Lines a failed start quotes from the function's own log. */
const TAIL_LINES = 20;

/** `--watch` keeps a function whose module failed to load alive, waiting for a change: a failed start. */
const WATCH_FAILED = /^error: |Process failed/;

async function waitForPort(port: number, child: ChildProcess, slug: string, timeoutMs: number, failed: () => boolean): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (child.exitCode !== null || child.signalCode !== null) {
      throw new EmbeddedError("function_exited", `Function ${slug} exited (${child.exitCode ?? child.signalCode}) while starting.`);
    }
    if (failed()) throw new EmbeddedError("function_failed", `Function ${slug} failed to load.`);
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
  // npm: imports resolve from the project's node_modules (installed by `npm install` at the exact
  // versions of the import map), so a start needs no download and works offline after install.
  const args = ["run", "--node-modules-dir=manual", "--allow-net", "--allow-env", "--allow-read", "--allow-sys", "--no-prompt"];
  if (options.watch) args.push("--watch", "--no-clear-screen");
  if (config.importMap) args.push("--config", config.importMap);
  args.push(config.entrypoint);
  const child = spawn(denoBinary(), args, {
    env: {
      PATH: process.env.PATH ?? "/usr/bin:/bin",
      HOME: process.env.HOME ?? "/tmp",
      ...(process.env.DENO_DIR ? { DENO_DIR: process.env.DENO_DIR } : {}),
      ...networkEnv(),
      NO_COLOR: "1",
      ...options.env,
      SUPABASE_FUNCTION_SLUG: config.slug,
      DENO_SERVE_ADDRESS: `tcp:127.0.0.1:${port}`,
    },
    stdio: ["ignore", "pipe", "pipe"],
  });
  const tail: string[] = [];
  let loadFailed = false;
  const forward = (chunk: Buffer) => {
    for (const line of chunk.toString().split("\n")) {
      if (!line.trim()) continue;
      options.log(`[${config.slug}] ${line}`);
      tail.push(line);
      if (tail.length > TAIL_LINES) tail.shift();
      if (WATCH_FAILED.test(line)) loadFailed = true;
    }
  };
  child.stdout!.on("data", forward);
  child.stderr!.on("data", forward);
  const running = { config, port, process: child };
  try {
    await waitForPort(port, child, config.slug, options.startTimeoutMs ?? 30_000, () => loadFailed);
  } catch (err) {
    // A failed start leaves nothing running and says what the function itself said.
    await stopFunction(running);
    const said = tail.length ? `\nIts last log lines:\n  ${tail.join("\n  ")}` : " It logged nothing.";
    const hint = tail.some((l) => l.includes("in the node_modules directory")) ? " Run npm install: the functions' npm: packages come from the project's node_modules." : "";
    throw new EmbeddedError((err as EmbeddedError).code, `${(err as Error).message}${hint}${said}`);
  }
  return running;
}

export async function stopFunction(fn: RunningFunction): Promise<void> {
  if (fn.process.exitCode !== null || fn.process.signalCode !== null) return;
  const exited = new Promise((r) => fn.process.once("exit", r));
  fn.process.kill("SIGTERM");
  const timer = setTimeout(() => fn.process.kill("SIGKILL"), 3000);
  await exited;
  clearTimeout(timer);
}
