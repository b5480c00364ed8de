// Worker options: every field documented with its default and the env var it falls back to.
import { hostname } from "node:os";
import { parseArgs } from "node:util";
import { CogoError } from "../functions/_shared/errors.ts";
import { MIN_BUDGET_BYTES, parseBytes } from "./budget.ts";
import type { CgroupMode } from "./sandbox/cgroups.ts";
import type { SandboxOptions } from "./sandbox/options.ts";

export class WorkerConfigError extends CogoError {}

export interface WorkerOptions {
  /** Postgres URL (the worker talks to the database only). @default env SUPABASE_DB_URL (required) */
  databaseUrl: string;
  /** Shown in the fleet. @default env COGO_WORKER_NAME, else `<hostname>-<pid>` */
  name: string;
  /** Worker kind tasks ask for (`requirements.kind`). @default env COGO_WORKER_KIND, else "basic" */
  kind: string;
  /** Labels tasks may require (`requirements.labels`). @default env COGO_WORKER_LABELS (comma list), else [] */
  labels: string[];
  /** Tasks run at once. @default env COGO_CONCURRENCY, else 4 */
  concurrency: number;
  /**
   * Memory the limits of the tasks this worker holds may add up to (host admission): it claims a
   * task only while its `limits.memoryBytes` (default 1 GiB) fits what is left, and gives one task
   * at most this much. @default env COGO_MEMORY_BUDGET, else host memory (or the worker's cgroup
   * limit, if lower) less 1 GiB + 10 % for the worker and the kernel, and another 1 GiB + 15 %
   * when Postgres runs on this host; at least 1 GiB (worker/budget.ts)
   */
  memoryBudgetBytes: number | undefined;
  /** Lease on a claimed task; heartbeats renew it every leaseMs/3. @default env COGO_LEASE_MS, else 15000 */
  leaseMs: number;
  /** Poll for work this often even without a NOTIFY. @default 1000 */
  pollIntervalMs: number;
  /** How often this worker rescues tasks of dead workers. @default 1000 */
  rescueIntervalMs: number;
  /**
   * How often the maintenance service runs (retention, tasks of unserved kinds; one runner at a
   * time across the fleet, worker/maintenance/retention.ts); 0: not in this worker.
   * @default env COGO_MAINTENANCE_INTERVAL_MS, else 60000
   */
  maintenanceIntervalMs: number;
  /** Rows the maintenance service deletes per statement. @default env COGO_RETENTION_BATCH, else 1000 */
  retentionBatch: number;
  /** On SIGTERM, wait this long for running tasks before killing and re-queueing them. @default env COGO_GRACE_MS, else 30000 */
  graceMs: number;
  /** Output: at most one Realtime message per task per this many ms while output keeps coming. @default 20 */
  flushIntervalMs: number;
  /** Where task workspaces live. @default env COGO_WORKSPACE_ROOT, else /var/tmp/cogo-workspaces */
  workspaceRoot: string;
  /** Let tasks that ask for it use the network. @default env COGO_ALLOW_NETWORK=1, else false */
  allowNetwork: boolean;
  /**
   * Cgroups for task limits: "auto" (v1 controllers when mounted, else v2), "v1", "v2", or "off"
   * (rlimits only). @default env COGO_CGROUPS, else "auto"
   */
  cgroups: "auto" | "v1" | "v2" | "off";
  /** First host uid for sandboxes (one per slot) when the worker runs as root. @default 200000 */
  sandboxUidBase: number;
  /**
   * Sandbox options over the ones the worker derives (root, uid, network, cgroups, pool, slots):
   * for embedding, e.g. `{ slotWaitMs: 5000 }`. @default {}
   */
  sandbox: Partial<Omit<SandboxOptions, "root">>;
  /** Log lines. @default console.error with a timestamp */
  log: (line: string) => void;
}

export const WORKER_DEFAULTS = {
  kind: "basic",
  labels: [] as string[],
  concurrency: 4,
  leaseMs: 15_000,
  pollIntervalMs: 1000,
  rescueIntervalMs: 1000,
  maintenanceIntervalMs: 60_000,
  retentionBatch: 1000,
  graceMs: 30_000,
  flushIntervalMs: 20,
  workspaceRoot: "/var/tmp/cogo-workspaces",
  allowNetwork: false,
  cgroups: "auto" as WorkerOptions["cgroups"],
  sandboxUidBase: 200_000,
  sandbox: {},
} satisfies Partial<WorkerOptions>;

