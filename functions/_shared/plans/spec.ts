// A plan request (POST /plans, or POST /execute with `steps`) checked and normalised into what
// cogo.create_plan stores: names unique, dependencies known and acyclic, per-step task fields with
// the plan's defaults folded in, stages and input globs resolved. Pure (zod only).
import { z } from "zod";
import { ExecuteRequestSchema, FileSchema, FilesSchema, isReservedStepName, MAX_FILES, RESERVED_STEP_PREFIX } from "../schemas.ts";
import { validateWorkspacePath } from "../paths.ts";
import { globToRegex } from "./globs.ts";

export const STAGES = ["compiling", "building", "testing", "analyzing"] as const;
export type Stage = (typeof STAGES)[number];

const STEP_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;
const MAX_STEPS = 100;
const task = ExecuteRequestSchema.shape;

const GlobSchema = z
  .string()
  .min(1)
  .max(4095)
  .refine((g) => {
    try {
      validateWorkspacePath(g.replace(/\*+/g, "x").replace(/\?/g, "x"));
      return true;
    } catch {
      return false;
    }
  }, "inputs are workspace-relative globs (no '..', not absolute)");

export const PlanStepSchema = z
  .object({
    name: z
      .string()
      .regex(STEP_NAME, "step names are letters, digits and . _ - (up to 64)")
      .refine((n) => !isReservedStepName(n), `step names starting with "${RESERVED_STEP_PREFIX}" are reserved for the system's own tasks`),
    command: task.command,
    argv: task.argv,
    /** Steps that must succeed first. @default the previous step in the list (none for the first) */
    dependsOn: z.array(z.string()).max(MAX_STEPS).optional(),
    /** @default the plan's priority */
    priority: task.priority.removeDefault().optional(),
    /** Worker kind and labels; @default the plan's requirements */
    requirements: task.requirements.removeDefault().optional(),
    /** Added to the plan's env. */
    env: task.env.removeDefault().optional(),
    /** Over the plan's limits. */
    limits: task.limits.removeDefault().optional(),
    timeoutMs: task.timeoutMs.removeDefault().optional(),
    maxAttempts: task.maxAttempts.removeDefault().optional(),
    /** Progress stage; @default guessed from the name and command (install/generate steps get none) */
    stage: z.enum(STAGES).optional(),
    /** Globs of workspace paths whose change re-runs the step; @default any change, if its stage is compiling, building or testing */
    inputs: z.array(GlobSchema).max(100).optional(),
  })
  .strict()
  .refine((s) => (s.command === undefined) !== (s.argv === undefined), {
    message: "give exactly one of command (run by /bin/sh -c in the sandbox) or argv",
    path: ["command"],
  });
export type PlanStep = z.input<typeof PlanStepSchema>;

const PlanObjectSchema = z
  .object({
    name: z.string().min(1).max(200).optional(),
    /** Files written into the workspace before the first step. */
    files: FilesSchema,
    /** An existing workspace of the caller (another plan's) instead of a fresh one. */
    workspaceId: z.uuid().optional(),
    steps: z.array(PlanStepSchema).min(1).max(MAX_STEPS),
    env: task.env,
    limits: task.limits,
    requirements: task.requirements,
    priority: task.priority,
    idempotencyKey: task.idempotencyKey,
  })
  .strict();

export const PlanRequestSchema = PlanObjectSchema.superRefine((plan, ctx) => {
  for (const issue of dagProblems(plan.steps)) ctx.addIssue({ code: "custom", ...issue });
}).transform(normalise);
export type PlanRequest = z.input<typeof PlanRequestSchema>;
export type NormalisedPlan = z.output<typeof PlanRequestSchema>;

const dependsOf = (steps: { dependsOn?: string[] }[], i: number) => steps[i]!.dependsOn ?? (i === 0 ? [] : [(steps[i - 1] as { name: string }).name]);

