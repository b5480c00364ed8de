// Lines of code, comment and blank per file, counted the way cloc counts them so the figures can
// be checked against it: a blank line is whitespace only (even inside a comment); a comment line
// has comment text and no code; everything else is code. Comment markers inside string literals
// are ignored for the languages where cloc ignores them; Python triple-quoted strings count as
// comments (cloc's docstring rule).

export interface LineCounts {
  code: number;
  comment: number;
  blank: number;
}

interface Syntax {
  line: string[];
  block: [open: string, close: string][];
  /** Quote characters of one-line string literals whose contents hide comment markers. */
  quotes: string[];
}

const C_LIKE: Syntax = { line: ["//"], block: [["/*", "*/"]], quotes: ['"'] };
const HASH: Syntax = { line: ["#"], block: [], quotes: [] };
const DASHES: Syntax = { line: ["--"], block: [], quotes: [] };
const MARKUP: Syntax = { line: [], block: [["<!--", "-->"]], quotes: [] };
const NONE: Syntax = { line: [], block: [], quotes: [] };

/** Comment syntax by linguist language name; languages not listed have no comments. */
const SYNTAX: Record<string, Syntax> = {
  JavaScript: { line: ["//"], block: [["/*", "*/"]], quotes: ["'", '"'] },
  Python: {
    line: ["#"],
    block: [
      ['"""', '"""'],
      ["'''", "'''"],
      ['"""', "'''"],
      ["'''", '"""'],
    ],
    quotes: [],
  },
  CSS: { line: [], block: [["/*", "*/"]], quotes: ['"'] },
  PHP: { line: ["//", "#"], block: [["/*", "*/"]], quotes: ['"'] },
  Ruby: { line: ["#"], block: [["=begin", "=end"]], quotes: [] },
  Lua: { line: ["--"], block: [["--[[", "]]"]], quotes: [] },
  Haskell: { line: ["--"], block: [["{-", "-}"]], quotes: [] },
  SQL: { line: ["--"], block: [["/*", "*/"]], quotes: [] },
  PowerShell: { line: ["#"], block: [["<#", "#>"]], quotes: [] },
  "Emacs Lisp": { line: [";"], block: [], quotes: [] },
  Clojure: { line: [";"], block: [], quotes: [] },
  "Common Lisp": { line: [";"], block: [["#|", "|#"]], quotes: [] },
  Scheme: { line: [";"], block: [], quotes: [] },
  Erlang: { line: ["%"], block: [], quotes: [] },
  TeX: { line: ["%"], block: [], quotes: [] },
  "Vim Script": { line: ['"'], block: [], quotes: [] },
  Fortran: { line: ["!"], block: [], quotes: [] },
  "Fortran Free Form": { line: ["!"], block: [], quotes: [] },
  Assembly: { line: [";", "#"], block: [], quotes: [] },
  OCaml: { line: [], block: [["(*", "*)"]], quotes: [] },
  "Visual Basic .NET": { line: ["'"], block: [], quotes: [] },
  JSON: NONE,
  Text: NONE,
};
for (const l of [
  "C",
  "C++",
  "Objective-C",
  "Objective-C++",
  "Java",
  "Go",
  "Rust",
  "Dart",
  "TypeScript",
  "TSX",
  "C#",
  "Kotlin",
  "Scala",
  "Swift",
  "Groovy",
  "SCSS",
  "Less",
  "JSON5",
  "JSON with Comments",
  "Solidity",
  "Protocol Buffer",
  "Zig",
  "D",
  "Vala",
  "GLSL",
  "HLSL",
  "Cuda",
  "Verilog",
  "SystemVerilog",
  "Stylus",
  "Apex",
  "Hack",
  "Gradle",
  "Processing",
  "Jsonnet",
  "Thrift",
])
  SYNTAX[l] = C_LIKE;
for (const l of [
  "Shell",
  "Bash",
  "Zsh",
  "Fish",
  "YAML",
  "TOML",
  "Makefile",
  "Dockerfile",
  "R",
  "CMake",
  "Elixir",
  "Nix",
  "Perl",
  "Raku",
  "Tcl",
  "Julia",
  "Crystal",
  "Nim",
  "GraphQL",
  "HCL",
  "Starlark",
  "INI",
  "Gemfile.lock",
  "Git Config",
  "Ignore List",
  "Python traceback",
  "Cython",
  "Meson",
  "Awk",
  "sed",
  "Puppet",
  "Terraform",
])
  SYNTAX[l] ??= HASH;
