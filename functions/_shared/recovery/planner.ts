// The recovery planner: block reason + what was already tried → the next steps. Pure: the worker
// applies it automatically, the API's recover routes ask the worker to, tests call it directly.
// Every plan is bounded: by the task's attempts, by `maxRecoveries`, and by never repeating an
// action that already failed for the same reason.
import { RECOVERY_DEFAULTS, type BlockReason, type RecoverRequest, type RecoveryAction, type RecoveryOptions } from "./options.ts";

export interface RecoveryStep {
  action: RecoveryAction;
  /** feed_stdin: what to write; null closes stdin. */
  stdin?: string | null;
  /** retry, reassign, raise_limit, alternative_command: delay before the next attempt may start. */
  delayMs?: number;
  /** raise_limit: the new limits. */
  limits?: { wallTimeMs?: number; memoryBytes?: number };
  /** alternative_command: what runs instead. */
  command?: string;
}

export interface RecoveryPlan {
  reason: BlockReason | "manual";
  /** Whether the plan tries to get the task done (false: it only ends it cleanly). */
  recoverable: boolean;
  steps: RecoveryStep[];
  /** What happened and what was tried, for a human. */
  diagnosis: string;
  /** The final status if the plan gives up. */
  finalStatus: "failed" | "timed_out";
  /** A forced action that cannot be applied; no steps then. */
  refused?: string;
}

export interface PlanInput {
  reason: BlockReason | "manual";
  attempt: number;
  maxAttempts: number;
  /** Earlier blocks of this task (all attempts), oldest first, not counting this one. */
  previousBlocks: BlockReason[];
  /** Actions already started for this task (from its recovery_started events). */
  previousActions: { action: RecoveryAction; stdin?: "answer" | "eof" }[];
  options?: RecoveryOptions;
  /** The task's current limits and the worker's maxima. */
  limits: { wallTimeMs: number; memoryBytes: number };
  maxLimits: { wallTimeMs: number; memoryBytes: number };
  /** The task's processes still run (false after a timeout, OOM or output kill). */
  processAlive: boolean;
  /** The task's stdin is a pipe we still hold open. */
  stdinOpen: boolean;
  /** Another live worker could run the task (so reassigning can help). */
  otherWorkers: boolean;
  /** What the block looked like, for the diagnosis (e.g. "CPU 100 % for 30 s, no output"). */
  summary?: string;
  /** A human's forced action (POST /tasks/:id/recover). */
  request?: RecoverRequest;
}

const REQUEUES: RecoveryAction[] = ["retry", "reassign", "raise_limit", "alternative_command"];

const ADVICE: Record<BlockReason | "manual", string> = {
  timeout: "it ran past its wall-time limit; raise timeoutMs or give recovery.limitCeilings.wallTimeMs",
  infinite_loop: "it kept a CPU busy without output or file writes; look for a loop whose exit condition never becomes true",
  waiting_for_input: "it waits for input on stdin; pass the answer in recovery.stdinAnswer or make the command non-interactive (e.g. --yes)",
  idle_stall: "it sat idle: no CPU, no output, no I/O (a sleep, or a network wait that never returns)",
  deadlock: "its threads all wait on locks that nobody releases; check the lock order",
  memory_exhausted: "it ran out of memory; raise limits.memoryBytes or give recovery.limitCeilings.memoryBytes",
  fork_bomb: "it kept creating processes up to the process limit",
  output_flood: "it wrote output faster or more than allowed; write less, or to a file",
  worker_lost: "the worker running it stopped heartbeating",
  manual: "a recovery was asked for",
};

/** Sentences of a diagnosis after the advice; empty ones (nothing tried, attempts left) are dropped. */
function giveUp(input: PlanInput, ...notes: string[]): RecoveryPlan {
  const steps: RecoveryStep[] = input.processAlive ? [{ action: "terminate" }] : [];
  steps.push({ action: "give_up" });
  return {
    reason: input.reason,
    recoverable: false,
    steps,
    diagnosis: diagnosis(input, notes),
    finalStatus: input.reason === "timeout" ? "timed_out" : "failed",
  };
}

// Joined from non-empty sentences, so no note that happens to be empty leaves a double space.
function diagnosis(input: PlanInput, notes: string[]): string {
  const what = input.summary ? `${input.reason} (${input.summary})` : input.reason;
  return [`blocked: ${what} on attempt ${input.attempt} of ${input.maxAttempts}: ${ADVICE[input.reason]}.`, ...notes].filter((n) => n !== "").join(" ");
}

function recover(input: PlanInput, step: RecoveryStep, what: string): RecoveryPlan {
  const restart = REQUEUES.includes(step.action);
  return {
    reason: input.reason,
    recoverable: true,
    steps: restart && input.processAlive ? [{ action: "terminate" }, step] : [step],
    diagnosis: diagnosis(input, [`Recovering: ${what}.`]),
    finalStatus: input.reason === "timeout" ? "timed_out" : "failed",
  };
}

