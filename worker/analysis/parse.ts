// Symbols (functions, classes, methods, types, exports) and imports of one file, from a real
// tree-sitter parse through @ast-grep/napi: TypeScript/TSX/JavaScript built in, Python, Go, Rust,
// Java, C, C++ and Dart from their prebuilt @ast-grep/lang-* parsers.
import { createRequire } from "node:module";
import { Lang, parse, registerDynamicLanguage } from "@ast-grep/napi";

/** What we use of an ast-grep node, for any grammar (kinds as plain strings). */
interface SgNode {
  kind(): string;
  text(): string;
  isNamed(): boolean;
  range(): { start: { line: number; index: number }; end: { line: number; index: number } };
  field(name: string): SgNode | null;
  parent(): SgNode | null;
  children(): SgNode[];
  find(matcher: { rule: object }): SgNode | null;
  findAll(matcher: { rule: object }): SgNode[];
}

export interface SymbolInfo {
  name: string;
  kind: "function" | "class" | "method" | "interface" | "type" | "enum" | "struct" | "trait" | "module" | "variable" | "export";
  line: number;
  endLine: number;
  exported: boolean;
  parent: string | null;
}

export interface ImportInfo {
  specifier: string;
  kind: "import" | "require" | "dynamic" | "reexport" | "include" | "use";
  line: number;
}

export interface ParseResult {
  symbols: SymbolInfo[];
  imports: ImportInfo[];
  parser: string;
}

const require = createRequire(import.meta.url);
let registered = false;
function register(): void {
  if (registered) return;
  registerDynamicLanguage({
    python: require("@ast-grep/lang-python"),
    go: require("@ast-grep/lang-go"),
    rust: require("@ast-grep/lang-rust"),
    java: require("@ast-grep/lang-java"),
    c: require("@ast-grep/lang-c"),
    cpp: require("@ast-grep/lang-cpp"),
    dart: require("@ast-grep/lang-dart"),
  } as never);
  registered = true;
}

type Kind = SymbolInfo["kind"];
interface Spec {
  /** ast-grep language id. */
  grammar: string;
  /** Node kind → symbol kind (a function inside a container becomes a method). */
  defs: Record<string, Kind>;
  /** Node kinds whose name becomes the `parent` of definitions inside them. */
  containers: string[];
  name?: (n: SgNode) => string | null;
  /** `within`: the kind of the nearest enclosing node the rule matched (see parseSource), or null. */
  exported: (n: SgNode, name: string, parent: string | null, within: string | null) => boolean;
  /** Node kinds that are import statements. */
  importKinds: string[];
  /** Further import rules, matched natively (their imports are listed after importKinds'). */
  importRules?: object[];
  /** The imports of a node matched by importKinds or importRules. */
  imports: (n: SgNode) => ImportInfo[];
  /** Drop a matched node (e.g. a declaration that is not top-level). */
  skip?: (n: SgNode) => boolean;
}

