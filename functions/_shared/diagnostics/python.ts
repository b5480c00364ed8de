// Python tracebacks: frames are collected from `Traceback (most recent call last):` until the
// exception line, which is reported at the innermost frame. A SyntaxError (no "Traceback") starts
// at its `File "…", line N` line.
import { diagnostic, NONE, type Finding, type LineParser } from "./types.ts";

const START = "Traceback (most recent call last):";
const FRAME = /^ {2}File "(.+?)", line (\d+)(?:, in .*)?$/;
const SYNTAX_FRAME = /^ {2}File "(.+?)", line (\d+)$/;
const EXCEPTION = /^([A-Za-z_][\w.]*(?:Error|Exception|Exit|Interrupt|Warning|Iteration)|[A-Za-z_][\w.]*\.[A-Z]\w*)(?:: (.*))?$/;
/** A traceback longer than this is not one (or not worth holding). */
const MAX_LINES = 2000;

export function pythonParser(): LineParser {
  let frame: { file: string; line: number } | undefined;
  let inTraceback = false;
  let held = 0; // lines since the traceback started

  return {
    line(text): readonly Finding[] {
      if (text === START) {
        inTraceback = true;
        frame = undefined;
        held = 0;
        return NONE;
      }
      if (!inTraceback) {
        const s = SYNTAX_FRAME.exec(text);
        if (s) {
          inTraceback = true;
          frame = { file: s[1]!, line: Number(s[2]) };
          held = 0;
        }
        return NONE;
      }
      if (++held > MAX_LINES) {
        inTraceback = false;
        return NONE;
      }
      const f = FRAME.exec(text);
      if (f) {
        frame = { file: f[1]!, line: Number(f[2]) };
        return NONE;
      }
      if (text.startsWith(" ") || text === "") return NONE; // source lines, carets, blank lines
      inTraceback = false;
      const e = EXCEPTION.exec(text);
      if (!e || !frame) return NONE;
      return [diagnostic({ tool: "python", file: frame.file, line: frame.line, column: null, severity: "error", code: e[1]!, message: e[2] ?? e[1]! })];
    },
    flush: () => NONE, // a traceback's exception line follows its frames at once; nothing to report early
  };
}
