// make: `make: *** [Makefile:4: bad.o] Error 1` (a failed recipe) and `No rule to make target`;
// progress from CMake-generated makefiles (`[ 40%] Building C object …`).
import { diagnostic, NONE, progress, type Finding, type LineParser } from "./types.ts";

const FAILED = /^g?make(?:\[\d+\])?: \*\*\* \[(.+?):(\d+): (.+?)\] (Error \d+|Segmentation fault.*|Killed)$/;
const NO_RULE = /^g?make(?:\[\d+\])?: \*\*\* (No rule to make target .*?)\.?\s+Stop\.$/;
const CMAKE = /^\[\s*(\d{1,3})%\] (.+)$/;

export function makeParser(): LineParser {
  return {
    line(text): readonly Finding[] {
      const f = FAILED.exec(text);
      if (f) return [diagnostic({ tool: "make", file: f[1]!, line: Number(f[2]), column: null, severity: "error", code: null, message: `target ${f[3]} failed (${f[4]})` })];
      const n = NO_RULE.exec(text);
      if (n) return [diagnostic({ tool: "make", file: null, line: null, column: null, severity: "error", code: null, message: n[1]! })];
      const c = CMAKE.exec(text);
      if (c) return [progress(Number(c[1]), /^Building \S+ object/.test(c[2]!) ? "compiling" : "building", `make: ${c[2]}`)];
      return NONE;
    },
    flush: () => NONE,
  };
}
