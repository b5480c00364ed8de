// The event contract of diagnostics, test results and progress (camelCase JSON, as broadcast on
// `task:<id>`), and the shape every line parser has.

export const SEVERITIES = ["error", "warning", "note"] as const;
export type Severity = (typeof SEVERITIES)[number];

export const STAGES = ["compiling", "building", "testing", "analyzing"] as const;
export type Stage = (typeof STAGES)[number];

/** Event `diagnostic`: one compiler/linter/runtime message. Location fields are null when the tool gave none. */
export interface Diagnostic {
  tool: string;
  file: string | null;
  line: number | null;
  column: number | null;
  severity: Severity;
  code: string | null;
  message: string;
}

/** Event `test_results`: one test run's summary (one per summary line the runner prints). */
export interface TestResults {
  tool: string;
  passed: number;
  failed: number;
  skipped: number;
  failures: string[];
}

/** Event `progress_update`. */
export interface ProgressUpdate {
  percentage: number | null;
  stage: Stage;
  message: string;
  etaMs: number | null;
  source: "plan" | "tool" | "protocol";
}

/** Progress as a parser sees it; the worker adds `etaMs`. */
export type ToolProgress = Omit<ProgressUpdate, "etaMs" | "source"> & { source: "tool" | "protocol" };

export type Finding = { type: "diagnostic"; data: Diagnostic } | { type: "test_results"; data: TestResults } | { type: "progress_update"; data: ToolProgress };

/**
 * A parser of one stream's lines. `line` gets each line without its newline and with terminal
 * escapes removed; it returns what that line completes. Parsers that must see a following line
 * before they can report (a Rust header before its ` --> file:line:col`, a JS error before its
 * first `at` frame) hold it; `flush` reports what is held (called after a quiet spell and at
 * the end of the stream) but keeps context such as the failures a runner listed so far.
 */
export interface LineParser {
  line(text: string): readonly Finding[];
  flush(): readonly Finding[];
}

/** The common answer, shared rather than allocated per line. */
export const NONE: readonly Finding[] = Object.freeze([]);

/** Output is untrusted: one event's text fields are capped (a long line is cut, not dropped). */
export const MAX_TEXT = 4096;
export const MAX_FAILURES = 1000;
const cap = (s: string) => (s.length > MAX_TEXT ? s.slice(0, MAX_TEXT - 1) + "…" : s);

export const diagnostic = (d: Diagnostic): Finding => ({
  type: "diagnostic",
  data: { ...d, file: d.file === null ? null : cap(d.file), code: d.code === null ? null : cap(d.code), message: cap(d.message) },
});
export const testResults = (t: TestResults): Finding => ({ type: "test_results", data: { ...t, failures: t.failures.slice(0, MAX_FAILURES).map(cap) } });
export const progress = (percentage: number | null, stage: Stage, message: string, source: "tool" | "protocol" = "tool"): Finding => ({
  type: "progress_update",
  data: { percentage: percentage === null ? null : Math.max(0, Math.min(100, Math.round(percentage * 10) / 10)), stage, message: cap(message), source },
});

/** Counts like "2 failed, 3 passed, 1 skipped" or "1 failed | 2 passed": word → number. */
export function countsOf(text: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const m of text.matchAll(/(\d+) ([a-z]+)/g)) out.set(m[2]!, (out.get(m[2]!) ?? 0) + Number(m[1]));
  return out;
}
