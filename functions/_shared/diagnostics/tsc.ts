// TypeScript's tsc: `file(line,col): error TS2322: …` (plain) and `file:line:col - error TS2322: …`
// (--pretty); `tsc -b --verbose` lists its projects, then builds them one by one (progress).
import { diagnostic, NONE, progress, type LineParser, type Severity } from "./types.ts";

const PLAIN = /^(.+?)\((\d+),(\d+)\): (error|warning|message) (TS\d+): (.*)$/;
const PRETTY = /^(.+?):(\d+):(\d+) - (error|warning|message) (TS\d+): (.*)$/;
const PROJECT_LIST = / - Projects in this build: ?$/;
const PROJECT_ITEM = /^ {4}\* (.+)$/;
const BUILDING = / - Building project '(.+)'\.\.\.$/;
const FOUND = /^Found (\d+) errors?\b/;
/** What every line this parser reads (outside a project list) contains: a cheap first test. */
const CANDIDATE = /\): | - |^Found /;

export function tscParser(): LineParser {
  let projects = 0;
  let listing = false;
  let built = 0;
  return {
    line(text) {
      if (!listing && !CANDIDATE.test(text)) return NONE;
      const m = PLAIN.exec(text) ?? PRETTY.exec(text);
      if (m) {
        const severity: Severity = m[4] === "message" ? "note" : (m[4] as Severity);
        return [diagnostic({ tool: "tsc", file: m[1]!, line: Number(m[2]), column: Number(m[3]), severity, code: m[5]!, message: m[6]! })];
      }
      if (PROJECT_LIST.test(text)) {
        listing = true;
        projects = built = 0;
        return NONE;
      }
      if (listing) {
        if (PROJECT_ITEM.test(text)) projects++;
        else listing = false;
        return NONE;
      }
      const b = BUILDING.exec(text);
      if (b) {
        built++;
        const pct = projects ? ((built - 1) / projects) * 100 : null;
        return [progress(pct, "compiling", `tsc: building project ${built}${projects ? ` of ${projects}` : ""} (${b[1]})`)];
      }
      const f = FOUND.exec(text);
      if (f) return [progress(100, "compiling", `tsc: found ${f[1]} error${f[1] === "1" ? "" : "s"}`)];
      return NONE;
    },
    flush: () => NONE,
  };
}
