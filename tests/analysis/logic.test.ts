// Pure parts of the analysis: the source guard, globs, line counting, import resolution.
import { describe, expect, it } from "vitest";
import { globToRegExp, pathFilter } from "../../functions/_shared/analysis/globs.ts";
import { resolveImports } from "../../functions/_shared/analysis/imports.ts";
import { countLines } from "../../functions/_shared/analysis/lines.ts";
import { checkSource } from "../../functions/_shared/analysis/source.ts";
import { detectLanguage } from "../../worker/analysis/languages.ts";
import { parseBlobs, parseTree } from "../../worker/analysis/clone.ts";
import { isMinified, searchTerms } from "../../worker/analysis/run.ts";
import { parseSource } from "../../worker/analysis/parse.ts";

const closed = { allowPrivateHosts: false, localRoots: [] };

describe("source guard", () => {
  it("accepts public https URLs and normalises them", () => {
    expect(checkSource("https://github.com/a/b.git#frag", closed)).toEqual({ kind: "url", url: "https://github.com/a/b.git", host: "github.com", port: 443 });
  });
  it.each([
    ["ssh://git@github.com/a/b", /scheme ssh/],
    ["git://github.com/a/b", /scheme git/],
    ["ext::sh -c touch% /tmp/x", /scheme ext/],
    ["git@github.com:a/b.git", /scp-style/],
    ["http://github.com/a/b", /plain http/],
    ["https://user:pw@github.com/a/b", /credentials/],
    ["http://169.254.169.254/latest", /169\.254\.0\.0\/16 \(link-local\)/],
    ["https://2852039166/", /169\.254\.0\.0\/16 \(link-local\)/], // 169.254.169.254 as one number
    ["https://0x7f.1/", /loopback/],
    ["https://[::1]/r", /loopback/],
    ["https://[::ffff:10.0.0.1]/r", /private/],
    ["https://[fd00:ec2::254]/r", /unique local/],
    ["https://192.168.1.1/r", /private/],
    ["https://172.20.0.1/r", /private/],
    ["https://100.64.0.1/r", /carrier-grade/],
    ["https://metadata.google.internal/r", /metadata/],
    ["https://intranet/r", /fully qualified/],
    ["https://foo.localhost/r", /loopback/],
    ["/srv/repos/x", /not allowed by this deployment/],
    ["file:///srv/repos/x", /not allowed by this deployment/],
  ])("refuses %s", (source, message) => {
    expect(() => checkSource(source, closed)).toThrow(message);
  });
  it("allows private hosts and http only when the operator says so", () => {
    expect(checkSource("http://127.0.0.1:8080/r.git", { allowPrivateHosts: true, localRoots: [] })).toMatchObject({ kind: "url", host: "127.0.0.1", port: 8080 });
  });
  it("keeps local paths inside the allowed roots, lexically", () => {
    const policy = { allowPrivateHosts: false, localRoots: ["/srv/repos/"] };
    expect(checkSource("/srv/repos/a/../b", policy)).toEqual({ kind: "local", path: "/srv/repos/b" });
    expect(checkSource("file:///srv/repos/a%20b", policy)).toEqual({ kind: "local", path: "/srv/repos/a b" });
    expect(() => checkSource("/srv/repos/../etc", policy)).toThrow(/outside/);
    expect(() => checkSource("/srv/repos-other/x", policy)).toThrow(/outside/);
    expect(() => checkSource("file://host/srv/repos/x", policy)).toThrow(/name no host/);
  });
});

