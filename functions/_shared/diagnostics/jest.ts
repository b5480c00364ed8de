// Jest: `PASS`/`FAIL` per file (progress), `● suite › test` per failure with its first message
// line and first `at … (file:line:col)` frame, and the summary `Tests:  1 failed, 2 passed, 3 total`.
import { countsOf, diagnostic, NONE, progress, testResults, type Finding, type LineParser } from "./types.ts";

const FILE_DONE = /^(PASS|FAIL) (\S+)/;
const FAILURE = /^ {2}● (.+)$/;
const FRAME = /^\s+at .*?\(?([^\s()]+):(\d+):(\d+)\)?$/;
const TESTS = /^Tests:\s+(.+)$/;

export function jestParser(): LineParser {
  let failures: string[] = [];
  let failing: string | undefined;
  let message: string | undefined;
  let files = 0;

  return {
    line(text): readonly Finding[] {
      let m = FILE_DONE.exec(text);
      if (m) return [progress(null, "testing", `jest: ${++files} file${files === 1 ? "" : "s"} done (${m[1]} ${m[2]})`)];
      if ((m = FAILURE.exec(text))) {
        failing = m[1]!;
        message = undefined;
        if (!failures.includes(failing)) failures.push(failing);
        return NONE;
      }
      if (failing && message === undefined && text.trim()) {
        message = text.trim();
        return NONE;
      }
      if (failing && (m = FRAME.exec(text)) && !m[1]!.startsWith("node:")) {
        const d = diagnostic({ tool: "jest", file: m[1]!, line: Number(m[2]), column: Number(m[3]), severity: "error", code: null, message: `${failing}: ${message}` });
        failing = undefined;
        return [d];
      }
      if ((m = TESTS.exec(text))) {
        const c = countsOf(m[1]!);
        const r = testResults({ tool: "jest", passed: c.get("passed") ?? 0, failed: c.get("failed") ?? 0, skipped: (c.get("skipped") ?? 0) + (c.get("todo") ?? 0), failures });
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