const line = (n: SgNode) => n.range().start.line + 1;
const unquote = (s: string) => s.replace(/^[rbuf]*(['"`])([\s\S]*)\1$/i, "$2").replace(/^<(.*)>$/, "$1");
const IDENT = new Set(["identifier", "type_identifier", "property_identifier", "field_identifier", "name", "constant"]);

function defaultName(n: SgNode): string | null {
  const f = n.field("name");
  if (f) return f.text();
  return (
    n
      .children()
      .find((c) => IDENT.has(c.kind()))
      ?.text() ?? null
  );
}

/** Kinds each grammar knows (TypeScript's kinds are shared with JavaScript's table but not all exist there). */
const known = new Map<string, Set<string>>();
function validKinds(grammar: string, kinds: string[]): string[] {
  let ok = known.get(grammar);
  if (!ok) known.set(grammar, (ok = new Set()));
  let probe: SgNode | undefined;
  for (const kind of kinds) {
    if (ok.has(kind) || ok.has("!" + kind)) continue;
    probe ??= parse(grammar as Lang, "").root() as unknown as SgNode;
    try {
      probe.findAll({ rule: { kind } });
      ok.add(kind);
    } catch {
      ok.add("!" + kind);
    }
  }
  return kinds.filter((k) => ok.has(k));
}

// ── TypeScript / JavaScript ──────────────────────────────────────────────────────────────────
/** `require("x")` and `import("x")` calls only (matched natively, not every call of the file). */
const IMPORT_CALL = {
  kind: "call_expression",
  has: { field: "function", any: [{ kind: "import" }, { kind: "identifier", regex: "^require$" }] },
};
/** Variables declared at the top level (directly or exported), not every local of the file. */
const TOP_LEVEL_VARIABLE = {
  kind: "variable_declarator",
  inside: {
    stopBy: "neighbor",
    any: [{ kind: "lexical_declaration" }, { kind: "variable_declaration" }],
    inside: { stopBy: "neighbor", any: [{ kind: "program" }, { kind: "export_statement", inside: { stopBy: "neighbor", kind: "program" } }] },
  },
};

function jsImports(n: SgNode): ImportInfo[] {
  const kind = n.kind();
  if (kind === "call_expression") {
    const fn = n.field("function");
    const args = n
      .field("arguments")
      ?.children()
      .filter((c) => c.isNamed());
    const first = args?.[0];
    if (!fn || !first || first.kind() !== "string") return [];
    if (fn.kind() === "import") return [{ specifier: unquote(first.text()), kind: "dynamic", line: line(n) }];
    if (fn.text() === "require" && args!.length === 1) return [{ specifier: unquote(first.text()), kind: "require", line: line(n) }];
    return [];
  }
  const src = n.field("source");
  return src ? [{ specifier: unquote(src.text()), kind: kind === "import_statement" ? "import" : "reexport", line: line(n) }] : [];
}
const isExported = (n: SgNode) => n.parent()?.kind() === "export_statement" || (n.kind() === "variable_declarator" && n.parent()?.parent()?.kind() === "export_statement");
const TS_DEFS: Record<string, Kind> = {
  function_declaration: "function",
  generator_function_declaration: "function",
  class_declaration: "class",
  abstract_class_declaration: "class",
  method_definition: "method",
  abstract_method_signature: "method",
  interface_declaration: "interface",
  type_alias_declaration: "type",
  enum_declaration: "enum",
  module: "module",
  internal_module: "module",
  variable_declarator: "variable",
  export_specifier: "export",
};
const tsSpec = (grammar: string): Spec => ({
  grammar,
  defs: TS_DEFS,
  containers: ["class_declaration", "abstract_class_declaration", "class", "interface_declaration"],
  // An export_statement parent or grandparent is matched (an import kind), so it is `within`.
  exported: (n, _name, _parent, within) => n.kind() === "export_specifier" || (within === "export_statement" && isExported(n)),
  importKinds: ["import_statement", "export_statement"],
  importRules: [IMPORT_CALL],
  imports: jsImports,
  skip: (n) => {
    if (n.kind() === "export_specifier") return n.parent()?.parent()?.field("source") !== null; // re-exports are imports
    return false;
  },
});

// ── Python ───────────────────────────────────────────────────────────────────────────────────
const pySpec: Spec = {
  grammar: "python",
  defs: { function_definition: "function", class_definition: "class" },
  containers: ["class_definition"],
  exported: (n, name, parent) => !name.startsWith("_") && parent === null && ["module", "decorated_definition"].includes(n.parent()?.kind() ?? ""),
  importKinds: ["import_statement", "import_from_statement"],
  imports: (n) => {
    if (n.kind() === "import_from_statement") {
      const m = n.field("module_name");
      return m ? [{ specifier: m.text(), kind: "import", line: line(n) }] : [];
    }
    return n
      .children()
      .filter((c) => c.kind() === "dotted_name" || c.kind() === "aliased_import")
      .map((c) => ({ specifier: (c.field("name") ?? c).text(), kind: "import", line: line(n) }));
  },
};

// ── Go ───────────────────────────────────────────────────────────────────────────────────────
const goSpec: Spec = {
  grammar: "go",
  defs: { function_declaration: "function", method_declaration: "method", type_spec: "type", type_alias: "type" },
  containers: [],
  exported: (_n, name) => /^\p{Lu}/u.test(name),
  importKinds: ["import_spec"],
  imports: (n) => [{ specifier: unquote((n.field("path") ?? n).text()), kind: "import", line: line(n) }],
};
function goKind(n: SgNode, k: Kind): Kind {
  if (n.kind() !== "type_spec") return k;
  const t = n.field("type")?.kind();
  return t === "struct_type" ? "struct" : t === "interface_type" ? "interface" : "type";
}
function goParent(n: SgNode): string | null {
  if (n.kind() !== "method_declaration") return null;
  const recv = n.field("receiver")?.text() ?? "";
  return /([A-Za-z_]\w*)\s*(?:\[[^\]]*\])?\s*\)$/.exec(recv)?.[1] ?? null;
}

// ── Rust ─────────────────────────────────────────────────────────────────────────────────────
const rustSpec: Spec = {
  grammar: "rust",
  defs: {
    function_item: "function",
    function_signature_item: "function",
    struct_item: "struct",
    enum_item: "enum",
    trait_item: "trait",
    type_item: "type",
    mod_item: "module",
    union_item: "struct",
    macro_definition: "function",
  },
  containers: ["impl_item", "trait_item"],
  name: (n) => (n.kind() === "impl_item" ? (n.field("type")?.text() ?? null) : defaultName(n)),
  exported: (n) => n.children().some((c) => c.kind() === "visibility_modifier"),
  importKinds: ["use_declaration", "extern_crate_declaration"],
  imports: (n) => [{ specifier: (n.field("argument") ?? n.field("name") ?? n).text(), kind: "use", line: line(n) }],
};

// ── Java ─────────────────────────────────────────────────────────────────────────────────────
const javaSpec: Spec = {
  grammar: "java",
  defs: {
    class_declaration: "class",
    interface_declaration: "interface",
    enum_declaration: "enum",
    record_declaration: "class",
    annotation_type_declaration: "interface",
    method_declaration: "method",
    constructor_declaration: "method",
  },
  containers: ["class_declaration", "interface_declaration", "enum_declaration", "record_declaration"],
  exported: (n) => n.children().some((c) => c.kind() === "modifiers" && /\bpublic\b/.test(c.text())),
  importKinds: ["import_declaration"],
  imports: (n) => [
    {
      specifier: n
        .text()
        .replace(/^import\s+(static\s+)?/, "")
        .replace(/;\s*$/, "")
        .trim(),
      kind: "import",
      line: line(n),
    },
  ],
};

// ── C / C++ ──────────────────────────────────────────────────────────────────────────────────
function cDeclaratorName(n: SgNode): string | null {
  let d: SgNode | null = n.field("declarator");
  for (let i = 0; d && i < 8; i++) {
    if (d.kind() === "function_declarator") {
      const inner = d.field("declarator");
      return inner ? inner.text() : null;
    }
    d = d.field("declarator");
  }
  return null;
}
function cName(n: SgNode): string | null {
  if (n.kind() === "function_definition") return cDeclaratorName(n);
  if (n.kind() === "type_definition") return n.field("declarator")?.text() ?? null;
  return defaultName(n);
}
const cSpec = (grammar: string): Spec => ({
  grammar,
  defs: {
    function_definition: "function",
    struct_specifier: "struct",
    union_specifier: "struct",
    enum_specifier: "enum",
    type_definition: "type",
    ...(grammar === "cpp" ? ({ class_specifier: "class", namespace_definition: "module" } as const) : {}),
  },
  containers: grammar === "cpp" ? ["class_specifier", "struct_specifier"] : ["struct_specifier"],
  name: cName,
  exported: (n) => !n.children().some((c) => c.kind() === "storage_class_specifier" && c.text() === "static"),
  importKinds: ["preproc_include"],
  imports: (n) => [{ specifier: unquote((n.field("path") ?? n).text()), kind: "include", line: line(n) }],
  // A struct/enum/class mention without a body (`struct S *p;`) declares nothing.
  skip: (n) => ["struct_specifier", "union_specifier", "enum_specifier", "class_specifier"].includes(n.kind()) && !n.field("body"),
});

// ── Dart ─────────────────────────────────────────────────────────────────────────────────────
function dartName(n: SgNode): string | null {
  if (n.kind() === "method_signature") {
    const sig = n.children().find((c) => c.isNamed());
    return sig ? dartName(sig) : null;
  }
  const kids = n.children();
  return (kids.find((c) => c.kind() === "identifier") ?? kids.find((c) => c.kind() === "type_identifier"))?.text() ?? null;
}
const dartSpec: Spec = {
  grammar: "dart",
  defs: {
    class_definition: "class",
    mixin_declaration: "class",
    extension_declaration: "class",
    enum_declaration: "enum",
    type_alias: "type",
    function_signature: "function",
    method_signature: "method",
    constructor_signature: "method",
  },
  containers: ["class_definition", "mixin_declaration", "extension_declaration"],
  name: dartName,
  exported: (_n, name) => !name.startsWith("_"),
  importKinds: ["library_import", "library_export", "part_directive"],
  imports: (n) => {
    const uri = n.find({ rule: { kind: "string_literal" } });
    return [{ specifier: uri ? unquote(uri.text()) : n.text(), kind: n.kind() === "library_export" ? "reexport" : "import", line: line(n) }];
  },
  // A function_signature inside a method_signature is the method itself.
  // Top-level functions parse as a function_signature under the program, or (the grammar is
  // ambiguous there) inside a local_function_declaration's lambda_expression.
  skip: (n) => {
    if (n.kind() !== "function_signature") return false;
    const p = n.parent();
    if (p?.kind() === "program") return false;
    return !(p?.kind() === "lambda_expression" && p.parent()?.kind() === "local_function_declaration" && p.parent()?.parent()?.kind() === "program");
  },
};

/** Linguist language name → how to parse it. */
const SPECS: Record<string, Spec> = {
  TypeScript: tsSpec(Lang.TypeScript),
  TSX: tsSpec(Lang.Tsx),
  JavaScript: tsSpec(Lang.JavaScript),
  Python: pySpec,
  Go: goSpec,
  Rust: rustSpec,
  Java: javaSpec,
  C: cSpec("c"),
  "C++": cSpec("cpp"),
  Dart: dartSpec,
};

export const PARSED_LANGUAGES = Object.keys(SPECS);

const FUNCTION_VALUES = new Set(["arrow_function", "function_expression", "function", "generator_function"]);

/**
 * One rule per spec matching definitions, containers and imports together: the tree is walked
 * once per file, natively.
 */
const rules = new Map<Spec, object>();
function ruleOf(spec: Spec): object {
  let rule = rules.get(spec);
  if (!rule) {
    const kinds = new Set([...Object.keys(spec.defs).filter((k) => k !== "variable_declarator"), ...spec.containers, ...spec.importKinds]);
    const any: object[] = [...validKinds(spec.grammar, [...kinds]).map((kind) => ({ kind })), ...(spec.importRules ?? [])];
    if ("variable_declarator" in spec.defs) any.push(TOP_LEVEL_VARIABLE);
    rules.set(spec, (rule = { any }));
  }
  return rule;
}

/** A matched node enclosing the current one (matches come in document order, parents first). */
interface Open {
  node: SgNode;
  kind: string;
  end: number;
  name?: string | null;
}

/** Symbols and imports of `text`, or null when `language` has no parser here. Throws on parser failure. */
export function parseSource(text: string, language: string): ParseResult | null {
  const spec = SPECS[language];
  if (!spec) return null;
  register();
  const root = parse(spec.grammar as Lang, text).root() as unknown as SgNode;
  const nameOf = spec.name ?? defaultName;
  const containers = new Set(spec.containers);
  const importKinds = new Set(spec.importKinds);
  // Listed as the separate passes listed them: definitions, then top-level variables; imports of
  // importKinds, then those of importRules; each in document order.
  const defs: SymbolInfo[] = [];
  const variables: SymbolInfo[] = [];
  const imports: ImportInfo[] = [];
  const ruleImports: ImportInfo[] = [];
  // The matched nodes enclosing the current one, innermost last: every container and every
  // function is matched, so the nearest of them among these is the nearest among all ancestors
  // (found without a parent() call per level, each a native round trip).
  const open: Open[] = [];
  for (const n of root.findAll({ rule: ruleOf(spec) })) {
    const nodeKind = n.kind();
    const r = n.range();
    while (open.length && open[open.length - 1]!.end <= r.start.index) open.pop();
    const within = open.length ? open[open.length - 1]!.kind : null;
    const enclosing = open.length;
    open.push({ node: n, kind: nodeKind, end: r.end.index });
    if (importKinds.has(nodeKind)) {
      imports.push(...spec.imports(n));
      continue;
    }
    if (!Object.hasOwn(spec.defs, nodeKind)) {
      if (!containers.has(nodeKind)) ruleImports.push(...spec.imports(n));
      continue;
    }
    if (spec.skip?.(n)) continue;
    let name = nameOf(n);
    if (!name) continue;
    let kind = spec.defs[nodeKind]!;
    if (spec.grammar === "go") kind = goKind(n, kind);
    if (kind === "variable" && FUNCTION_VALUES.has(n.field("value")?.kind() ?? "")) kind = "function";
    let parent: string | null = spec.grammar === "go" ? goParent(n) : null;
    if (!parent && containers.size) {
      for (let i = enclosing - 1; i >= 0; i--) {
        const a = open[i]!;
        if (containers.has(a.kind)) {
          if (a.name === undefined) a.name = nameOf(a.node) ?? (a.kind === "impl_item" ? (a.node.field("type")?.text() ?? null) : null);
          parent = a.name;
          break;
        }
        if (spec.defs[a.kind] === "function" && Object.hasOwn(spec.defs, a.kind)) break; // nested in a function
      }
    }
    // C++ out-of-class definitions name their class: `void K::m()`.
    if ((spec.grammar === "cpp" || spec.grammar === "c") && name.includes("::")) {
      const i = name.lastIndexOf("::");
      parent ??= name.slice(0, i);
      name = name.slice(i + 2);
    }
    if (parent && kind === "function") kind = "method";
    (nodeKind === "variable_declarator" ? variables : defs).push({
      name,
      kind,
      line: r.start.line + 1,
      endLine: r.end.line + 1,
      exported: spec.exported(n, name, parent, within),
      parent,
    });
  }
  const symbols = [...defs, ...variables].sort((a, b) => a.line - b.line || a.name.localeCompare(b.name));
  return { symbols, imports: [...imports, ...ruleImports], parser: `ast-grep:${spec.grammar}` };
}
