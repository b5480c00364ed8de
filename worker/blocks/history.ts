// Windows learned from a command's earlier successful runs. Pure: the worker reads the history row
// (cogo.command_history, migration 20261208000200) when it starts a task and passes the result to
// the classifier; it writes the row back when the task succeeds.
import { createHash } from "node:crypto";
import type { BlockDetectionOptions } from "../../functions/_shared/recovery/options.ts";

/** The window is this many times the longest stretch a successful run showed... */
export const HISTORY_FACTOR = 3;
/** ...but never below this: sampling jitter and a loaded machine stretch a healthy run. */
export const HISTORY_FLOOR_MS = 5_000;

export interface CommandHistory {
  /** Successful runs recorded. */
  runs: number;
  /** Longest silent-busy stretch (CPU, no output, no I/O) of any recorded run. */
  maxBusyMs: number;
  /** Longest silent-idle stretch (no CPU, no output, no I/O) of any recorded run. */
  maxQuietMs: number;
}

/**
 * The key a task's history is kept under: a plan's step by its name (its command may be
 * templated), else the command with its whitespace normalized. Hashed: commands run to 100 KB.
 */
export function commandKey(task: { step: string | null; planId: string | null; command: string | null; argv: string[] | null }): string {
  const command = (task.command ?? JSON.stringify(task.argv ?? [])).trim().replace(/\s+/g, " ");
  const key = task.planId && task.step ? `step:${task.step}\0${command}` : `command:${command}`;
  return createHash("sha256").update(key).digest("hex");
}

const learn = (stretchMs: number, defaultMs: number) => Math.min(defaultMs, Math.max(HISTORY_FLOOR_MS, Math.ceil(stretchMs * HISTORY_FACTOR)));

/**
 * The detection options for a task: the loop and stall windows from history when the command has
 * succeeded before and the user did not set them; everything else as resolved already.
 */
export function learnedWindows(resolved: BlockDetectionOptions, given: Partial<BlockDetectionOptions> | null | undefined, history: CommandHistory | null): BlockDetectionOptions {
  if (!history || history.runs < 1) return resolved;
  return {
    ...resolved,
    ...(given?.infiniteLoopMs === undefined ? { infiniteLoopMs: learn(history.maxBusyMs, resolved.infiniteLoopMs) } : {}),
    ...(given?.idleStallMs === undefined ? { idleStallMs: learn(history.maxQuietMs, resolved.idleStallMs) } : {}),
  };
}
