// `npm start`: the whole product on this machine — Postgres, migrations, edge functions in Deno,
// the Realtime endpoint, and a worker — like `supabase start` plus our worker.
import { execFileSync, spawn, type ChildProcess } from "node:child_process";
import { statSync } from "node:fs";
import { rename, writeFile } from "node:fs/promises";
import path from "node:path";
import { parseArgs } from "node:util";
import { mintUserToken } from "../embedded/keys.ts";
import { ownSignals } from "../embedded/postgres.ts";
import { PROJECT_ROOT, resolveDataDir, startStack } from "../embedded/stack.ts";
import { DEFAULT_MEMORY_BYTES } from "../functions/_shared/limits.ts";
import { computeBudget, readHostResources } from "../worker/budget.ts";
import { ignorePostgresClosedSocketWrites } from "../worker/process-guard.ts";
import { connect } from "../functions/_shared/db.ts";
import { buildDashboard } from "./build-dashboard.ts";
import { applyAnalysisRoots, describeAnalysisSources, startAnalysisRoots } from "./start-analysis.ts";

ignorePostgresClosedSocketWrites();

/** The dashboard URL signs in as the CLI's dev user (sdk/cli.ts), so `npm run cogo` tasks show up there. */
const DASHBOARD_USER = "00000000-0000-4000-8000-000000000001";
const DASHBOARD_TOKEN_TTL_S = 24 * 3600;

const USAGE = `Usage: npm start -- [options]

Starts COGO Sandbox on this machine: PostgreSQL 17, the edge functions (Deno), the Realtime
endpoint and workers. Prints the URLs and keys and writes them to .env.local. Ctrl-C stops all.

Options:
  --reset           wipe the data directory first (all tasks, keys)
  --workers N       worker processes to start (default 1; 0 for none)
  --concurrency N   tasks per worker (default 4)
                    Workers share the host's memory budget (docs/fairness.md, Host
                    admission): the analysis worker gets 5 GiB, the others split the rest
                    (COGO_MEMORY_BUDGET overrides, per worker).
  --analysis-root DIR
                    repository analysis may read local git repositories under DIR (repeatable;
                    default: the directory npm start is run from; "none" for no local paths)
  --analysis-offline
                    the analysis worker gets no network (no https sources)
  --verbose         show Postgres, function and worker logs
  -h, --help        this text

Environment: COGO_DATA_DIR (default /var/tmp/cogo-sandbox), COGO_DB_PORT (default 54322),
COGO_API_PORT (default 54321).
`;

const { values } = (() => {
  try {
    return parseArgs({
      options: {
        reset: { type: "boolean" },
        workers: { type: "string", default: "1" },
        concurrency: { type: "string", default: "4" },
        "analysis-root": { type: "string", multiple: true },
        "analysis-offline": { type: "boolean" },
        verbose: { type: "boolean" },
        help: { type: "boolean", short: "h" },
      },
    });
  } catch (err) {
    console.error(`${(err as Error).message}\n\n${USAGE}`);
    process.exit(2);
  }
})();
if (values.help) {
  console.log(USAGE);
  process.exit(0);
}
const workerCount = Number(values.workers);
if (!Number.isInteger(workerCount) || workerCount < 0 || workerCount > 64) {
  console.error(`--workers ${values.workers}: expected 0 to 64`);
  process.exit(2);
}

/**
 * Workers need bubblewrap and python3's seccomp bindings (the launcher builds each sandbox's
 * syscall filter with them). As root on Debian/Ubuntu, install what is missing, saying so; else
 * say how.
 */
function ensureSandboxTools(): void {
  const has = (cmd: string, args: string[]) => {
    try {
      execFileSync(cmd, args, { stdio: "ignore" });
      return true;
    } catch {
      return false;
    }
  };
  const missing = [...(has("bwrap", ["--version"]) ? [] : ["bubblewrap"]), ...(has("python3", ["-c", "import seccomp"]) ? [] : ["python3-seccomp"])];
  if (missing.length === 0) return;
  if (process.getuid?.() === 0 && has("apt-get", ["--version"])) {
    console.error(`${missing.join(" and ")} missing; installing with apt-get…`);
    execFileSync("apt-get", ["update", "-qq"], { stdio: "inherit" });
    execFileSync("apt-get", ["install", "-y", "-qq", ...missing], { stdio: "inherit", env: { ...process.env, DEBIAN_FRONTEND: "noninteractive" } });
    return;
  }
  console.error(
    `Workers run tasks in bubblewrap sandboxes under a seccomp filter; missing: ${missing.join(", ")}. Install (Debian/Ubuntu: sudo apt-get install ${missing.join(" ")}) and run npm start again, or use --workers 0.`,
  );
  process.exit(1);
}

