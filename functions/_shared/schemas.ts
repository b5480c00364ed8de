// Request and message shapes, validated with zod at every edge; the SDK's types come from here.
import { z } from "zod";
import { ARTIFACT_LIMITS, validateArtifactPattern } from "./artifacts/patterns.ts";
import { DEFAULT_WALL_TIME_MS, MAX_CPU_TIME_MS, MAX_FILE_SIZE_BYTES, MAX_OPEN_FILES, MAX_OUTPUT_BYTES, MAX_PROCESSES, MAX_WALL_TIME_MS, MAX_WORKSPACE_BYTES } from "./limits.ts";
import { USER_PRIORITY } from "./plans/limits.ts";
import { validateWorkspacePath } from "./paths.ts";
import { BlockDetectionSchema, RecoveryOptionsSchema } from "./recovery/options.ts";
import { OUTPUT_STREAMS, TASK_STATES } from "./states.ts";

const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]{0,127}$/;
const LABEL = /^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$/;
const KIND = /^[a-z][a-z0-9_-]{0,31}$/;
const noNul = (s: string) => !s.includes("\0");

/**
 * What the system names its own tasks (cogo.start_analysis, cogo.plan_analysis): no user task or
 * plan step may take these, so nothing a user submits can pass for an internal task. Mirrors
 * cogo.reserved_kind / cogo.reserved_step (migrations/20261126000100_task_queue.sql), which
 * refuse them in SQL too. Which tasks are internal is tasks.internal, never a name.
 */
export const RESERVED_KINDS: readonly string[] = ["analysis"];
export const RESERVED_STEP_PREFIX = "analysis-";
export const isReservedStepName = (name: string) => name.toLowerCase().startsWith(RESERVED_STEP_PREFIX);

const PRIORITY_RANGE = `priority is between ${USER_PRIORITY.min} and ${USER_PRIORITY.max} (${USER_PRIORITY.max + 1} and above are the system's re-runs)`;

export const MAX_FILES = 1000;
export const MAX_FILES_BYTES = 32 * 1024 * 1024;

// Each limit at most what a worker gives (functions/_shared/limits.ts), so nothing accepted is cut.
// Memory is checked here only against a sanity bound: the route refuses more than the largest
// budget among the live workers of the task's kind (functions/_shared/admission.ts).
export const LimitsSchema = z
  .object({
    /** Refused: the wall-time limit is the task's `timeoutMs`, one setting. */
    wallTimeMs: z.never({ error: "the wall-time limit is timeoutMs (beside limits), not limits.wallTimeMs" }),
    cpuTimeMs: z.number().int().min(100).max(MAX_CPU_TIME_MS),
    memoryBytes: z
      .number()
      .int()
      .min(16 * 1024 * 1024)
      .max(1024 ** 4),
    processes: z.number().int().min(1).max(MAX_PROCESSES),
    openFiles: z.number().int().min(16).max(MAX_OPEN_FILES),
    fileSizeBytes: z.number().int().min(1024).max(MAX_FILE_SIZE_BYTES),
    workspaceBytes: z
      .number()
      .int()
      .min(1024 * 1024)
      .max(MAX_WORKSPACE_BYTES),
    outputBytes: z.number().int().min(1024).max(MAX_OUTPUT_BYTES),
    /** Past outputBytes: "stop" kills the task (failed, output_limit); "truncate" drops the rest and lets it run. */
    onOutputLimit: z.enum(["stop", "truncate"]),
  })
  .partial()
  .strict();
export type Limits = z.infer<typeof LimitsSchema>;

export const FileSchema = z
  .object({
    path: z.string().transform((p, ctx) => {
      try {
        return validateWorkspacePath(p);
      } catch (e) {
        ctx.addIssue({ code: "custom", message: (e as Error).message });
        return z.NEVER;
      }
    }),
    content: z.string(),
    encoding: z.enum(["utf8", "base64"]).default("utf8"),
    executable: z.boolean().default(false),
  })
  .strict();

