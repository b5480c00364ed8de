// rustc and cargo: JSON messages (`cargo … --message-format=json`, `rustc --error-format=json`),
// the human format (`error[E0308]: …` held until its ` --> file:line:col`), cargo's progress lines
// and `cargo test` results (`test x ... FAILED`, `test result: …`), and test panics.
import { diagnostic, NONE, progress, testResults, type Diagnostic, type Finding, type LineParser, type Severity } from "./types.ts";

const HEADER = /^(error|warning)(?:\[([A-Z]\d+)\])?: (.*)$/;
const ARROW = /^\s*--> (.+?):(\d+):(\d+)$/;
/** Summaries that repeat what was already reported, or that have no place in the code. */
const SUMMARY = /^(aborting due to|could not compile|test failed, to rerun|build failed)|generated \d+ warnings?|previous errors?$/;
const COMPILING = /^\s+Compiling (\S+) v(\S+)/;
const FINISHED = /^\s+Finished /;
const RUNNING = /^\s+(?:Running|Doc-tests) (.+)$/;
const RUNNING_TESTS = /^running (\d+) tests?$/;
const TEST_LINE = /^test (\S+) \.\.\. (ok|FAILED|ignored)\b/;
const TEST_RESULT = /^test result: (?:ok|FAILED)\. (\d+) passed; (\d+) failed; (\d+) ignored/;
const PANIC = /^thread '(.+?)'(?: \(\d+\))? panicked at (.+?):(\d+):(\d+):$/;
/** How every line this parser reads starts, unless it holds a message: a cheap first test. */
const CANDIDATE = /^(?:[{ ]|error|warning|thread '|running |test )/;

interface RustcSpan {
  file_name: string;
  line_start: number;
  column_start: number;
  is_primary: boolean;
}
interface RustcMessage {
  message: string;
  level: string;
  code: { code: string } | null;
  spans: RustcSpan[];
}

function fromJson(m: RustcMessage): readonly Finding[] {
  const severity: Severity | undefined = m.level === "error" || m.level === "warning" ? m.level : m.level === "note" || m.level === "help" ? "note" : undefined;
  if (!severity || SUMMARY.test(m.message)) return NONE; // failure-note and "error: internal compiler error" variants
  const span = m.spans.find((s) => s.is_primary) ?? m.spans[0];
  return [
    diagnostic({
      tool: "rustc",
      file: span?.file_name ?? null,
      line: span?.line_start ?? null,
      column: span?.column_start ?? null,
      severity,
      code: m.code?.code ?? null,
      message: m.message,
    }),
  ];
}

export function rustParser(): LineParser {
  let held: Diagnostic | undefined;
  let panic: Diagnostic | undefined;
  let total = 0;
  let done = 0;
  let failures: string[] = [];

  const release = (): readonly Finding[] => {
    const out: Finding[] = [];
    // A header without a location that is only a summary ("could not compile …") is dropped.
    if (held && (held.file || held.code)) out.push(diagnostic(held));
    if (panic) out.push(diagnostic(panic));
    held = panic = undefined;
    return out;
  };

  return {
    line(text) {
      if (!held && !panic && !CANDIDATE.test(text)) return NONE;
      if (text.startsWith("{")) {
        if (!text.includes('"compiler-message"') && !text.includes('"$message_type":"diagnostic"') && !text.includes('"build-finished"')) return NONE;
        try {
          const obj = JSON.parse(text) as { reason?: string; success?: boolean; message?: RustcMessage } & RustcMessage;
          if (obj.reason === "build-finished") return [progress(100, "building", `cargo: build ${obj.success ? "finished" : "failed"}`)];
          return fromJson(obj.reason === "compiler-message" ? obj.message! : obj);
        } catch {
          return NONE;
        }
      }
      if (held) {
        const a = ARROW.exec(text);
        if (a) {
          Object.assign(held, { file: a[1]!, line: Number(a[2]), column: Number(a[3]) });
          return release();
        }
      }
      if (panic) {
        panic.message = text ? `${panic.message}: ${text}` : panic.message;
        return release();
      }
      const out = held ? release() : [];
      const h = HEADER.exec(text);
      if (h && !SUMMARY.test(h[3]!)) {
        held = { tool: "rustc", file: null, line: null, column: null, severity: h[1] as Severity, code: h[2] ?? null, message: h[3]! };
        return out;
      }
      const p = PANIC.exec(text);
      if (p) {
        panic = { tool: "cargo", file: p[2]!, line: Number(p[3]), column: Number(p[4]), severity: "error", code: "panic", message: `${p[1]} panicked` };
        return out;
      }
      let m = COMPILING.exec(text);
      if (m) return [...out, progress(null, "compiling", `cargo: compiling ${m[1]} v${m[2]}`)];
      if (FINISHED.test(text)) return [...out, progress(100, "building", `cargo: ${text.trim()}`)];
      if ((m = RUNNING.exec(text))) return [...out, progress(null, "testing", `cargo: running ${m[1]}`)];
      if ((m = RUNNING_TESTS.exec(text))) {
        total = Number(m[1]);
        done = 0;
        failures = [];
        return out;
      }
      if ((m = TEST_LINE.exec(text))) {
        done++;
        if (m[2] === "FAILED") failures.push(m[1]!);
        return [...out, progress(total ? (done / total) * 100 : null, "testing", `cargo test: ${done}${total ? ` of ${total}` : ""} (${m[1]} ${m[2]})`)];
      }
      if ((m = TEST_RESULT.exec(text))) {
        const r = testResults({ tool: "cargo", passed: Number(m[1]), failed: Number(m[2]), skipped: Number(m[3]), failures });
        failures = [];
        return [...out, r];
      }
      return out;
    },
    flush: release,
  };
}