// npm sets INIT_CWD to where `npm start` was typed; it runs this script in the checkout.
const analysisRoots = startAnalysisRoots(values["analysis-root"], process.env.INIT_CWD ?? process.cwd());
const analysisNetwork = !values["analysis-offline"];
for (const root of analysisRoots) {
  if (!statSync(root, { throwIfNoEntry: false })?.isDirectory()) {
    console.error(`--analysis-root ${root}: not a directory`);
    process.exit(2);
  }
}
if (workerCount > 0) ensureSandboxTools();
const t0 = performance.now();
const log = values.verbose ? (l: string) => console.error(l) : () => {};
console.error(values.reset ? "Wiping data and starting COGO Sandbox…" : "Starting COGO Sandbox…");
let stack: Awaited<ReturnType<typeof startStack>>;
const dashboardBuilt = buildDashboard().then(
  () => true,
  (err) => (console.error(`The dashboard did not build (${err instanceof Error ? err.message : err}); the rest runs without it.`), false),
);
/**
 * A local database made by the migrations of 20261125, which were squashed into those of 20261126
 * before anything was deployed, cannot be migrated forward. It holds only local test data: it is
 * moved aside (not deleted) and a fresh one made, saying so.
 */
async function startMovingSquashedAside(): Promise<Awaited<ReturnType<typeof startStack>>> {
  try {
    return await startStack({ reset: values.reset, log });
  } catch (err) {
    const e = err as { code?: string; details?: { versions?: string[] } };
    const versions = e.details?.versions ?? [];
    if (e.code !== "migration_history_squashed" || versions.length === 0 || !versions.every((v) => v.startsWith("20261125"))) throw err;
    const dir = resolveDataDir();
    const aside = `${dir}.pre-squash-${new Date().toISOString().replace(/[:.]/g, "-")}`;
    await rename(dir, aside);
    console.error(`This data directory was made by an older COGO Sandbox whose migrations have since been squashed: moved it to ${aside} and starting with a fresh one.`);
    return await startStack({ log });
  }
}

try {
  stack = await startMovingSquashedAside();
} catch (err) {
  console.error(`Could not start: ${err instanceof Error ? err.message : err}`);
  if ((err as { code?: string }).code === "migration_failed") {
    // Typically a data directory migrated by another checkout whose migrations differ.
    console.error(
      "If this data directory was set up by another version of COGO Sandbox, start afresh with `npm start -- --reset` (wipes it), or set COGO_DATA_DIR to a new directory.",
    );
  }
  process.exit(1);
}

{
  const sql = connect(stack.dbUrl, { max: 1 });
  await applyAnalysisRoots(sql, analysisRoots);
  await sql.end();
}

const env = {
  SUPABASE_URL: stack.apiUrl,
  SUPABASE_ANON_KEY: stack.keys.anonKey,
  SUPABASE_SERVICE_ROLE_KEY: stack.keys.serviceRoleKey,
  SUPABASE_DB_URL: stack.dbUrl,
  SUPABASE_JWT_SECRET: stack.keys.jwtSecret,
};
await writeFile(
  path.join(PROJECT_ROOT, ".env.local"),
  "# Written by npm start; points the SDK, CLI and workers at the embedded default.\n" +
    Object.entries(env)
      .map(([k, v]) => `${k}=${v}`)
      .join("\n") +
    "\n",
  { mode: 0o600 },
);