export const ArtifactPatternSchema = z.string().transform((p, ctx) => {
  try {
    return validateArtifactPattern(p);
  } catch (e) {
    ctx.addIssue({ code: "custom", message: (e as Error).message });
    return z.NEVER;
  }
});

export const RequirementsSchema = z
  .object({
    kind: z
      .string()
      .regex(KIND, "kind must be lower-case letters, digits, _ or - (e.g. basic, flutter)")
      .refine((k) => !RESERVED_KINDS.includes(k), { error: (iss) => `"${iss.input}" is reserved for the system's own tasks (repository analysis: POST /analyze/repository)` })
      .default("basic"),
    labels: z.array(z.string().regex(LABEL, "labels are letters, digits and . _ : -")).max(32).default([]),
  })
  .strict();

/** Files written into a workspace: capped in count and total size, paths unique. */
export const FilesSchema = z
  .array(FileSchema)
  .max(MAX_FILES)
  .default([])
  .refine((fs) => fs.reduce((n, f) => n + f.content.length, 0) <= MAX_FILES_BYTES, `files total more than ${MAX_FILES_BYTES} bytes`)
  .refine((fs) => new Set(fs.map((f) => f.path)).size === fs.length, "two files have the same path");

/** Env of a task, a sandbox or a command: safe names, bounded values, at most 256. */
export const EnvSchema = z
  .record(z.string(), z.string().max(32_768).refine(noNul, "env value contains a NUL byte"))
  .superRefine((e, ctx) => {
    for (const name of Object.keys(e)) {
      if (!ENV_NAME.test(name)) ctx.addIssue({ code: "custom", path: [name], message: "env names are letters, digits and _, not starting with a digit" });
    }
    if (Object.keys(e).length > 256) ctx.addIssue({ code: "custom", message: "at most 256 env variables" });
  })
  .default({});

export const ExecuteRequestSchema = z
  .object({
    command: z.string().min(1).max(100_000).refine(noNul, "command contains a NUL byte").optional(),
    argv: z.array(z.string().max(100_000).refine(noNul, "argument contains a NUL byte")).min(1).max(1000).optional(),
    files: FilesSchema,
    env: EnvSchema,
    stdin: z.enum(["closed", "pipe"]).default("closed"),
    /** Higher runs first; the user range is USER_PRIORITY (above it are the system's re-runs). */
    priority: z.number().int().min(USER_PRIORITY.min, PRIORITY_RANGE).max(USER_PRIORITY.max, PRIORITY_RANGE).default(0),
    /** Wall-time limit of the task, in ms: the sandbox is killed past it (status timed_out). */
    timeoutMs: z.number().int().min(100).max(MAX_WALL_TIME_MS).default(DEFAULT_WALL_TIME_MS),
    maxAttempts: z.number().int().min(1).max(20).default(3),
    limits: LimitsSchema.default({}),
    requirements: RequirementsSchema.default({ kind: "basic", labels: [] }),
    idempotencyKey: z.string().min(1).max(200).optional(),
    /** Block detection thresholds (functions/_shared/recovery/options.ts has the defaults). */
    blockDetection: BlockDetectionSchema.optional(),
    recovery: RecoveryOptionsSchema.optional(),
    /** Workspace paths or globs collected after exit; see GET /tasks/:id/artifacts. */
    artifacts: z.array(ArtifactPatternSchema).max(ARTIFACT_LIMITS.patterns).default([]),
    /** Network for the task; only granted by workers started with --allow-network. */
    network: z.boolean().default(false),
  })
  .strict()
  .refine((r) => (r.command === undefined) !== (r.argv === undefined), {
    message: "give exactly one of command (run by /bin/sh -c in the sandbox) or argv",
    path: ["command"],
  });
export type ExecuteRequest = z.input<typeof ExecuteRequestSchema>;
export type ExecuteSpec = z.output<typeof ExecuteRequestSchema>;

