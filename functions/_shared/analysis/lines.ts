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
  Python: { line: ["#"], block: [['"""', '"""'], ["'''", "'''"], ['"""', "'''"], ["'''", '"""']], quotes: [] },
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
for (const l of ["C", "C++", "Objective-C", "Objective-C++", "Java", "Go", "Rust", "Dart", "TypeScript", "TSX", "C#", "Kotlin", "Scala", "Swift", "Groovy", "SCSS", "Less", "JSON5", "JSON with Comments", "Solidity", "Protocol Buffer", "Zig", "D", "Vala", "GLSL", "HLSL", "Cuda", "Verilog", "SystemVerilog", "Stylus", "Apex", "Hack", "Gradle", "Processing", "Jsonnet", "Thrift"]) SYNTAX[l] = C_LIKE;
for (const l of ["Shell", "Bash", "Zsh", "Fish", "YAML", "TOML", "Makefile", "Dockerfile", "R", "CMake", "Elixir", "Nix", "Perl", "Raku", "Tcl", "Julia", "Crystal", "Nim", "GraphQL", "HCL", "Starlark", "INI", "Gemfile.lock", "Git Config", "Ignore List", "Python traceback", "Cython", "Meson", "Awk", "sed", "Puppet", "Terraform"]) SYNTAX[l] ??= HASH;
for (const l of ["Ada", "Elm", "PLpgSQL", "PLSQL", "TSQL", "VHDL", "Eiffel"]) SYNTAX[l] ??= DASHES;
for (const l of ["HTML", "XML", "Markdown", "SVG", "Vue", "Svelte", "XSLT", "HTML+ERB", "Handlebars", "MDX"]) SYNTAX[l] ??= MARKUP;

export function hasCommentSyntax(language: string): boolean {
  return language in SYNTAX;
}

/** Counts lines of `text` as `language` (a linguist name; unknown languages have no comments). */
export function countLines(text: string, language: string): LineCounts {
  const syn = SYNTAX[language] ?? NONE;
  const counts: LineCounts = { code: 0, comment: 0, blank: 0 };
  const lines = text.split(/\r\n|\n|\r/);
  if (lines.length && lines[lines.length - 1] === "") lines.pop();
  let closeBlock: string | null = null;
  for (const line of lines) {
    if (line.trim() === "") {
      counts.blank++;
      continue;
    }
    let code = false;
    let comment = false;
    let quote: string | null = null;
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
      const ch = line[i]!;
      if (quote !== null) {
        if (ch === "\\") i += 2;
        else {
          if (ch === quote) quote = null;
          i++;
        }
        continue;
      }
      if (ch === " " || ch === "\t" || ch === "\f" || ch === "\v") {
        i++;
        continue;
      }
      // Block openers first: Lua's `--[[` must win over its `--` line comment.
      for (const [open, close] of syn.block) {
        if (line.startsWith(open, i)) {
          comment = true;
          closeBlock = close;
          i += open.length;
          continue scan;
        }
      }
      for (const marker of syn.line) {
        if (line.startsWith(marker, i)) {
          comment = true;
          break scan;
        }
      }
      code = true;
      if (syn.quotes.includes(ch)) quote = ch;
      i++;
    }
    if (code) counts.code++;
    else if (comment) counts.comment++;
    else counts.code++;
  }
  return counts;
}