// One host budget (worker/budget.ts; Postgres is local) shared by every worker started here: each
// would otherwise count the whole host as its own. The analysis worker gets 5 GiB, enough for the
// largest clone sandbox (workspace 2 × 2 GiB + 64 MiB, plus 512 MiB: worker/analysis/clone.ts);
// the others split the rest. COGO_MEMORY_BUDGET, when set, applies to each instead.
const ANALYSIS_CONCURRENCY = 2;
const budgetArgs = (bytes: number) => (process.env.COGO_MEMORY_BUDGET ? [] : ["--memory-budget", String(bytes)]);
const hostBudget = computeBudget(await readHostResources(), { databaseLocal: true }).memoryBytes;
const analysisBudget = 5 * 1024 ** 3;
const workerBudget = Math.max(DEFAULT_MEMORY_BYTES, Math.floor((hostBudget - analysisBudget) / Math.max(1, workerCount) / 1048576) * 1048576);
const workers: ChildProcess[] = [];
for (let i = 0; i < workerCount; i++) {
  const child = spawn(
    process.execPath,
    [
      "--import",
      "tsx",
      path.join(PROJECT_ROOT, "worker", "main.ts"),
      "--concurrency",
      String(values.concurrency),
      ...budgetArgs(workerBudget),
      "--name",
      `local-${i + 1}`,
      "--grace-ms",
      "5000",
    ],
    { env: { ...process.env, SUPABASE_DB_URL: stack.dbUrl }, stdio: ["ignore", "inherit", "inherit"] },
  );
  workers.push(child);
}
// Repository analysis tasks (kind `analysis`) need a worker of their own kind.
if (workerCount > 0) {
  workers.push(
    spawn(
      process.execPath,
      [
        "--import",
        "tsx",
        path.join(PROJECT_ROOT, "worker", "main.ts"),
        "--kind",
        "analysis",
        ...(analysisNetwork ? ["--allow-network"] : []),
        "--concurrency",
        String(ANALYSIS_CONCURRENCY),
        ...budgetArgs(analysisBudget),
        "--name",
        "local-analysis",
        "--grace-ms",
        "5000",
      ],
      { env: { ...process.env, SUPABASE_DB_URL: stack.dbUrl }, stdio: ["ignore", "inherit", "inherit"] },
    ),
  );
}

const dashboardUrl = (await dashboardBuilt)
  ? `${stack.apiUrl}/dashboard/#token=${await mintUserToken(stack.keys.jwtSecret, DASHBOARD_USER, DASHBOARD_TOKEN_TTL_S)}`
  : "not built (npm run dashboard:build)";

console.log(`
COGO Sandbox is running (embedded default, started in ${((performance.now() - t0) / 1000).toFixed(1)} s).

         API URL: ${stack.apiUrl}
   Functions URL: ${stack.apiUrl}/functions/v1/sandbox
    Realtime URL: ${stack.apiUrl.replace("http", "ws")}/realtime/v1
          DB URL: ${stack.dbUrl}
   (as postgres): ${stack.postgresUrl}  (not a superuser: migrations run as it, like \`supabase db push\`)
        anon key: ${stack.keys.anonKey}
service_role key: ${stack.keys.serviceRoleKey}
      JWT secret: ${stack.keys.jwtSecret}
         Workers: ${workerCount} × basic, concurrency ${values.concurrency}${workerCount > 0 ? " (+ 1 × analysis)" : ""}
        Data dir: ${stack.dataDir}
        Analysis: ${describeAnalysisSources(analysisRoots, analysisNetwork)}
       Dashboard: ${dashboardUrl}
                  (signed in as the CLI's dev user for 24 h; npm run token -- <uuid> mints others)

Wrote .env.local. Try, in another terminal:
  npm run cogo -- run -- 'echo hello from the sandbox; uname -a'
  curl -s ${stack.apiUrl}/functions/v1/sandbox/health -H "Authorization: Bearer $(grep ANON .env.local | cut -d= -f2)"
  curl -s ${stack.apiUrl}/functions/v1/sandbox/metrics -H "Authorization: Bearer $(grep SERVICE_ROLE .env.local | cut -d= -f2)"
Ctrl-C stops everything.`);

let stopping = false;
const shutdown = async (sig: string) => {
  if (stopping) return;
  stopping = true;
  console.error(`\n${sig}: stopping workers, functions, Realtime and Postgres…`);
  await Promise.all(workers.map((w) => new Promise((resolve) => (w.exitCode !== null ? resolve(null) : (w.once("exit", resolve), w.kill("SIGTERM"))))));
  await stack.stop();
  console.error("Stopped.");
  process.exit(0);
};
// From here on this process stops everything in order: workers first, then the stack.
ownSignals();
for (const sig of ["SIGINT", "SIGTERM", "SIGHUP"] as const) process.on(sig, () => void shutdown(sig));
for (const w of workers) {
  w.on("exit", (code) => {
    if (!stopping) console.error(`a worker exited (code ${code}); the rest keep running. Restart with npm start.`);
  });
}