export const RegisterWorkerSchema = z
  .object({
    name: z.string().regex(/^[A-Za-z0-9][A-Za-z0-9._:-]{0,99}$/, "name is letters, digits and . _ : -"),
    kind: z.string().regex(KIND).default("basic"),
    labels: z.array(z.string().regex(LABEL)).max(32).default([]),
    capacity: z.number().int().min(1).max(1000).default(4),
    leaseMs: z.number().int().min(1000).max(3_600_000).default(15_000),
    version: z.string().max(100).optional(),
    host: z.record(z.string(), z.unknown()).default({}),
    /** Memory the worker's tasks may hold at once (host admission); without it the worker claims without admission. */
    memoryBudgetBytes: z
      .number()
      .int()
      .min(16 * 1024 * 1024)
      .optional(),
    /** Cores the worker's tasks share (shown in the fleet; tasks are not admitted on CPU). */
    cpuBudget: z.number().positive().max(100_000).optional(),
  })
  .strict();
export type RegisterWorker = z.input<typeof RegisterWorkerSchema>;

export const StdinRequestSchema = z
  .object({
    data: z
      .string()
      .max(1024 * 1024)
      .refine(noNul, "data contains a NUL byte")
      .default(""),
    eof: z.boolean().default(false),
  })
  .strict();

export const PageQuerySchema = z.object({
  after: z.coerce.number().int().min(0).default(0),
  limit: z.coerce.number().int().min(1).max(10_000).default(1000),
});

export const TaskStatusSchema = z.enum(TASK_STATES);
export const OutputStreamSchema = z.enum(OUTPUT_STREAMS);

/** One row of output: `sequence` is per task, from 1, gap-free. */
export interface OutputChunk {
  sequence: number;
  stream: (typeof OUTPUT_STREAMS)[number];
  data: string;
  timestamp: string;
}

/**
 * Broadcast event `realtime_output` on topic `task:<id>`. One message carries one or more
 * consecutive chunks (the worker batches up to 20 ms or 64 KiB of output per message).
 */
export interface OutputMessage {
  taskId: string;
  attempt: number;
  chunks: OutputChunk[];
}

/** Broadcast on `task:<id>` with the event name = `type` (task_status, progress_update, …). */
export interface TaskEventMessage {
  taskId: string;
  seq: number;
  attempt: number;
  type: string;
  data: Record<string, unknown>;
  timestamp: string;
}

export const TASK_TOPIC_PREFIX = "task:";
export const taskTopic = (taskId: string) => TASK_TOPIC_PREFIX + taskId;

/** "field.path: message; …" — what a 400 says. */
export function describeZodError(error: z.ZodError): string {
  return error.issues.map((i) => `${i.path.length ? i.path.join(".") : "body"}: ${i.message}`).join("; ");
}

// ── persistent sandboxes (issue 19; migrations/20261207000100_sandboxes.sql) ─────────────────
/** Defaults and bounds of a sandbox's two clocks (docs/sandboxes.md, "Persistent sandboxes"). */
export const SANDBOX_DEFAULTS = { idleTimeoutMs: 300_000, maxLifetimeMs: MAX_WALL_TIME_MS } as const;
const SANDBOX_CLOCK_MS = z.number().int().min(1000).max(MAX_WALL_TIME_MS);

export const CreateSandboxRequestSchema = z
  .object({
    /** Cover the whole sandbox: memory, processes and disk of every command and what it left running. */
    limits: LimitsSchema.default({}),
    requirements: RequirementsSchema.default({ kind: "basic", labels: [] }),
    /** Every command's env (a command's own env overrides it). */
    env: EnvSchema,
    /** Stopped after this long with no command running. @default 300000 (5 min) */
    idleTimeoutMs: SANDBOX_CLOCK_MS.default(SANDBOX_DEFAULTS.idleTimeoutMs),
    /** Stopped this long after creation, whatever runs. @default 3600000 (1 h, the most) */
    maxLifetimeMs: SANDBOX_CLOCK_MS.default(SANDBOX_DEFAULTS.maxLifetimeMs),
    metadata: z.record(z.string(), z.unknown()).default({}),
    /**
     * Refused in this version (design risk R1): a networked sandbox would share the host's
     * loopback, so a server one sandbox leaves listening would be reachable from the others.
     */
    network: z
      .boolean()
      .default(false)
      .refine(
        (n) => !n,
        "persistent sandboxes run without network in this version: a server left on a networked sandbox's loopback would be reachable from other sandboxes on the worker",
      ),
  })
  .strict();
