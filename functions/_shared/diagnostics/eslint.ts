// ESLint's default (stylish) format: a file's path alone on a line, then `  line:col  severity
// message  rule-id` lines, then a blank line; the `✖ N problems` summary as progress.
import { diagnostic, NONE, progress, type Finding, type LineParser } from "./types.ts";

const FILE = /^(\/\S.*|[A-Za-z]:\\.+|\.{0,2}\/?[\w@.-]+(?:\/[\w@.-]+)*\.(?:[cm]?[jt]sx?|vue|svelte|json|md))$/;
const MESSAGE = /^ {2}(\d+):(\d+)\s+(error|warning)\s+(.+?)(?:\s{2,}([@\w/-]+))?\s*$/;
const SUMMARY = /^✖ (\d+ problems? \(.*\))$/;

export function eslintParser(): LineParser {
  let file: string | undefined;
  return {
    line(text): readonly Finding[] {
      const m = file ? MESSAGE.exec(text) : null;
      if (m) {
        return [diagnostic({ tool: "eslint", file: file!, line: Number(m[1]), column: Number(m[2]), severity: m[3] as "error" | "warning", code: m[5] ?? null, message: m[4]! })];
      }
      file = FILE.test(text) ? text : undefined;
      const sum = SUMMARY.exec(text);
      return sum ? [progress(100, "analyzing", `eslint: ${sum[1]}`)] : NONE;
    },
    flush: () => NONE,
  };
}