/** What to do about one block. */
export function planRecovery(input: PlanInput): RecoveryPlan {
  const o = { ...RECOVERY_DEFAULTS, ...(input.options ?? {}) };
  const attemptsLeft = input.attempt < input.maxAttempts;
  const used = (a: RecoveryAction) => input.previousActions.some((p) => p.action === a);
  const sameReason = input.previousBlocks.filter((r) => r === input.reason).length;
  const retries = input.previousActions.filter((p) => p.action === "retry" || p.action === "reassign").length;
  const delayMs = Math.min(o.backoffMs * 2 ** retries, 60_000);
  const tried = () => {
    const actions = [...new Set(input.previousActions.map((p) => p.action))].filter((a) => a !== "terminate");
    return actions.length ? `Already tried: ${actions.join(", ")}.` : "";
  };

  if (input.request?.action) return forced(input, input.request, attemptsLeft, delayMs);
  if (input.previousBlocks.length >= o.maxRecoveries) {
    return giveUp(input, `Gave up after ${input.previousBlocks.length} recoveries (recovery.maxRecoveries ${o.maxRecoveries}).`, tried());
  }
  const alternative = (): RecoveryPlan | null =>
    o.alternativeCommand && attemptsLeft && !used("alternative_command")
      ? recover(input, { action: "alternative_command", command: o.alternativeCommand, delayMs: 0 }, "running recovery.alternativeCommand instead")
      : null;
  const retry = (): RecoveryPlan | null => (attemptsLeft && sameReason === 0 ? recover(input, { action: "retry", delayMs }, `retrying after ${delayMs} ms`) : null);
  const raise = (key: "wallTimeMs" | "memoryBytes"): RecoveryPlan | null => {
    const ceiling = Math.min(o.limitCeilings?.[key] ?? 0, input.maxLimits[key]);
    const next = Math.min(input.limits[key] * 2, ceiling);
    if (!attemptsLeft || next <= input.limits[key]) return null;
    return recover(input, { action: "raise_limit", limits: { [key]: next }, delayMs: 0 }, `raising ${key} from ${input.limits[key]} to ${next}`);
  };
  const noAttempts = attemptsLeft ? "" : `No attempts left (maxAttempts ${input.maxAttempts}).`;

  switch (input.reason) {
    case "timeout":
      return raise("wallTimeMs") ?? alternative() ?? giveUp(input, noAttempts, tried());
    case "memory_exhausted":
      return raise("memoryBytes") ?? alternative() ?? giveUp(input, noAttempts, tried());
    case "waiting_for_input": {
      const fed = new Set(input.previousActions.filter((p) => p.action === "feed_stdin").map((p) => p.stdin));
      if (input.processAlive && input.stdinOpen) {
        if (o.stdinAnswer !== undefined && !fed.has("answer")) {
          return recover(input, { action: "feed_stdin", stdin: o.stdinAnswer }, "writing recovery.stdinAnswer to stdin");
        }
        if (!fed.has("eof")) return recover(input, { action: "feed_stdin", stdin: null }, "closing stdin");
      }
      return alternative() ?? giveUp(input, tried());
    }
    case "infinite_loop":
      return alternative() ?? retry() ?? giveUp(input, noAttempts, tried());
    case "deadlock":
      return retry() ?? alternative() ?? giveUp(input, noAttempts, tried());
    case "idle_stall":
      if (attemptsLeft && sameReason === 1 && input.otherWorkers && !used("reassign")) {
        return recover(input, { action: "reassign", delayMs }, "moving it to another worker");
      }
      return retry() ?? alternative() ?? giveUp(input, noAttempts, tried());
    case "fork_bomb":
    case "output_flood":
      // Repeating the same command would do the same harm again.
      return alternative() ?? giveUp(input, "Not retried: the same command would do it again.", tried());
    case "worker_lost":
      return attemptsLeft ? recover(input, { action: "reassign", delayMs: 0 }, "re-queueing it for a live worker") : giveUp(input, noAttempts);
    case "manual":
      return attemptsLeft ? recover(input, { action: "retry", delayMs: 0 }, "restarting it as asked") : giveUp(input, noAttempts);
  }
}

function forced(input: PlanInput, request: RecoverRequest, attemptsLeft: boolean, delayMs: number): RecoveryPlan {
  const action = request.action!;
  const refuse = (why: string): RecoveryPlan => ({
    reason: input.reason,
    recoverable: false,
    steps: [],
    diagnosis: `recover ${action} refused: ${why}`,
    finalStatus: "failed",
    refused: why,
  });
  switch (action) {
    case "feed_stdin":
      if (!input.processAlive || !input.stdinOpen) return refuse('the task\'s stdin is not an open pipe (start it with stdin: "pipe")');
      return recover(input, { action, stdin: request.data ?? null }, request.data === undefined ? "closing stdin as asked" : "writing to stdin as asked");
    case "retry":
    case "reassign":
    case "raise_limit":
    case "alternative_command": {
      if (!attemptsLeft) return refuse(`no attempts left (maxAttempts ${input.maxAttempts})`);
      if (action === "reassign" && !input.otherWorkers) return refuse("no other live worker can run this task");
      if (action === "alternative_command" && !input.options?.alternativeCommand) return refuse("the task has no recovery.alternativeCommand");
      if (action === "raise_limit") {
        const c = input.options?.limitCeilings ?? {};
        const limits: RecoveryStep["limits"] = {};
        for (const key of ["wallTimeMs", "memoryBytes"] as const) {
          const next = Math.min(input.limits[key] * 2, c[key] ?? 0, input.maxLimits[key]);
          if (next > input.limits[key]) limits[key] = next;
        }
        if (Object.keys(limits).length === 0) return refuse("no limit can be raised (set recovery.limitCeilings above the current limits)");
        return recover(input, { action, limits, delayMs: 0 }, `raising ${Object.keys(limits).join(", ")} as asked`);
      }
      return recover(
        input,
        { action, delayMs: action === "retry" ? delayMs : 0, ...(action === "alternative_command" ? { command: input.options!.alternativeCommand! } : {}) },
        `${action} as asked`,
      );
    }
    case "terminate":
    case "give_up":
      return giveUp(input, `Ended by request (${action}).`);
  }
}
