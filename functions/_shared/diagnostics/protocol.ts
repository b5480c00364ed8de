// The line protocol any command can print (docs/diagnostics.md):
//   ::progress <percent | done/total | -> [compiling|building|testing|analyzing] [message…]
//   ::error file=<path>,line=<n>,col=<n>,code=<id>::<message>     (also ::warning, ::notice;
//                                                                  GitHub Actions' syntax)
//   ::test-results passed=<n> failed=<n> skipped=<n> [failures=<name>;<name>…]
// A line that starts with `::` but does not parse is left alone (it stays plain output).
import { diagnostic, NONE, progress, STAGES, testResults, type Finding, type LineParser, type Stage } from "./types.ts";

const PROGRESS = /^::progress\s+(\d+(?:\.\d+)?|\d+\/\d+|-)(?:\s+(.*))?$/;
const ANNOTATION = /^::(error|warning|notice)(?:\s+([^:]*))?::(.*)$/;
const TESTS = /^::test-results\s+(.*)$/;

/** GitHub's escapes in annotation messages and properties. */
const unescapeGithub = (s: string) => s.replace(/%0D/gi, "\r").replace(/%0A/gi, "\n").replace(/%3A/gi, ":").replace(/%2C/gi, ",").replace(/%25/g, "%");

export function protocolParser(): LineParser {
  let stage: Stage = "building";
  return {
    line(text): readonly Finding[] {
      if (!text.startsWith("::")) return NONE;
      let m = PROGRESS.exec(text);
      if (m) {
        let pct: number | null = null;
        if (m[1]!.includes("/")) {
          const [done, total] = m[1]!.split("/").map(Number) as [number, number];
          pct = total > 0 ? (done / total) * 100 : null;
        } else if (m[1] !== "-") pct = Number(m[1]);
        let rest = m[2] ?? "";
        const word = rest.split(/\s/, 1)[0]!;
        if ((STAGES as readonly string[]).includes(word)) {
          stage = word as Stage;
          rest = rest.slice(word.length).trim();
        }
        return [progress(pct, stage, rest, "protocol")];
      }
      if ((m = ANNOTATION.exec(text))) {
        const props = new Map<string, string>();
        for (const kv of (m[2] ?? "").split(",")) {
          const i = kv.indexOf("=");
          if (i > 0) props.set(kv.slice(0, i).trim(), unescapeGithub(kv.slice(i + 1).trim()));
        }
        const num = (k: string) => (props.has(k) && /^\d+$/.test(props.get(k)!) ? Number(props.get(k)) : null);
        return [
          diagnostic({
            tool: props.get("tool") ?? "protocol",
            file: props.get("file") ?? null,
            line: num("line"),
            column: num("col") ?? num("column"),
            severity: m[1] === "notice" ? "note" : (m[1] as "error" | "warning"),
            code: props.get("code") ?? props.get("title") ?? null,
            message: unescapeGithub(m[3]!),
          }),
        ];
      }
      if ((m = TESTS.exec(text))) {
        const f = /\bfailures=(.*)$/.exec(m[1]!);
        const counts = f ? m[1]!.slice(0, f.index) : m[1]!;
        const n = (k: string) => Number(new RegExp(`\\b${k}=(\\d+)`).exec(counts)?.[1] ?? 0);
        return [
          testResults({
            tool: "protocol",
            passed: n("passed"),
            failed: n("failed"),
            skipped: n("skipped"),
            failures: f
              ? f[1]!
                  .split(";")
                  .map((s) => s.trim())
                  .filter(Boolean)
              : [],
          }),
        ];
      }
      return NONE;
    },
    flush: () => NONE,
  };
}
