// gcc/g++ and clang (same format): `file:line[:col]: error|warning|note|fatal error: message [-Wflag]`,
// one diagnostic per line (notes too), so nothing is held; source excerpts and carets are skipped.
// Also the linker's `undefined reference` and `cannot find -lx`.
import { diagnostic, NONE, type Finding, type LineParser } from "./types.ts";

const LINE = /^(.+?):(\d+)(?::(\d+))?: (fatal error|error|warning|note): (.*)$/;
const FLAG = /^(.*?) \[(-W[^\]]+|-fpermissive)\]$/;
const UNDEFINED = /^(.+?):\([^)]*\): (undefined reference to .*)$/;
const LD = /^(?:\S*\/)?ld(?:\.\w+)?: (cannot find .*)$/;

/** `tool` names the compiler in the events: "gcc" unless the command runs clang. */
export function gccParser(tool = "gcc"): LineParser {
  return {
    line(text): readonly Finding[] {
      if (!text.includes(": ")) return NONE; // every format here has one
      const m = LINE.exec(text);
      if (m) {
        const flagged = FLAG.exec(m[5]!);
        return [
          diagnostic({
            tool,
            file: m[1]!,
            line: Number(m[2]),
            column: m[3] ? Number(m[3]) : null,
            severity: m[4] === "fatal error" ? "error" : (m[4] as "error" | "warning" | "note"),
            code: flagged ? flagged[2]! : null,
            message: (flagged ? flagged[1]! : m[5]!).trim(),
          }),
        ];
      }
      const u = UNDEFINED.exec(text);
      if (u) return [diagnostic({ tool: "ld", file: u[1]!, line: null, column: null, severity: "error", code: null, message: u[2]! })];
      const l = LD.exec(text);
      if (l) return [diagnostic({ tool: "ld", file: null, line: null, column: null, severity: "error", code: null, message: l[1]! })];
      return NONE;
    },
    flush: () => NONE,
  };
}
