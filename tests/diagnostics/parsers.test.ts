// Parsers on real tool output captured on this machine (scripts/capture-diagnostics-fixtures.sh).
import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { createLineScanner, estimateEtaMs, type Diagnostic, type Finding, type TestResults } from "../../functions/_shared/diagnostics/index.ts";

const fixture = (name: string) => readFileSync(new URL(`./fixtures/${name}.txt`, import.meta.url), "utf8");

function scan(text: string, command?: string): Finding[] {
  const s = createLineScanner({ command });
  return [...s.push(text), ...s.end()];
}
const diagnostics = (f: Finding[]) => f.filter((x) => x.type === "diagnostic").map((x) => x.data as Diagnostic);
const results = (f: Finding[]) => f.filter((x) => x.type === "test_results").map((x) => x.data as TestResults);
const progress = (f: Finding[]) => f.filter((x) => x.type === "progress_update").map((x) => x.data);
const where = (d: Diagnostic) => `${d.tool} ${d.severity} ${d.file}:${d.line}:${d.column} ${d.code}`;

describe("compilers", () => {
  it("tsc, plain and --pretty (ANSI colours), TypeScript 5 and Debian's 4.8", () => {
    const expected = ["tsc error src/app.ts:1:24 TS2307", "tsc error src/app.ts:3:7 TS2322", "tsc error src/app.ts:5:16 TS7006"];
    expect(diagnostics(scan(fixture("tsc"))).map(where)).toEqual(expected);
    const pretty = scan(fixture("tsc-pretty"));
    expect(diagnostics(pretty).map(where)).toEqual(expected);
    expect(diagnostics(pretty)[1]!.message).toBe("Type 'string' is not assignable to type 'number'.");
    expect(progress(pretty).at(-1)).toMatchObject({ percentage: 100, stage: "compiling", message: "tsc: found 3 errors" });
    const debian = diagnostics(scan(fixture("tsc-debian")));
    expect(debian.map(where)).toContain("tsc error src/app.ts:3:7 TS2322");
    expect(debian.map(where)).toContain("tsc error tsconfig.json:1:116 TS6046");
  });

  it("tsc -b --verbose: project k of n as progress", () => {
    const f = scan(fixture("tsc-build"));
    expect(progress(f).map((p) => p.percentage)).toEqual([0, 50]);
    expect(progress(f)[1]!.message).toMatch(/^tsc: building project 2 of 2 /);
    expect(diagnostics(f).map(where)).toEqual(["tsc error b/b.ts:1:14 TS2322"]);
  });

  it("gcc: errors, warnings with their -W flag, notes; excerpts and carets skipped", () => {
    const d = diagnostics(scan(fixture("gcc")));
    expect(d.map(where)).toEqual([
      "gcc warning bad.c:7:15 -Wint-conversion",
      "gcc error bad.c:8:13 null",
      "gcc note bad.c:3:12 null",
      "gcc error bad.c:9:28 null",
      "gcc warning bad.c:6:9 -Wunused-variable",
    ]);
    expect(d[1]!.message).toBe("too many arguments to function ‘add’");
    expect(d[3]!.message).toBe("expected ‘;’ before ‘return’");
    expect(diagnostics(scan(fixture("gcc"), "clang -c bad.c"))[0]!.tool).toBe("clang");
  });

  it("clang: same format, named clang when the command runs it; the summary line is not a diagnostic", () => {
    const d = diagnostics(scan(fixture("clang"), "clang-14 -Wall -c bad.c"));
    expect(d.map(where)).toEqual(["clang warning bad.c:7:11 -Wint-conversion", "clang error bad.c:8:23 null", "clang note bad.c:3:12 null", "clang error bad.c:9:28 null"]);
    expect(d[1]!.message).toBe("too many arguments to function call, expected 2, have 3");
  });

  it("g++: template errors with notes in system headers", () => {
    const d = diagnostics(scan(fixture("gxx")));
    expect(d.filter((x) => x.severity === "error").map(where)).toEqual([
      "gcc error tmpl.cpp:9:16 null",
      "gcc error tmpl.cpp:9:17 -fpermissive",
      "gcc error tmpl.cpp:9:17 -fpermissive",
      "gcc error tmpl.cpp:4:47 null",
    ]);
    expect(d.filter((x) => x.severity === "note")).toHaveLength(4);
    expect(d.find((x) => x.severity === "note")!.file).toBe("/usr/include/c++/12/bits/stl_vector.h");
  });

  it("the linker's undefined reference", () => {
    expect(diagnostics(scan(fixture("gcc-link")))).toEqual([
      { tool: "ld", file: "link.c", line: null, column: null, severity: "error", code: null, message: "undefined reference to `missing_function'" },
    ]);
  });

  it("make: the compiler's diagnostics, then the failed target; CMake percentages as progress", () => {
    const d = diagnostics(scan(fixture("make")));
    expect(d).toHaveLength(6);
    expect(d.at(-1)).toEqual({ tool: "make", file: "Makefile", line: 4, column: null, severity: "error", code: null, message: "target bad.o failed (Error 1)" });
    const p = progress(scan(fixture("cmake-make")));
    expect(p.map((x) => x.percentage)).toEqual([25, 50, 50, 75, 100, 100]);
    expect(p[0]).toMatchObject({ stage: "compiling", message: "make: Building C object CMakeFiles/util.dir/src/util.c.o" });
    expect(p[1]!.stage).toBe("building");
  });

  it("cargo and rustc: JSON and human formats agree; summaries are not diagnostics", () => {
    const expected = ["rustc error src/main.rs:4:24 E0425", "rustc error src/main.rs:3:18 E0308"];
    for (const name of ["cargo-json", "cargo-human", "rustc-json"]) expect(diagnostics(scan(fixture(name))).map(where), name).toEqual(expected);
    expect(diagnostics(scan(fixture("cargo-human")))[1]!.message).toBe("mismatched types");
    expect(progress(scan(fixture("cargo-json")))).toEqual([
      expect.objectContaining({ stage: "compiling", message: "cargo: compiling demo v0.1.0" }),
      expect.objectContaining({ percentage: 100, message: "cargo: build failed" }),
    ]);
  });

  it("a Rust header whose location has not arrived is held, then reported on flush", () => {
    const s = createLineScanner();
    expect(s.push("error[E0308]: mismatched types\n")).toEqual([]);
    expect(diagnostics(s.push(" --> src/main.rs:3:18\n")).map(where)).toEqual(["rustc error src/main.rs:3:18 E0308"]);
    expect(s.push("error[E0425]: cannot find value\n")).toEqual([]);
    expect(diagnostics(s.flush()).map(where)).toEqual(["rustc error null:null:null E0425"]);
  });
});

