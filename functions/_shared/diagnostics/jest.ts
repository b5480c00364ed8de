// Jest: `PASS`/`FAIL` per file (progress), `● suite › test` per failure with its first message
// line and first `at … (file:line:col)` frame, and the summary `Tests:  1 failed, 2 passed, 3 total`.
import type { LineParser } from "./types.ts";
import { testRunnerParser } from "./test-runner.ts";

export function jestParser(): LineParser {
  return testRunnerParser({
    tool: "jest",
    fileDone: /^(PASS|FAIL) (\S+)/,
    describe: (m) => `${m[1]} ${m[2]}`,
    failure: /^ {2}● (.+)$/,
    frame: /^\s+at .*?\(?([^\s()]+):(\d+):(\d+)\)?$/,
    skipFrame: (file) => file.startsWith("node:"),
    summary: /^Tests:\s+(.+)$/,
  });
}