/** Duplicate names, unknown or self dependencies, cycles: each as a zod-style issue naming the field. */
export function dagProblems(steps: { name: string; dependsOn?: string[] }[]): { path: (string | number)[]; message: string }[] {
  const problems: { path: (string | number)[]; message: string }[] = [];
  const index = new Map<string, number>();
  steps.forEach((s, i) => {
    if (index.has(s.name)) problems.push({ path: ["steps", i, "name"], message: `step name ${s.name} is used twice` });
    else index.set(s.name, i);
  });
  steps.forEach((s, i) => {
    for (const d of dependsOf(steps, i)) {
      if (d === s.name) problems.push({ path: ["steps", i, "dependsOn"], message: `step ${s.name} depends on itself` });
      else if (!index.has(d)) problems.push({ path: ["steps", i, "dependsOn"], message: `step ${s.name} depends on ${d}, which is not a step of this plan` });
    }
  });
  if (problems.length) return problems;
  // Kahn: whatever never reaches in-degree 0 is on a cycle.
  const indegree = steps.map((_, i) => new Set(dependsOf(steps, i)).size);
  const ready = steps.map((_, i) => i).filter((i) => indegree[i] === 0);
  let seen = 0;
  while (ready.length) {
    const i = ready.pop()!;
    seen++;
    steps.forEach((_, j) => {
      if (new Set(dependsOf(steps, j)).has(steps[i]!.name) && --indegree[j]! === 0) ready.push(j);
    });
  }
  if (seen < steps.length) {
    const cycle = steps.filter((_, i) => indegree[i]! > 0).map((s) => s.name);
    problems.push({ path: ["steps"], message: `dependencies form a cycle among ${cycle.join(", ")}` });
  }
  return problems;
}

/** The stage a step reports in progress_update when none is given; null for install/generate-like steps. */
export function inferStage(name: string, command: string): Stage | null {
  const text = `${name} ${command}`.toLowerCase();
  if (/\b(test|tests|pytest|vitest|jest)\b|--test/.test(text)) return "testing";
  if (/\b(lint|analy[sz]e|analysis|eslint|clippy)\b/.test(text)) return "analyzing";
  if (/\b(typecheck|tsc|compile|gcc|g\+\+|cc|clang|rustc|javac)\b/.test(text)) return "compiling";
  if (/\b(build|make|cargo build|bundle|link)\b/.test(text)) return "building";
  return null;
}

function normalise(plan: z.output<typeof PlanObjectSchema>) {
  const steps = plan.steps.map((s, i) => {
    const run = s.command ?? s.argv!;
    const spec = {
      ...(s.command !== undefined ? { command: s.command } : { argv: s.argv }),
      env: { ...plan.env, ...s.env },
      limits: { ...plan.limits, ...s.limits },
      requirements: s.requirements ?? plan.requirements,
      ...(s.timeoutMs !== undefined ? { timeoutMs: s.timeoutMs } : {}),
      ...(s.maxAttempts !== undefined ? { maxAttempts: s.maxAttempts } : {}),
    };
    return {
      name: s.name,
      dependsOn: [...new Set(dependsOf(plan.steps, i))],
      spec,
      stage: s.stage ?? inferStage(s.name, Array.isArray(run) ? run.join(" ") : run),
      ...(s.inputs ? { inputPatterns: s.inputs.map(globToRegex) } : {}),
      priority: s.priority ?? plan.priority,
    };
  });
  return {
    ...(plan.name !== undefined ? { name: plan.name } : {}),
    ...(plan.workspaceId !== undefined ? { workspaceId: plan.workspaceId } : {}),
    ...(plan.idempotencyKey !== undefined ? { idempotencyKey: plan.idempotencyKey } : {}),
    // The database stores bytes: utf8 text goes over as base64 too.
    files: plan.files.map((f) => ({ path: f.path, content: f.encoding === "base64" ? f.content : toBase64(f.content), executable: f.executable })),
    steps,
  };
}

export function toBase64(text: string): string {
  const bytes = new TextEncoder().encode(text);
  let bin = "";
  for (let i = 0; i < bytes.length; i += 0x8000) bin += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  return btoa(bin);
}

/** POST /files: files to write and paths to delete in one change. */
export const WriteFilesSchema = z
  .object({
    workspaceId: z.uuid(),
    files: z
      .array(FileSchema)
      .max(MAX_FILES)
      .default([])
      .refine((fs) => new Set(fs.map((f) => f.path)).size === fs.length, "two files have the same path"),
    delete: z.array(FileSchema.shape.path).max(MAX_FILES).default([]),
  })
  .strict()
  .refine((r) => r.files.length + r.delete.length > 0, { message: "give files to write or paths to delete", path: ["files"] });
export type WriteFilesRequest = z.input<typeof WriteFilesSchema>;

export const WorkspaceQuerySchema = z.object({ workspace: z.uuid({ message: "workspace: the workspace id (from POST /plans) is required" }) });

export const PLAN_TOPIC_PREFIX = "plan:";
export const planTopic = (planId: string) => PLAN_TOPIC_PREFIX + planId;