describe("globs", () => {
  it("match like .gitignore patterns", () => {
    expect(globToRegExp("*.ts").test("a/b/c.ts")).toBe(true);
    expect(globToRegExp("src/**/*.ts").test("src/a/b.ts")).toBe(true);
    expect(globToRegExp("src/**/*.ts").test("src/b.ts")).toBe(true);
    expect(globToRegExp("src/*.ts").test("src/a/b.ts")).toBe(false);
    expect(globToRegExp("*.{js,ts}").test("x.js")).toBe(true);
    expect(globToRegExp("vendor/").test("vendor/a/b.c")).toBe(true);
    expect(globToRegExp("file?.[ch]").test("lib/file1.h")).toBe(true);
    const keep = pathFilter(["src/**"], ["**/*.test.ts", "*.map"]);
    expect(["src/a.ts", "src/a.test.ts", "lib/b.ts", "src/x.js.map"].filter(keep)).toEqual(["src/a.ts"]);
  });
});

describe("line counts", () => {
  it("count code, comments and blanks the way cloc does", () => {
    expect(countLines("a();\n\n// c\n/* b\n\n b */ x();\n  \n", "TypeScript")).toEqual({ code: 2, comment: 2, blank: 3 });
    expect(countLines('const s = "/* not a comment";\nfoo();\n', "JavaScript")).toEqual({ code: 2, comment: 0, blank: 0 });
    expect(countLines('"""doc\nmore"""\nx = 1  # c\n# only\n', "Python")).toEqual({ code: 1, comment: 3, blank: 0 });
    expect(countLines("--[[ block\n]]\n-- line\nprint(1)\n", "Lua")).toEqual({ code: 1, comment: 3, blank: 0 });
    expect(countLines("a\r\nb\r\n", "Text")).toEqual({ code: 2, comment: 0, blank: 0 });
    // Escaped quotes stay inside the string; an unclosed quote ends with its line.
    expect(countLines("const s = 'it\\'s // no /* no';\n'open /*\n/* c */ \t\n// d\n", "JavaScript")).toEqual({ code: 2, comment: 2, blank: 0 });
  });
});

describe("languages", () => {
  it("come from linguist's table, with ambiguous extensions settled", () => {
    expect(["a.ts", "a.tsx", "a.h", "a.hpp", "a.rs", "a.md", "Dockerfile", "a.d.ts", "a.dart", "x.unknownext"].map((p) => detectLanguage(p))).toEqual([
      "TypeScript",
      "TSX",
      "C",
      "C++",
      "Rust",
      "Markdown",
      "Dockerfile",
      "TypeScript",
      "Dart",
      "",
    ]);
    expect(detectLanguage("bin/tool", "#!/usr/bin/env python3\n")).toBe("Python");
  });
});

describe("import resolution", () => {
  it("resolves relative and package-relative imports to files of the repository", () => {
    const edges = resolveImports([
      {
        path: "src/a.ts",
        language: "TypeScript",
        imports: [
          { specifier: "./b.js", kind: "import", line: 1 },
          { specifier: "../lib", kind: "import", line: 2 },
          { specifier: "react", kind: "import", line: 3 },
        ],
      },
      { path: "src/b.ts", language: "TypeScript", imports: [] },
      { path: "lib/index.ts", language: "TypeScript", imports: [] },
      {
        path: "pkg/m.py",
        language: "Python",
        imports: [
          { specifier: "pkg.util", kind: "import", line: 1 },
          { specifier: "..top", kind: "import", line: 2 },
        ],
      },
      { path: "pkg/util.py", language: "Python", imports: [] },
      { path: "top.py", language: "Python", imports: [] },
      { path: "src/main/java/a/App.java", language: "Java", imports: [{ specifier: "a.b.Util", kind: "import", line: 1 }] },
      { path: "src/main/java/a/b/Util.java", language: "Java", imports: [] },
      { path: "cmd/main.go", language: "Go", imports: [{ specifier: "example.com/m/internal/x", kind: "import", line: 1 }] },
      { path: "internal/x/x.go", language: "Go", imports: [] },
      { path: "src/lib.rs", language: "Rust", imports: [{ specifier: "crate::net::tcp::Stream", kind: "use", line: 1 }] },
      { path: "src/net/tcp.rs", language: "Rust", imports: [] },
    ]);
    expect(edges.map((e) => `${e.path} ${e.specifier} → ${e.resolvedPath}`)).toEqual([
      "src/a.ts ./b.js → src/b.ts",
      "src/a.ts ../lib → lib/index.ts",
      "src/a.ts react → null",
      "pkg/m.py pkg.util → pkg/util.py",
      "pkg/m.py ..top → top.py",
      "src/main/java/a/App.java a.b.Util → src/main/java/a/b/Util.java",
      "cmd/main.go example.com/m/internal/x → internal/x",
      "src/lib.rs crate::net::tcp::Stream → src/net/tcp.rs",
    ]);
  });
});

