// `cogo plan`, `cogo plan-status`, `cogo plan-cancel` and `cogo watch`: the CLI's plan commands.
import { readFile } from "node:fs/promises";
import { parseArgs } from "node:util";
import { FLAG_RANGES, parseIntFlag } from "./cli-args.ts";
import type { SandboxClient } from "./client.ts";
import type { PlanEventMessage } from "./plans.ts";
import { watchDirectory, WATCH_DEFAULTS } from "./watch.ts";

export const PLAN_USAGE = `  plan <plan.json> [--detach]      submit a plan ({files?, steps: [{name, command, dependsOn?, inputs?, …}]}),
                                  print step events until it ends; exit 0 if it succeeded
  plan-status <planId>            the plan, its steps and summary as JSON
  plan-cancel <planId>            cancel running and pending steps
  watch <dir> (--plan ID | --workspace ID) [options]
                                  upload changes in <dir> to the workspace; the steps they affect
                                  re-run at high priority (with --plan their events are printed)
      --debounce MS               send once the directory is quiet this long (default ${WATCH_DEFAULTS.debounceMs})
      --ignore NAME               path component never uploaded (repeatable; default ${WATCH_DEFAULTS.ignore.join(", ")})
      --initial                   upload every file once at start`;

type Fail = (message: string) => never;

export function describePlanEvent(e: PlanEventMessage): string {
  switch (e.type) {
    case "step_status":
      return `${e.data.step}: ${e.data.status}${e.data.reason ? ` (${e.data.reason})` : ""}`;
    case "progress_update":
      return `${e.data.message}${e.data.percentage !== null ? ` [${e.data.percentage}%]` : ""}`;
    case "plan_status":
      return `plan ${e.data.status}${e.data.reason ? `: ${e.data.reason}` : ""}`;
    case "diagnostic": {
      const d = e.data;
      const where = [d.file, d.line, d.column].filter((x) => x !== null).join(":");
      return `${d.step}: ${where ? `${where} ` : ""}${d.severity}${d.code ? ` ${d.code}` : ""}: ${d.message}`;
    }
    case "test_results": {
      const d = e.data;
      const failures = d.failures.length ? ` (${d.failures.slice(0, 5).join(", ")})` : "";
      return `${d.step}: ${d.passed} passed, ${d.failed} failed, ${d.skipped} skipped${failures}`;
    }
    case "unknown":
      return `${e.rawType} ${JSON.stringify(e.data)}`;
  }
}

export async function planCommand(sandbox: SandboxClient, argv: string[], fail: Fail): Promise<number> {
  const { values, positionals } = parseArgs({ args: argv, allowPositionals: true, options: { detach: { type: "boolean" } } });
  const file = positionals[0] ?? fail("plan needs a JSON file: cogo plan plan.json");
  let spec: unknown;
  try {
    spec = JSON.parse(await readFile(file, "utf8"));
  } catch (e) {
    fail(`${file}: ${(e as Error).message}`);
  }
  const print = (e: PlanEventMessage) => console.error(`[plan] ${describePlanEvent(e)}`);
  const plan = await sandbox.createPlan(spec as never, values.detach ? undefined : print);
  console.log(JSON.stringify({ planId: plan.planId, topic: plan.topic }));
  if (values.detach) {
    await plan.close();
    return 0;
  }
  const done = await plan.wait();
  await plan.close();
  console.error(`[plan] ${done.summary.text}`);
  return done.status === "succeeded" ? 0 : 1;
}

export async function watchCommand(sandbox: SandboxClient, argv: string[], fail: Fail): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      plan: { type: "string" },
      workspace: { type: "string" },
      debounce: { type: "string" },
      ignore: { type: "string", multiple: true },
      initial: { type: "boolean" },
    },
  });
  const dir = positionals[0] ?? fail("watch needs a directory: cogo watch ./src --plan <planId>");
  if (!values.plan === !values.workspace) fail("watch needs exactly one of --plan <planId> or --workspace <workspaceId>");
  const debounceMs = parseIntFlag("--debounce", values.debounce, FLAG_RANGES.debounce);
  const workspaceId = values.workspace ?? (await sandbox.getPlan(values.plan!)).workspaceId;
  const follow = values.plan ? await sandbox.attachPlan(values.plan, (e) => e.type !== "progress_update" && console.error(`[plan] ${describePlanEvent(e)}`)) : undefined;
  const watcher = await watchDirectory(sandbox, dir, {
    workspaceId,
    ...(debounceMs !== undefined ? { debounceMs } : {}),
    ...(values.ignore ? { ignore: values.ignore } : {}),
    initial: values.initial ?? false,
    onChange: (r) =>
      console.error(
        `[watch] sent ${r.changed.length} change(s): ${r.changed.join(", ") || "none"}; re-running ${r.reruns.map((x) => `${x.step} (${x.status})`).join(", ") || "nothing"}`,
      ),
    onWarning: (m) => console.error(`[watch] ${m}`),
  });
  console.error(`[watch] watching ${dir} → workspace ${workspaceId}; Ctrl-C to stop`);
  await new Promise<void>((resolve) => process.once("SIGINT", resolve));
  await watcher.close();
  await follow?.close();
  return 0;
}
