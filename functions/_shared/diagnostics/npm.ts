// npm: script headers (`> pkg@1.0.0 build` then `> command`) and the install summary
// (`added 343 packages in 17s`, `up to date, audited 1 package in 200ms`).
import { NONE, progress, type Finding, type LineParser, type Stage } from "./types.ts";

const SCRIPT = /^> \S+@\S+ (\S+)$/;
const INSTALLED = /^(?:added|removed|changed|up to date)\b.*\bin [\d.]+m?s$/;

function stageOf(script: string): Stage {
  if (/test|spec|e2e/.test(script)) return "testing";
  if (/lint|analy[sz]e|check/.test(script)) return "analyzing";
  if (/tsc|typecheck|compile/.test(script)) return "compiling";
  return "building";
}

export function npmParser(): LineParser {
  return {
    line(text): readonly Finding[] {
      const s = SCRIPT.exec(text);
      if (s) return [progress(null, stageOf(s[1]!), `npm: running script ${s[1]}`)];
      if (INSTALLED.test(text)) return [progress(100, "building", `npm: ${text}`)];
      return NONE;
    },
    flush: () => NONE,
  };
}