describe("runtimes and test runners", () => {
  it("cargo test: per-test progress, the panic location, results with failing names", () => {
    const f = scan(fixture("cargo-test"));
    expect(results(f)).toEqual([{ tool: "cargo", passed: 1, failed: 1, skipped: 1, failures: ["tests::adds_wrong"] }]);
    expect(
      progress(f)
        .filter((p) => p.stage === "testing")
        .map((p) => p.percentage),
    ).toEqual([null, 33.3, 66.7, 100]);
    expect(diagnostics(f)).toEqual([
      { tool: "cargo", file: "src/lib.rs", line: 7, column: 31, severity: "error", code: "panic", message: "tests::adds_wrong panicked: assertion `left == right` failed" },
    ]);
  });

  it("python: a traceback is reported at its innermost frame; a SyntaxError too", () => {
    expect(diagnostics(scan(fixture("python-traceback")))).toEqual([
      {
        tool: "python",
        file: "/tmp/cogo-diag-capture/py/app.py",
        line: 2,
        column: null,
        severity: "error",
        code: "ValueError",
        message: "invalid literal for int() with base 10: 'seven'",
      },
    ]);
    expect(diagnostics(scan(fixture("python-syntax"))).map(where)).toEqual(["python error /tmp/cogo-diag-capture/py/syntax.py:1:null SyntaxError"]);
  });

  it("pytest: progress percentages, one diagnostic per failure, the summary with failing names", () => {
    const f = scan(fixture("pytest"));
    expect(progress(f).map((p) => p.percentage)).toEqual([66, 100]);
    expect(diagnostics(f)).toEqual([
      { tool: "pytest", file: "test_calc.py", line: 13, column: null, severity: "error", code: "AssertionError", message: "test_adds_wrong: assert 4 == 5" },
      { tool: "pytest", file: "test_calc.py", line: 23, column: null, severity: "error", code: "ValueError", message: "TestMore.test_raises: ValueError: boom" },
    ]);
    expect(results(f)).toEqual([{ tool: "pytest", passed: 3, failed: 2, skipped: 1, failures: ["test_calc.py::test_adds_wrong", "test_calc.py::TestMore::test_raises"] }]);
  });

  it("eslint (stylish): file header, then line:col severity message rule", () => {
    const d = diagnostics(scan(fixture("eslint")));
    expect(d.map(where)).toEqual([
      "eslint error /tmp/cogo-diag-capture/js/lint.js:1:7 no-unused-vars",
      "eslint error /tmp/cogo-diag-capture/js/lint.js:2:5 no-undef",
      "eslint warning /tmp/cogo-diag-capture/js/lint.js:2:11 eqeqeq",
      "eslint error /tmp/cogo-diag-capture/js/lint.js:3:3 no-undef",
    ]);
    expect(d[0]!.message).toBe("'unused' is assigned a value but never used");
    expect(progress(scan(fixture("eslint")))).toEqual([{ percentage: 100, stage: "analyzing", message: "eslint: 4 problems (3 errors, 1 warning)", source: "tool" }]);
  });

  it("node: an uncaught error at its first frame outside node's internals", () => {
    expect(diagnostics(scan(fixture("node-error")))).toEqual([
      {
        tool: "node",
        file: "/tmp/cogo-diag-capture/js/crash.js",
        line: 2,
        column: 26,
        severity: "error",
        code: "TypeError",
        message: "Cannot read properties of undefined (reading 'value')",
      },
    ]);
    // An error line with no stack after it is not reported (Python's exception lines look alike).
    expect(diagnostics(scan("TypeError: nope\nsomething else\n"))).toEqual([]);
  });

  it("vitest, plain and coloured: failures with location and the Tests summary", () => {
    for (const name of ["vitest", "vitest-color"]) {
      const f = scan(fixture(name));
      expect(results(f), name).toEqual([{ tool: "vitest", passed: 2, failed: 1, skipped: 1, failures: ["sum.test.js > sum > adds wrong"] }]);
      expect(diagnostics(f), name).toEqual([
        {
          tool: "vitest",
          file: "sum.test.js",
          line: 8,
          column: 23,
          severity: "error",
          code: null,
          message: "sum.test.js > sum > adds wrong: AssertionError: expected 4 to be 5 // Object.is equality",
        },
      ]);
      expect(
        progress(f).map((p) => p.message),
        name,
      ).toEqual(["vitest: 1 file done (sum.test.js, 3 tests)", "vitest: 2 files done (other.test.js, 1 tests)"]);
    }
  });

  it("jest: failures with location and the Tests: summary", () => {
    const f = scan(fixture("jest"));
    expect(results(f)).toEqual([{ tool: "jest", passed: 2, failed: 1, skipped: 1, failures: ["sum › adds wrong"] }]);
    expect(diagnostics(f).map(where)).toEqual(["jest error sum.test.js:8:23 null"]);
    expect(progress(f)).toHaveLength(2);
  });

  it("npm: the install summary", () => {
    expect(progress(scan(fixture("npm-install")))).toEqual([
      { percentage: 100, stage: "building", message: expect.stringMatching(/^npm: added \d+ packages in /), source: "tool" },
    ]);
    expect(progress(scan("> app@1.0.0 test\n> vitest run\n"))).toEqual([{ percentage: null, stage: "testing", message: "npm: running script test", source: "tool" }]);
  });
});