const defaultLog = (line: string) => console.error(`${new Date().toISOString()} ${line}`);

function bytes(name: string, value: string | undefined): number | undefined {
  if (value === undefined || value === "") return undefined;
  const n = parseBytes(value);
  if (n === undefined || n < MIN_BUDGET_BYTES) {
    throw new WorkerConfigError("bad_option", `${name}=${value}: expected a size of at least 16MiB, in bytes or with K, M, G or T (powers of 1024: 8G = 8GiB)`);
  }
  return n;
}

function int(name: string, value: string | undefined, min: number, max: number): number | undefined {
  if (value === undefined || value === "") return undefined;
  const n = Number(value);
  if (!Number.isInteger(n) || n < min || n > max) throw new WorkerConfigError("bad_option", `${name}=${value}: expected a whole number from ${min} to ${max}`);
  return n;
}

const CGROUP_MODES = ["auto", "v1", "v2", "off"] as const;

function cgroupsMode(name: string, value: string | undefined): WorkerOptions["cgroups"] | undefined {
  if (value === undefined || value === "") return undefined;
  if (!(CGROUP_MODES as readonly string[]).includes(value)) throw new WorkerConfigError("bad_option", `${name}=${value}: expected one of ${CGROUP_MODES.join(", ")}`);
  return value as WorkerOptions["cgroups"];
}

/** The sandbox option for a worker's cgroups mode. */
export const sandboxCgroups = (mode: WorkerOptions["cgroups"]): CgroupMode => (mode === "off" ? false : mode);

/** COGO_CGROUPS as a worker reads it, for code that starts sandboxes beside workers (bench, tests). */
export const envCgroups = (env: NodeJS.ProcessEnv = process.env): CgroupMode => sandboxCgroups(cgroupsMode("COGO_CGROUPS", env.COGO_CGROUPS) ?? WORKER_DEFAULTS.cgroups);

export function resolveWorkerOptions(partial: Partial<WorkerOptions>, env: NodeJS.ProcessEnv = process.env): WorkerOptions {
  const databaseUrl = partial.databaseUrl ?? env.SUPABASE_DB_URL;
  if (!databaseUrl) {
    throw new WorkerConfigError("missing_database_url", "SUPABASE_DB_URL is not set: point the worker at Postgres (npm start writes it to .env.local)");
  }
  const labelsEnv = env.COGO_WORKER_LABELS?.split(",")
    .map((s) => s.trim())
    .filter(Boolean);
  // Fields without an env fallback (poll/rescue/flush intervals, uid base) come straight from `partial`.
  const given = Object.fromEntries(Object.entries(partial).filter(([, v]) => v !== undefined));
  const opts: WorkerOptions = {
    ...WORKER_DEFAULTS,
    ...given,
    databaseUrl,
    name: partial.name ?? env.COGO_WORKER_NAME ?? `${hostname()}-${process.pid}`,
    kind: partial.kind ?? env.COGO_WORKER_KIND ?? WORKER_DEFAULTS.kind,
    labels: partial.labels ?? labelsEnv ?? WORKER_DEFAULTS.labels,
    concurrency: partial.concurrency ?? int("COGO_CONCURRENCY", env.COGO_CONCURRENCY, 1, 1000) ?? WORKER_DEFAULTS.concurrency,
    memoryBudgetBytes: partial.memoryBudgetBytes ?? bytes("COGO_MEMORY_BUDGET", env.COGO_MEMORY_BUDGET),
    leaseMs: partial.leaseMs ?? int("COGO_LEASE_MS", env.COGO_LEASE_MS, 1000, 3_600_000) ?? WORKER_DEFAULTS.leaseMs,
    graceMs: partial.graceMs ?? int("COGO_GRACE_MS", env.COGO_GRACE_MS, 0, 3_600_000) ?? WORKER_DEFAULTS.graceMs,
    maintenanceIntervalMs:
      partial.maintenanceIntervalMs ?? int("COGO_MAINTENANCE_INTERVAL_MS", env.COGO_MAINTENANCE_INTERVAL_MS, 0, 86_400_000) ?? WORKER_DEFAULTS.maintenanceIntervalMs,
    retentionBatch: partial.retentionBatch ?? int("COGO_RETENTION_BATCH", env.COGO_RETENTION_BATCH, 1, 100_000) ?? WORKER_DEFAULTS.retentionBatch,
    workspaceRoot: partial.workspaceRoot ?? env.COGO_WORKSPACE_ROOT ?? WORKER_DEFAULTS.workspaceRoot,
    allowNetwork: partial.allowNetwork ?? env.COGO_ALLOW_NETWORK === "1",
    cgroups: cgroupsMode("COGO_CGROUPS", partial.cgroups ?? env.COGO_CGROUPS) ?? WORKER_DEFAULTS.cgroups,
    log: partial.log ?? defaultLog,
  };
  if (opts.memoryBudgetBytes !== undefined && (!Number.isSafeInteger(opts.memoryBudgetBytes) || opts.memoryBudgetBytes < MIN_BUDGET_BYTES)) {
    throw new WorkerConfigError("bad_option", `memoryBudgetBytes must be a whole number of bytes ≥ 16 MiB, got ${opts.memoryBudgetBytes}`);
  }
  if (!Number.isInteger(opts.concurrency) || opts.concurrency < 1) throw new WorkerConfigError("bad_option", `concurrency must be ≥ 1, got ${opts.concurrency}`);
  if (!/^[a-z][a-z0-9_-]{0,31}$/.test(opts.kind)) throw new WorkerConfigError("bad_option", `kind ${JSON.stringify(opts.kind)}: lower-case letters, digits, _ or -`);
  return opts;
}