describe("git output parsing", () => {
  it("reads ls-tree records and cat-file batches, whatever the bytes in paths", () => {
    const tree = Buffer.from("100644 blob " + "a".repeat(40) + "      12\tdir/with\ttab\0" + "120000 blob " + "b".repeat(40) + "       5\tlink\0");
    expect(parseTree(tree)).toEqual([
      { mode: "100644", type: "blob", hash: "a".repeat(40), size: 12, path: "dir/with\ttab" },
      { mode: "120000", type: "blob", hash: "b".repeat(40), size: 5, path: "link" },
    ]);
    const blobs = parseBlobs(Buffer.concat([Buffer.from(`${"c".repeat(40)} blob 3\nx\ny\n${"d".repeat(40)} missing\n`)]));
    expect([...blobs].map(([h, b]) => [h, b.toString()])).toEqual([["c".repeat(40), "x\ny"]]);
    expect(() => parseBlobs(Buffer.from(`${"c".repeat(40)} blob 30\nshort`))).toThrow(/truncated/);
  });
});

describe("per-file helpers", () => {
  it("treat minified JavaScript as linguist does, and index each distinct word once", () => {
    expect(isMinified("var a=1;".repeat(50) + "\n", "JavaScript")).toBe(true);
    expect(isMinified("const a = 1;\nconst b = 2;\n", "JavaScript")).toBe(false);
    expect(isMinified("x".repeat(500), "TypeScript")).toBe(false);
    expect(searchTerms("foo(bar, foo_bar); foo émoji42")).toBe("foo bar foo_bar émoji42");
  });
});

describe("symbols of one file", () => {
  const show = (text: string, language: string) => parseSource(text, language)!.symbols.map((s) => `${s.kind} ${s.parent ? s.parent + "." : ""}${s.name}${s.exported ? " +" : ""}`);
  it("name the nearest enclosing class, stop at an enclosing function, and export only what an export statement holds", () => {
    const ts = `export class A {
  m() { function inner() {} }
}
const B = class { n() {} };
function outer() { class C { k() {} } }
export default (function () { function notExported() {} })();
export const f = () => 1, g = 2;
export { B };
export { x } from "./x";
`;
    // Same line: by name. A function in a method belongs to the class; an anonymous class names no parent.
    expect(show(ts, "TypeScript")).toEqual([
      "class A +",
      "method A.inner",
      "method A.m",
      "variable B",
      "method n",
      "class C",
      "method C.k",
      "function outer",
      "function notExported",
      "function f +",
      "variable g +",
      "export B +",
    ]);
  });
  it("keep imports in order: statements, then require and import() calls", () => {
    const js = `const a = require("a");\nimport b from "b";\nexport * from "c";\nimport("d");\n`;
    expect(parseSource(js, "JavaScript")!.imports.map((i) => `${i.kind} ${i.specifier}`)).toEqual(["import b", "reexport c", "require a", "dynamic d"]);
  });
  it("take a Rust impl's type and a C++ class as parents", () => {
    expect(show("impl T { pub fn new() {} }\nfn f() { fn g() {} }\n", "Rust")).toEqual(["method T.new +", "function f", "function g"]);
    expect(show("class K { int s() { return 1; } };\nint K::t() { return 2; }\n", "C++")).toEqual(["class K +", "method K.s +", "method K.t +"]);
  });
});