describe("the line protocol", () => {
  it("::progress with a percentage, done/total or -, an optional stage and a message", () => {
    const f = scan("::progress 40 compiling building foo\n::progress 3/4 step three\n::progress - testing\n::progress 250\n::progressive\n");
    expect(progress(f)).toEqual([
      { percentage: 40, stage: "compiling", message: "building foo", source: "protocol" },
      { percentage: 75, stage: "compiling", message: "step three", source: "protocol" },
      { percentage: null, stage: "testing", message: "", source: "protocol" },
      { percentage: 100, stage: "testing", message: "", source: "protocol" },
    ]);
  });

  it("::error/::warning/::notice in GitHub Actions syntax, and ::test-results", () => {
    const f = scan("::error file=src/a.ts,line=3,col=5,code=E1::bad%3A thing\n::notice::just so\n::test-results passed=3 failed=1 skipped=2 failures=suite > a b;c\n");
    expect(diagnostics(f)).toEqual([
      { tool: "protocol", file: "src/a.ts", line: 3, column: 5, severity: "error", code: "E1", message: "bad: thing" },
      { tool: "protocol", file: null, line: null, column: null, severity: "note", code: null, message: "just so" },
    ]);
    expect(results(f)).toEqual([{ tool: "protocol", passed: 3, failed: 1, skipped: 2, failures: ["suite > a b", "c"] }]);
  });
});

