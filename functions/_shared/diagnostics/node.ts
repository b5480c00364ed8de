// Node.js uncaught errors: `TypeError: message` (or `Error [ERR_X]: …`) held until its first
// `at` frame outside node's internals gives file:line:col.
import { diagnostic, NONE, type Diagnostic, type Finding, type LineParser } from "./types.ts";

const ERROR = /^(?:Uncaught )?([A-Z][A-Za-z]*(?:Error|Exception))(?: \[([A-Z][A-Z0-9_]+)\])?(?:: (.*))?$/;
const FRAME = /^\s+at (?:.*? \()?((?:file:\/\/)?[^\s()]+?):(\d+):(\d+)\)?$/;

export function nodeParser(): LineParser {
  let held: Diagnostic | undefined;
  let internal: Diagnostic | undefined; // first frame inside node:, used when no user frame follows

  const release = (): readonly Finding[] => {
    const d = held?.file ? held : internal;
    held = internal = undefined;
    return d ? [diagnostic(d)] : [];
  };

  function line(text: string): readonly Finding[] {
    if (held) {
      const f = FRAME.exec(text);
      if (f) {
        const at = { file: f[1]!.replace(/^file:\/\//, ""), line: Number(f[2]), column: Number(f[3]) };
        if (at.file.startsWith("node:")) {
          internal ??= { ...held, ...at };
          return NONE;
        }
        Object.assign(held, at);
        return release();
      }
      // Not a stack: a JS error with no frames is not reported (it may be another tool's line).
      const out = internal ? release() : [];
      held = undefined;
      return [...out, ...line(text)];
    }
    const e = ERROR.exec(text);
    if (e) held = { tool: "node", file: null, line: null, column: null, severity: "error", code: e[2] ?? e[1]!, message: e[3] ?? e[1]! };
    return NONE;
  }
  return { line, flush: release };
}
