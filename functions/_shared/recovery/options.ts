// Block reasons, per-task detection thresholds and recovery options (the `blockDetection` and
// `recovery` fields of an execute request), with their defaults in one place.
import { z } from "zod";
import { MAX_WALL_TIME_MS } from "../limits.ts";

/** What a block is; `worker_lost` is found by the lease rescuer, the rest by the worker's monitor. */
export const BLOCK_REASONS = ["timeout", "infinite_loop", "waiting_for_input", "idle_stall", "deadlock", "memory_exhausted", "fork_bomb", "output_flood", "worker_lost"] as const;
export type BlockReason = (typeof BLOCK_REASONS)[number];

export const RECOVERY_ACTIONS = ["terminate", "retry", "reassign", "feed_stdin", "raise_limit", "alternative_command", "give_up"] as const;
export type RecoveryAction = (typeof RECOVERY_ACTIONS)[number];

const ms = (max = 86_400_000) => z.number().int().min(100).max(max);
const percent = () => z.number().min(1).max(100);

export const BlockDetectionSchema = z
  .object({
    /** Watch the task at all. */
    enabled: z.boolean(),
    /** How often the process tree is sampled. */
    sampleIntervalMs: z.number().int().min(50).max(10_000),
    /** `infinite_loop`: CPU at least `busyCpuPercent` of a core, no output, no I/O, this long. */
    infiniteLoopMs: ms(),
    busyCpuPercent: percent(),
    /** `waiting_for_input`: a process reads the stdin pipe, nothing else happens, this long. */
    waitingForInputMs: ms(),
    /** `waiting_for_input` when the last output asks for input (a partial line or a prompt such as
     * `Name: `, `Continue? [y/N]`) and a thread reads the stdin pipe: this long after that output. */
    promptMs: ms(),
    /** `idle_stall`: no CPU, no output, no I/O, no new process, this long. `infiniteLoopMs` and
     * `idleStallMs` left unset are learned from the command's earlier successful runs when it has
     * some (worker/blocks/history.ts); set, they are used as given. */
    idleStallMs: ms(),
    /** `deadlock`: every thread waits on a lock (futex, flock, fcntl) with no progress, this long. */
    deadlockMs: ms(),
    /** `memory_exhausted`: memory at `memoryPercent` of the limit this long (an OOM kill that ends the task is one too). */
    memoryPercent: percent(),
    memoryMs: z.number().int().min(0).max(86_400_000),
    /** `fork_bomb`: processes + threads at `processPercent` of the limit this long, or forks refused. */
    processPercent: percent(),
    forkBombMs: z.number().int().min(0).max(86_400_000),
    /** `output_flood`: output faster than this many bytes/s for `outputFloodMs`, or `outputPercent` of the output limit (100: when the sandbox cuts it). */
    outputBytesPerSecond: z
      .number()
      .int()
      .min(1024)
      .max(1024 ** 4),
    outputFloodMs: ms(),
    outputPercent: percent(),
  })
  .partial()
  .strict();
export type BlockDetectionOptions = Required<z.output<typeof BlockDetectionSchema>>;

/** Defaults (docs/blocks.md explains each choice). */
export const BLOCK_DETECTION_DEFAULTS = {
  enabled: true,
  sampleIntervalMs: 500,
  infiniteLoopMs: 30_000,
  busyCpuPercent: 90,
  waitingForInputMs: 30_000,
  promptMs: 1_500,
  idleStallMs: 60_000,
  deadlockMs: 1_500,
  memoryPercent: 95,
  memoryMs: 1_000,
  processPercent: 90,
  forkBombMs: 500,
  outputBytesPerSecond: 4 * 1024 * 1024,
  outputFloodMs: 5_000,
  outputPercent: 100,
} as const satisfies BlockDetectionOptions;

export const RecoveryOptionsSchema = z
  .object({
    /** Apply the planner's plan without a human; false leaves a blocked task blocked until `POST /tasks/:id/recover` or cancel. */
    automatic: z.boolean(),
    /** Recovery plans per task, over all attempts; then the planner gives up. */
    maxRecoveries: z.number().int().min(0).max(20),
    /** First retry delay; doubles per retry. */
    backoffMs: z.number().int().min(0).max(600_000),
    /** Written to stdin when the task waits for input (e.g. "y\n"); without it stdin is closed. */
    stdinAnswer: z
      .string()
      .max(65_536)
      .refine((s) => !s.includes("\0"), "stdinAnswer contains a NUL byte"),
    /** Run instead (by /bin/sh -c) when the command itself blocks again or cannot be retried. */
    alternativeCommand: z
      .string()
      .min(1)
      .max(100_000)
      .refine((s) => !s.includes("\0"), "alternativeCommand contains a NUL byte"),
    /** Highest limits `raise_limit` may give the task; without one that limit is never raised. */
    limitCeilings: z
      .object({
        wallTimeMs: z.number().int().min(100).max(MAX_WALL_TIME_MS),
        memoryBytes: z
          .number()
          .int()
          .min(16 * 1024 * 1024)
          .max(64 * 1024 ** 3),
      })
      .partial()
      .strict(),
  })
  .partial()
  .strict();
export type RecoveryOptions = z.output<typeof RecoveryOptionsSchema>;

export const RECOVERY_DEFAULTS = {
  automatic: true,
  maxRecoveries: 3,
  backoffMs: 1_000,
} as const;

const MAX_RECOVER_DATA_BYTES = 6000;

/** `POST /tasks/:id/recover`: optionally force one action; otherwise the planner decides. */
export const RecoverRequestSchema = z
  .object({
    action: z.enum(RECOVERY_ACTIONS),
    /** For feed_stdin: what to write; omitted closes stdin. It reaches the worker in a Postgres
     * NOTIFY (payloads < 8000 bytes), hence the cap on its JSON form. */
    data: z
      .string()
      .refine((s) => !s.includes("\0"), "data contains a NUL byte")
      .refine(
        (s) => new TextEncoder().encode(JSON.stringify(s)).length <= MAX_RECOVER_DATA_BYTES,
        `data is over ${MAX_RECOVER_DATA_BYTES} bytes as JSON; write longer input with POST /tasks/:id/stdin`,
      ),
  })
  .partial()
  .strict();
export type RecoverRequest = z.output<typeof RecoverRequestSchema>;

export function detectionOptions(given: Partial<BlockDetectionOptions> | null | undefined): BlockDetectionOptions {
  return { ...BLOCK_DETECTION_DEFAULTS, ...(given ?? {}) };
}