describe("line handling", () => {
  it("gives the same findings however the output is split into reads", () => {
    const text = fixture("pytest") + fixture("gcc") + fixture("cargo-human") + fixture("node-error");
    const whole = scan(text);
    const s = createLineScanner();
    const pieces: Finding[] = [];
    for (let i = 0; i < text.length; i += 7) pieces.push(...s.push(text.slice(i, i + 7)));
    pieces.push(...s.end());
    expect(pieces).toEqual(whole);
    expect(diagnostics(whole).length).toBe(2 + 5 + 2 + 1);
  });

  it("reports a line as soon as its newline arrives, and an unterminated last line at the end", () => {
    const s = createLineScanner();
    expect(s.push("bad.c:1:2: error: oops")).toEqual([]);
    expect(diagnostics(s.push("\n")).map(where)).toEqual(["gcc error bad.c:1:2 null"]);
    expect(s.push("x.c:3:4: warning: last")).toEqual([]);
    expect(diagnostics(s.end()).map(where)).toEqual(["gcc warning x.c:3:4 null"]);
  });

  it("treats CRLF as a newline, a bare CR as a redraw, and skips the rest of an over-long line", () => {
    expect(diagnostics(scan("a.c:1:1: error: crlf\r\n")).map((d) => d.message)).toEqual(["crlf"]);
    expect(progress(scan("::progress 10\r::progress 20\r::progress 30\n")).map((p) => p.percentage)).toEqual([10, 20, 30]);
    const long = "y".repeat(200_000) + ": error: not a diagnostic\nb.c:2:2: error: next\n";
    expect(diagnostics(scan(long)).map((d) => d.message)).toEqual(["next"]);
  });

  it("caps text taken from untrusted output", () => {
    const [d] = diagnostics(scan(`c.c:1:1: error: ${"m".repeat(10_000)}\n`));
    expect(d!.message).toHaveLength(4096);
    expect(d!.message.endsWith("…")).toBe(true);
    const names = Array.from({ length: 1500 }, (_, i) => `t${i}`).join(";");
    expect(results(scan(`::test-results passed=0 failed=1500 failures=${names}\n`))[0]!.failures).toHaveLength(1000);
  });
});

describe("ETA", () => {
  it("uses history, then blends in progress, and never goes negative", () => {
    expect(estimateEtaMs(1000, null, null)).toBeNull();
    expect(estimateEtaMs(1000, null, 5000)).toBe(4000);
    expect(estimateEtaMs(1000, 50, null)).toBe(1000);
    expect(estimateEtaMs(1000, 50, 5000)).toBe(2500);
    expect(estimateEtaMs(9000, null, 5000)).toBeNull();
    expect(estimateEtaMs(9000, 90, 5000)).toBe(1000);
    expect(estimateEtaMs(100, 2, null)).toBeNull();
    expect(estimateEtaMs(3000, 100, 5000)).toBe(0);
  });
});
