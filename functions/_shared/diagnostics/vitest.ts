// Vitest: per-file progress (` ✓ sum.test.js (3 tests) 7ms`), failed tests (` FAIL  file > suite >
// test`, its error line, then ` ❯ file:line:col`) and the summary `Tests  1 failed | 2 passed (3)`.
import { countsOf, diagnostic, NONE, progress, testResults, type Finding, type LineParser } from "./types.ts";

const FILE_DONE = /^ [✓❯×↓] (\S.*?) \((\d+) tests?(?: \| [^)]*)?\)/;
const FAIL = /^ FAIL {2}(.+)$/;
const AT = /^ ❯ (.+?):(\d+):(\d+)$/;
const TESTS = /^ {6}Tests {2}(.+?) \((\d+)\)$/;

export function vitestParser(): LineParser {
  let failures: string[] = [];
  let failing: string | undefined;
  let message: string | undefined;
  let files = 0;

  return {
    line(text): readonly Finding[] {
      let m = FILE_DONE.exec(text);
      if (m) return [progress(null, "testing", `vitest: ${++files} file${files === 1 ? "" : "s"} done (${m[1]}, ${m[2]} tests)`)];
      if ((m = FAIL.exec(text))) {
        failing = m[1]!;
        message = undefined;
        if (!failures.includes(failing)) failures.push(failing);
        return NONE;
      }
      if (failing && message === undefined && text.trim()) {
        message = text.trim();
        return NONE;
      }
      if (failing && (m = AT.exec(text))) {
        const d = diagnostic({ tool: "vitest", file: m[1]!, line: Number(m[2]), column: Number(m[3]), severity: "error", code: null, message: `${failing}: ${message}` });
        failing = undefined;
        return [d];
      }
      if ((m = TESTS.exec(text))) {
        const c = countsOf(m[1]!);
        const r = testResults({ tool: "vitest", passed: c.get("passed") ?? 0, failed: c.get("failed") ?? 0, skipped: (c.get("skipped") ?? 0) + (c.get("todo") ?? 0), failures });
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