for (const l of ["Ada", "Elm", "PLpgSQL", "PLSQL", "TSQL", "VHDL", "Eiffel"]) SYNTAX[l] ??= DASHES;
for (const l of ["HTML", "XML", "Markdown", "SVG", "Vue", "Svelte", "XSLT", "HTML+ERB", "Handlebars", "MDX"]) SYNTAX[l] ??= MARKUP;

export function hasCommentSyntax(language: string): boolean {
  return language in SYNTAX;
}

/**
 * Characters where something other than code may start (a comment marker or a quote): the scan
 * jumps between them instead of looking at every character.
 */
const specials = new Map<Syntax, RegExp | null>();
function specialsOf(syn: Syntax): RegExp | null {
  let re = specials.get(syn);
  if (re === undefined) {
    const first = new Set([...syn.line, ...syn.block.map(([open]) => open), ...syn.quotes].map((m) => m[0]!));
    re = first.size ? new RegExp(`[${[...first].map((c) => c.replace(/[\\\]^-]/g, "\\$&")).join("")}]`, "g") : null;
    specials.set(syn, re);
  }
  return re;
}
/** Any character that is not a blank within a line (what the scan skips). */
const NOT_BLANK = /[^ \t\f\v]/;
/** Where a string literal quoted with `q` ends, or an escape in it. */
const quoteEnds = new Map<string, RegExp>();
function quoteEndOf(q: string): RegExp {
  let re = quoteEnds.get(q);
  if (!re) quoteEnds.set(q, (re = new RegExp(`[\\\\${q.replace(/[\\\]^-]/g, "\\$&")}]`, "g")));
  return re;
}

/** Counts lines of `text` as `language` (a linguist name; unknown languages have no comments). */
export function countLines(text: string, language: string): LineCounts {
  const syn = SYNTAX[language] ?? NONE;
  const special = specialsOf(syn);
  const counts: LineCounts = { code: 0, comment: 0, blank: 0 };
  const lines = text.split(/\r\n|\n|\r/);
  if (lines.length && lines[lines.length - 1] === "") lines.pop();
  let closeBlock: string | null = null;
  for (const line of lines) {
    if (line.trim() === "") {
      counts.blank++;
      continue;
    }
    if (special === null) {
      counts.code++; // no comment syntax: a line that is not blank is code
      continue;
    }
    let code = false;
    let comment = false;
    let i = 0;
    scan: while (i < line.length) {
      if (closeBlock !== null) {
        comment = true;
        const end = line.indexOf(closeBlock, i);
        if (end < 0) break;
        i = end + closeBlock.length;
        closeBlock = null;
        continue;
      }
      special.lastIndex = i;
      const next = special.exec(line);
      const at = next ? next.index : line.length;
      // Between specials every character is code or a blank.
      if (!code && at > i && NOT_BLANK.test(line.slice(i, at))) code = true;
      if (!next) break;
      // Block openers first: Lua's `--[[` must win over its `--` line comment.
      for (const [open, close] of syn.block) {
        if (line.startsWith(open, at)) {
          comment = true;
          closeBlock = close;
          i = at + open.length;
          continue scan;
        }
      }
      for (const marker of syn.line) {
        if (line.startsWith(marker, at)) {
          comment = true;
          break scan;
        }
      }
      code = true;
      i = at + 1;
      const ch = line[at]!;
      if (syn.quotes.includes(ch)) {
        // Inside a one-line string: skip escapes up to the closing quote (or the end of the line).
        const end = quoteEndOf(ch);
        for (;;) {
          end.lastIndex = i;
          const m = end.exec(line);
          if (!m) break scan;
          if (line[m.index] === "\\") i = m.index + 2;
          else {
            i = m.index + 1;
            break;
          }
        }
      }
    }
    if (code) counts.code++;
    else if (comment) counts.comment++;
    else counts.code++;
  }
  return counts;
}
