// Builds the dashboard (dashboard/src → dashboard/dist) with esbuild: one JS bundle, one CSS file
// (xterm's included), index.html. `npm start` runs it; run it yourself to deploy the page elsewhere.
import { copyFile, mkdir, writeFile } from "node:fs/promises";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import * as esbuild from "esbuild";

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
export const DASHBOARD_SRC = path.join(ROOT, "dashboard");
export const DASHBOARD_DIST = path.join(DASHBOARD_SRC, "dist");

/** dist/config.json for a page hosted away from the embedded gateway (which serves its own). */
export interface DashboardConfig {
  /** The project URL, e.g. https://<ref>.supabase.co. @default the page's own origin */
  supabaseUrl?: string;
  /** The project's anon (publishable) key. */
  anonKey: string;
  /** "supabase": sign in with Supabase Auth (email + password); "token": paste an access token. @default "token" */
  auth?: "token" | "supabase";
}

export async function buildDashboard(options: { outDir?: string; config?: DashboardConfig } = {}): Promise<string> {
  const outDir = options.outDir ?? DASHBOARD_DIST;
  await mkdir(outDir, { recursive: true });
  try {
    await build(outDir);
  } finally {
    // esbuild's service child would otherwise live on beside `npm start`, and outlive it briefly
    // at exit (the start test saw it after SIGINT on a loaded machine). A later build starts anew.
    await esbuild.stop();
  }
  await copyFile(path.join(DASHBOARD_SRC, "index.html"), path.join(outDir, "index.html"));
  if (options.config) await writeFile(path.join(outDir, "config.json"), JSON.stringify(options.config, null, 2) + "\n");
  return outDir;
}

async function build(outDir: string): Promise<void> {
  await esbuild.build({
    entryPoints: { app: path.join(DASHBOARD_SRC, "src", "main.ts"), style: path.join(DASHBOARD_SRC, "style.css") },
    outdir: outDir,
    bundle: true,
    format: "esm",
    platform: "browser",
    target: "es2022",
    minify: true,
    sourcemap: "linked",
    logLevel: "warning",
  });
}

const USAGE = `Usage: npm run dashboard:build -- [options]

Bundles the dashboard into dashboard/dist. The embedded default (npm start) serves it at
/dashboard/ with its own config. To host it elsewhere against a Supabase project, give the
project's URL and anon key; they are written to dist/config.json.

Options:
  --url URL          project URL (https://<ref>.supabase.co)
  --anon-key KEY     the project's anon / publishable key (never the service key)
  --auth MODE        supabase (email + password sign-in) or token (paste a JWT); default supabase with --url
  --out DIR          output directory (default dashboard/dist)
  -h, --help         this text
`;

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const { values } = parseArgs({
    options: {
      url: { type: "string" },
      "anon-key": { type: "string" },
      auth: { type: "string" },
      out: { type: "string" },
      help: { type: "boolean", short: "h" },
    },
  });
  if (values.help) {
    console.log(USAGE);
    process.exit(0);
  }
  if (Boolean(values.url) !== Boolean(values["anon-key"])) {
    console.error(`--url and --anon-key go together.\n\n${USAGE}`);
    process.exit(2);
  }
  if (values.auth && values.auth !== "token" && values.auth !== "supabase") {
    console.error(`--auth ${values.auth}: expected supabase or token`);
    process.exit(2);
  }
  const config: DashboardConfig | undefined = values.url
    ? { supabaseUrl: values.url, anonKey: values["anon-key"]!, auth: (values.auth as DashboardConfig["auth"]) ?? "supabase" }
    : undefined;
  const out = await buildDashboard({ outDir: values.out && path.resolve(values.out), config });
  console.log(`Built the dashboard in ${path.relative(process.cwd(), out) || "."}${config ? " (with config.json)" : ""}.`);
}