export type CreateSandboxRequest = z.input<typeof CreateSandboxRequestSchema>;

export const PatchSandboxRequestSchema = z.object({ idleTimeoutMs: SANDBOX_CLOCK_MS }).strict();

/** A command's working directory: absolute, resolved inside the sandbox. */
const CwdSchema = z
  .string()
  .max(4096)
  .refine((c) => c.startsWith("/") && noNul(c), "cwd must be an absolute path");

export const CommandRequestSchema = z
  .object({
    command: z.string().min(1).max(100_000).refine(noNul, "command contains a NUL byte").optional(),
    argv: z.array(z.string().max(100_000).refine(noNul, "argument contains a NUL byte")).min(1).max(1000).optional(),
    /** Absolute, resolved inside the sandbox. @default "/workspace" */
    cwd: CwdSchema.optional(),
    env: EnvSchema,
    stdin: z.enum(["closed", "pipe"]).default("closed"),
    priority: z.number().int().min(USER_PRIORITY.min, PRIORITY_RANGE).max(USER_PRIORITY.max, PRIORITY_RANGE).default(0),
    timeoutMs: z.number().int().min(100).max(MAX_WALL_TIME_MS).default(DEFAULT_WALL_TIME_MS),
    /** Keep what it starts running after its leader exits (a dev server); else leftovers are killed. */
    background: z.boolean().default(false),
    idempotencyKey: z.string().min(1).max(200).optional(),
    blockDetection: BlockDetectionSchema.optional(),
    recovery: RecoveryOptionsSchema.optional(),
  })
  .strict()
  .refine((r) => (r.command === undefined) !== (r.argv === undefined), {
    message: "give exactly one of command (run by /bin/sh -c in the sandbox) or argv",
    path: ["command"],
  });
export type CommandRequest = z.input<typeof CommandRequestSchema>;

/** A terminal's size in characters (cogo.check_pty_size allows the same). */
export const PTY_SIZE = { min: 1, max: 1000 } as const;
const ptyDimension = (name: string) =>
  z
    .number({ error: `${name} is a number of characters (${PTY_SIZE.min} to ${PTY_SIZE.max})` })
    .int(`${name} is a whole number of characters`)
    .min(PTY_SIZE.min, `${name} is at least ${PTY_SIZE.min}`)
    .max(PTY_SIZE.max, `${name} is at most ${PTY_SIZE.max}`);

/** `POST /sandboxes/:id/pty`: a terminal in the sandbox (a command with a pty; its task routes apply). */
export const PtyRequestSchema = z
  .object({
    cols: ptyDimension("cols"),
    rows: ptyDimension("rows"),
    /** Run by /bin/sh -c on the terminal. @default bash -i (sh -i without bash) */
    command: z.string().min(1).max(100_000).refine(noNul, "command contains a NUL byte").optional(),
    /** Absolute, resolved inside the sandbox. @default "/workspace" */
    cwd: CwdSchema.optional(),
    /** Over the sandbox's env; TERM is xterm-256color unless given. */
    env: EnvSchema,
    /** The terminal is closed (its processes killed) after this long. @default 3,600,000 (the most a sandbox lives) */
    timeoutMs: z.number().int().min(100).max(MAX_WALL_TIME_MS).default(MAX_WALL_TIME_MS),
  })
  .strict();
export type PtyRequest = z.input<typeof PtyRequestSchema>;

/** `POST /tasks/:id/resize`: a terminal's new size. */
export const ResizeRequestSchema = z.object({ cols: ptyDimension("cols"), rows: ptyDimension("rows") }).strict();

export const SANDBOX_TOPIC_PREFIX = "sandbox:";
export const sandboxTopic = (sandboxId: string) => SANDBOX_TOPIC_PREFIX + sandboxId;
