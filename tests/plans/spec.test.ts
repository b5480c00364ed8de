// Pure planner logic (globs, DAG checks, stage guesses), and the TS constants that mirror SQL.
import { describe, expect, it } from "vitest";
import { globToRegex, matchesAny } from "../../functions/_shared/plans/globs.ts";
import { RERUN_PRIORITY, WORKSPACE_LIMITS } from "../../functions/_shared/plans/limits.ts";
import { dagProblems, inferStage, PlanRequestSchema } from "../../functions/_shared/plans/spec.ts";
import { describePlanEvent } from "../../sdk/plan-cli.ts";
import { parsePlanEventMessage } from "../../functions/_shared/events.ts";
import { sql } from "../helpers/env.ts";

describe("input globs", () => {
  const m = (glob: string, path: string) => matchesAny(path, [globToRegex(glob)]);
  it("* stays in one component, ** crosses them, a glob without / matches the name anywhere", () => {
    expect(m("src/*.ts", "src/a.ts")).toBe(true);
    expect(m("src/*.ts", "src/sub/a.ts")).toBe(false);
    expect(m("src/**", "src/sub/deep/a.ts")).toBe(true);
    expect(m("src/**/*.ts", "src/a.ts")).toBe(true);
    expect(m("src/**/*.ts", "src/x/y/a.ts")).toBe(true);
    expect(m("src/**/*.ts", "lib/a.ts")).toBe(false);
    expect(m("*.c", "deep/dir/main.c")).toBe(true);
    expect(m("*.c", "main.cc")).toBe(false);
    expect(m("docs/", "docs/a/b.md")).toBe(true);
    expect(m("a?.txt", "ab.txt")).toBe(true);
    expect(m("a?.txt", "a/.txt")).toBe(false);
    expect(m("a.b+(c)", "a.b+(c)")).toBe(true);
    expect(m("a.b", "axb")).toBe(false);
  });
  it("Postgres agrees with the JS regexes", async () => {
    const cases: [string, string][] = [
      ["src/**/*.ts", "src/x/a.ts"],
      ["*.c", "d/m.c"],
      ["src/*.ts", "src/x/a.ts"],
      ["a.b", "axb"],
    ];
    for (const [glob, path] of cases) {
      const [row] = await sql<{ hit: boolean }[]>`select ${path}::text ~ ${globToRegex(glob)} as hit`;
      expect(row!.hit, `${glob} vs ${path}`).toBe(matchesAny(path, [globToRegex(glob)]));
    }
  });
});

describe("plan requests", () => {
  it("finds cycles, unknown and self dependencies, duplicate names", () => {
    expect(
      dagProblems([
        { name: "a", dependsOn: [] },
        { name: "b", dependsOn: ["a"] },
        { name: "c", dependsOn: ["a", "b"] },
      ]),
    ).toEqual([]);
    expect(
      dagProblems([
        { name: "a", dependsOn: ["c"] },
        { name: "b", dependsOn: ["a"] },
        { name: "c", dependsOn: ["b"] },
        { name: "d", dependsOn: [] },
      ]),
    ).toEqual([{ path: ["steps"], message: "dependencies form a cycle among a, b, c" }]);
    expect(dagProblems([{ name: "a" }, { name: "a" }])[0]!.message).toBe("step name a is used twice");
  });
  it("defaults: each step after the previous, the plan's env/limits/requirements folded in, stages guessed", () => {
    const plan = PlanRequestSchema.parse({
      env: { A: "1" },
      requirements: { kind: "flutter" },
      priority: 5,
      files: [{ path: "x", content: "é" }],
      steps: [
        { name: "install", command: "npm ci" },
        { name: "compile", command: "tsc -p .", env: { B: "2" }, inputs: ["src/**"] },
        { name: "unit", argv: ["node", "--test"], dependsOn: ["install"], priority: 7, requirements: { kind: "basic", labels: ["x"] } },
      ],
    });
    expect(plan.files).toEqual([{ path: "x", content: "w6k=", executable: false }]);
    expect(plan.steps.map((s) => [s.name, s.dependsOn, s.stage, s.priority])).toEqual([
      ["install", [], null, 5],
      ["compile", ["install"], "compiling", 5],
      ["unit", ["install"], "testing", 7],
    ]);
    expect(plan.steps[1]!.spec).toEqual({ command: "tsc -p .", env: { A: "1", B: "2" }, limits: {}, requirements: { kind: "flutter", labels: [] } });
    expect(plan.steps[1]!.inputPatterns).toEqual([globToRegex("src/**")]);
    expect(plan.steps[2]!.spec.requirements).toEqual({ kind: "basic", labels: ["x"] });
    expect([inferStage("build", "make"), inferStage("lint", "eslint ."), inferStage("gen", "python gen.py")]).toEqual(["building", "analyzing", null]);
  });
  it("the TS constants mirror the SQL ones", async () => {
    const [row] = await sql<{ limits: unknown; priority: number }[]>`select cogo.workspace_limits() as limits, cogo.rerun_priority() as priority`;
    expect(row!.limits).toEqual(WORKSPACE_LIMITS);
    expect(row!.priority).toBe(RERUN_PRIORITY);
  });
});

describe("CLI lines for plan events", () => {
  const ev = (type: string, data: Record<string, unknown>) => parsePlanEventMessage({ planId: "p", seq: 1, type, data, timestamp: "" });
  it("reads like a compiler and a test runner", () => {
    expect(
      describePlanEvent(
        ev("diagnostic", {
          step: "typecheck",
          taskId: "t",
          tool: "tsc",
          file: "src/a.ts",
          line: 4,
          column: 14,
          severity: "error",
          code: "TS2322",
          message: "Type 'string' is not assignable to type 'number'.",
        }),
      ),
    ).toBe("typecheck: src/a.ts:4:14 error TS2322: Type 'string' is not assignable to type 'number'.");
    expect(
      describePlanEvent(ev("diagnostic", { step: "run", taskId: "t", tool: "node", file: null, line: null, column: null, severity: "error", code: null, message: "boom" })),
    ).toBe("run: error: boom");
    expect(describePlanEvent(ev("test_results", { step: "test", taskId: "t", tool: "vitest", passed: 3, failed: 1, skipped: 0, failures: ["adds"] }))).toBe(
      "test: 3 passed, 1 failed, 0 skipped (adds)",
    );
    expect(describePlanEvent(ev("step_status", { step: "build", status: "stopped", previous: "waiting", reason: "not run: dependency x failed" }))).toBe(
      "build: stopped (not run: dependency x failed)",
    );
  });
});
