// pytest: progress lines (`test_x.py ..F  [ 40%]`, or -v `test_x.py::t PASSED  [ 40%]`), one
// diagnostic per failure (`E   …` lines, then `test_x.py:13: AssertionError`), the short summary's
// `FAILED name` lines and the final `== 2 failed, 3 passed in 0.8s ==` line → test_results.
import { countsOf, diagnostic, NONE, progress, testResults, type Finding, type LineParser } from "./types.ts";

const PROGRESS = /^(\S+?\.py)(?:::(\S+))?\s+(?:[.FEsxX]+|PASSED|FAILED|SKIPPED|ERROR|XFAIL|XPASS)\s+\[\s*(\d{1,3})%\]$/;
const SECTION = /^_{3,} (.+?) _{3,}$/;
const E_LINE = /^E {1,3}(.*)$/;
const LOCATION = /^(\S+\.py):(\d+): ([A-Za-z_][\w.]*)$/;
const FAILED = /^(FAILED|ERROR) (\S+)(?: - .*)?$/;
/** What every line this parser reads has: a cheap first test. */
const CANDIDATE = /^(?:_{3}|E |FAILED |ERROR |=)|%\]$|\.py:\d/;
const SUMMARY = /^=+ (.*\b(?:passed|failed|skipped|errors?|xfailed|xpassed|deselected|no tests ran)\b.*?) in [\d.]+s(?: \([^)]*\))? =+$/;

export function pytestParser(): LineParser {
  let test = "";
  let message: string | undefined;
  let failures: string[] = [];

  return {
    line(text): readonly Finding[] {
      if (!CANDIDATE.test(text)) return NONE;
      let m = PROGRESS.exec(text);
      if (m) return [progress(Number(m[3]), "testing", `pytest: ${m[1]}${m[2] ? `::${m[2]}` : ""}`)];
      if ((m = SECTION.exec(text))) {
        test = m[1]!;
        message = undefined;
        return NONE;
      }
      if ((m = E_LINE.exec(text))) {
        message ??= m[1]!.trim();
        return NONE;
      }
      if ((m = LOCATION.exec(text)) && message !== undefined) {
        const d = diagnostic({ tool: "pytest", file: m[1]!, line: Number(m[2]), column: null, severity: "error", code: m[3]!, message: test ? `${test}: ${message}` : message });
        message = undefined;
        return [d];
      }
      if ((m = FAILED.exec(text))) {
        if (!failures.includes(m[2]!)) failures.push(m[2]!);
        return NONE;
      }
      if ((m = SUMMARY.exec(text))) {
        const c = countsOf(m[1]!);
        const r = testResults({
          tool: "pytest",
          passed: (c.get("passed") ?? 0) + (c.get("xpassed") ?? 0),
          failed: (c.get("failed") ?? 0) + (c.get("error") ?? 0) + (c.get("errors") ?? 0),
          skipped: (c.get("skipped") ?? 0) + (c.get("xfailed") ?? 0),
          failures,
        });
        failures = [];
        test = "";
        return [r];
      }
      return NONE;
    },
    flush: () => NONE,
  };
}
