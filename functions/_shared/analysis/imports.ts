// The import graph of an analysis: each import specifier resolved to a file of the same
// repository where the language's rules allow it (relative paths, package-relative modules,
// include directories), else left unresolved (a third-party or system dependency).

export interface FileImports {
  path: string;
  language: string;
  imports: { specifier: string; kind: string; line: number }[];
}

export interface ImportEdge {
  path: string;
  specifier: string;
  kind: string;
  line: number;
  resolvedPath: string | null;
}

const JS_EXTS = ["", ".ts", ".tsx", ".d.ts", ".js", ".jsx", ".mjs", ".cjs", ".mts", ".cts", ".json"];
const JS_LANGS = new Set(["TypeScript", "TSX", "JavaScript"]);

function dirname(p: string): string {
  const i = p.lastIndexOf("/");
  return i < 0 ? "" : p.slice(0, i);
}

/** Joins and normalises repository-relative paths; null if it climbs out of the repository. */
export function joinPath(dir: string, rel: string): string | null {
  const out = dir ? dir.split("/") : [];
  for (const part of rel.split("/")) {
    if (part === "" || part === ".") continue;
    if (part === "..") {
      if (!out.length) return null;
      out.pop();
    } else out.push(part);
  }
  return out.join("/");
}

export function resolveImports(files: FileImports[]): ImportEdge[] {
  const paths = new Set(files.map((f) => f.path));
  const dirs = new Set<string>();
  for (const p of paths) for (let d = dirname(p); d; d = dirname(d)) dirs.add(d);
  const bySuffix = (suffix: string): string | null => {
    if (paths.has(suffix)) return suffix;
    for (const p of paths) if (p.endsWith("/" + suffix)) return p;
    return null;
  };
  const firstExisting = (cands: (string | null)[]) => cands.find((c): c is string => c !== null && paths.has(c)) ?? null;

  const resolve = (f: FileImports, spec: string): string | null => {
    const dir = dirname(f.path);
    if (JS_LANGS.has(f.language)) {
      if (!spec.startsWith(".") && !spec.startsWith("/")) return null;
      const base = joinPath(spec.startsWith("/") ? "" : dir, spec);
      if (base === null) return null;
      const stem = base.replace(/\.(m|c)?jsx?$/, "");
      return firstExisting([...JS_EXTS.map((e) => base + e), ...JS_EXTS.slice(1).map((e) => stem + e), ...JS_EXTS.slice(1).map((e) => `${base}/index${e}`)]);
    }
    switch (f.language) {
      case "Python": {
        const dots = /^\.*/.exec(spec)![0].length;
        const mod = spec.slice(dots).replace(/\./g, "/");
        let base: string | null = dir;
        for (let i = 1; i < dots && base !== null; i++) base = base ? dirname(base) : null;
        const roots = dots ? [base] : ["", "src", "lib"];
        for (const root of roots) {
          if (root === null) continue;
          const p = joinPath(root, mod);
          const hit = p !== null && firstExisting([`${p}.py`, `${p}/__init__.py`, mod === "" ? `${root ? root + "/" : ""}__init__.py` : null]);
          if (hit) return hit;
        }
        return null;
      }
      case "C":
      case "C++":
        return firstExisting([joinPath(dir, spec), joinPath("", spec), joinPath("include", spec), joinPath("src", spec)]);
      case "Go": {
        // Import paths name directories: the longest suffix of the path that is a directory here.
        const parts = spec.split("/");
        for (let i = 0; i < parts.length; i++) {
          const d = parts.slice(i).join("/");
          if (dirs.has(d)) return d;
        }
        return null;
      }
      case "Rust": {
        const m = /^(crate|self|super)::(.+)$/.exec(spec);
        if (!m) return null;
        const segs = m[2]!.replace(/::\{.*$/, "").split("::");
        const root =
          m[1] === "crate" ? (bySuffix("src/lib.rs") ?? bySuffix("src/main.rs") ?? "src/lib.rs").replace(/[^/]+$/, "").replace(/\/$/, "") : m[1] === "super" ? dirname(dir) : dir;
        for (let n = segs.length; n > 0; n--) {
          const p = joinPath(root, segs.slice(0, n).join("/"));
          const hit = p !== null && firstExisting([`${p}.rs`, `${p}/mod.rs`]);
          if (hit) return hit;
        }
        return null;
      }
      case "Java":
        return bySuffix(spec.replace(/\.\*$/, "").replace(/\./g, "/") + ".java");
      case "Dart": {
        const pkg = /^package:[^/]+\/(.+)$/.exec(spec);
        if (pkg) return bySuffix(`lib/${pkg[1]}`);
        if (/^[a-z]+:/.test(spec)) return null;
        return firstExisting([joinPath(dir, spec)]);
      }
      default:
        return null;
    }
  };

  const edges: ImportEdge[] = [];
  for (const f of files) {
    for (const i of f.imports) edges.push({ path: f.path, specifier: i.specifier, kind: i.kind, line: i.line, resolvedPath: resolve(f, i.specifier) });
  }
  return edges;
}
