// Vitest: per-file progress (` ✓ sum.test.js (3 tests) 7ms`), failed tests (` FAIL  file > suite >
// test`, its error line, then ` ❯ file:line:col`) and the summary `Tests  1 failed | 2 passed (3)`.
import type { LineParser } from "./types.ts";
import { testRunnerParser } from "./test-runner.ts";

export function vitestParser(): LineParser {
  return testRunnerParser({
    tool: "vitest",
    fileDone: /^ [✓❯×↓] (\S.*?) \((\d+) tests?(?: \| [^)]*)?\)/,
    describe: (m) => `${m[1]}, ${m[2]} tests`,
    failure: /^ FAIL {2}(.+)$/,
    frame: /^ ❯ (.+?):(\d+):(\d+)$/,
    summary: /^ {6}Tests {2}(.+?) \((\d+)\)$/,
  });
}
