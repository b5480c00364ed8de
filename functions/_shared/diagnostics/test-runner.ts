// The state machine Jest and Vitest reports share: a line per finished file (progress), a failed
// test's title, its first message line, then the first stack frame in the user's code (one
// diagnostic), and the summary line (test results). Each tool supplies its own line patterns.
import { countsOf, diagnostic, NONE, progress, testResults, type Finding, type LineParser } from "./types.ts";

export interface TestRunnerFormat {
  tool: string;
  /** A finished file; `describe` turns its match into the progress message's detail. */
  fileDone: RegExp;
  describe(m: RegExpExecArray): string;
  /** A failed test's title in group 1. */
  failure: RegExp;
  /** A stack frame: file, line, column in groups 1–3. */
  frame: RegExp;
  /** Frames to skip (e.g. Node internals). @default none */
  skipFrame?: (file: string) => boolean;
  /** The summary; its counts (`1 failed, 2 passed`) in group 1. */
  summary: RegExp;
}

export function testRunnerParser(f: TestRunnerFormat): LineParser {
  let failures: string[] = [];
  let failing: string | undefined;
  let message: string | undefined;
  let files = 0;

  return {
    line(text): readonly Finding[] {
      let m = f.fileDone.exec(text);
      if (m) return [progress(null, "testing", `${f.tool}: ${++files} file${files === 1 ? "" : "s"} done (${f.describe(m)})`)];
      if ((m = f.failure.exec(text))) {
        failing = m[1]!;
        message = undefined;
        if (!failures.includes(failing)) failures.push(failing);
        return NONE;
      }
      if (failing && message === undefined && text.trim()) {
        message = text.trim();
        return NONE;
      }
      if (failing && (m = f.frame.exec(text)) && !f.skipFrame?.(m[1]!)) {
        const d = diagnostic({ tool: f.tool, file: m[1]!, line: Number(m[2]), column: Number(m[3]), severity: "error", code: null, message: `${failing}: ${message}` });
        failing = undefined;
        return [d];
      }
      if ((m = f.summary.exec(text))) {
        const c = countsOf(m[1]!);
        const r = testResults({ tool: f.tool, passed: c.get("passed") ?? 0, failed: c.get("failed") ?? 0, skipped: (c.get("skipped") ?? 0) + (c.get("todo") ?? 0), failures });
        failures = [];
        failing = undefined;
        files = 0;
        return [r];
      }
      return NONE;
    },
    flush: () => NONE,
  };
}