export const WORKER_USAGE = `Usage: npm run worker -- [options]

Runs tasks from the COGO queue in bubblewrap sandboxes. Needs SUPABASE_DB_URL (npm start writes
it to .env.local; the worker reads that file when the variable is not set).

Options:
  --concurrency N     tasks at once (env COGO_CONCURRENCY, default 4)
  --memory-budget SIZE
                      memory the limits of this worker's tasks may add up to; it claims a task
                      only while its limits.memoryBytes (default 1 GiB) fits what is left, and one
                      task gets at most SIZE (bytes, or 512M, 16G: powers of 1024). Default (env
                      COGO_MEMORY_BUDGET): host memory, or the worker's cgroup limit if lower,
                      less 1 GiB + 10 % for the worker and kernel, and 1 GiB + 15 % more when
                      Postgres runs on this host; at least 1 GiB. Give each worker its share when
                      several run on one host. The worker logs the figure at start.
  --kind KIND         worker kind tasks ask for (env COGO_WORKER_KIND, default basic)
  --labels a,b        labels tasks may require (env COGO_WORKER_LABELS)
  --name NAME         name in the fleet (env COGO_WORKER_NAME, default <host>-<pid>)
  --lease-ms MS       task lease; renewed every MS/3 (env COGO_LEASE_MS, default 15000)
  --grace-ms MS       on SIGTERM wait this long for running tasks (env COGO_GRACE_MS, default 30000)
  --maintenance-interval-ms MS
                      retention and unserved-kind checks this often, one worker of the fleet at a
                      time; 0: not in this worker (env COGO_MAINTENANCE_INTERVAL_MS, default 60000)
  --allow-network     let tasks that ask for network have it (env COGO_ALLOW_NETWORK=1)
  --cgroups MODE      auto (v1 controllers if mounted, else v2), v1, v2 or off: rlimits only
                      (env COGO_CGROUPS, default auto); the worker logs what is in force
  -h, --help          this text
`;

export function parseWorkerArgs(argv: string[]): Partial<WorkerOptions> | "help" {
  const { values } = parseArgs({
    args: argv,
    options: {
      concurrency: { type: "string" },
      "memory-budget": { type: "string" },
      kind: { type: "string" },
      labels: { type: "string" },
      name: { type: "string" },
      "lease-ms": { type: "string" },
      "grace-ms": { type: "string" },
      "maintenance-interval-ms": { type: "string" },
      "allow-network": { type: "boolean" },
      cgroups: { type: "string" },
      help: { type: "boolean", short: "h" },
    },
    strict: true,
  });
  if (values.help) return "help";
  return {
    concurrency: int("--concurrency", values.concurrency, 1, 1000),
    memoryBudgetBytes: bytes("--memory-budget", values["memory-budget"]),
    kind: values.kind,
    labels: values.labels
      ?.split(",")
      .map((s) => s.trim())
      .filter(Boolean),
    name: values.name,
    leaseMs: int("--lease-ms", values["lease-ms"], 1000, 3_600_000),
    graceMs: int("--grace-ms", values["grace-ms"], 0, 3_600_000),
    maintenanceIntervalMs: int("--maintenance-interval-ms", values["maintenance-interval-ms"], 0, 86_400_000),
    allowNetwork: values["allow-network"],
    cgroups: cgroupsMode("--cgroups", values.cgroups),
  };
}
