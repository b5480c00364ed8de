// Language of a repository path from linguist's table (linguist-languages): file names first,
// then the longest matching extension, then a `#!` interpreter line.
import * as linguist from "linguist-languages";

interface Lang {
  name: string;
  type: string;
  extensions?: readonly string[];
  filenames?: readonly string[];
  interpreters?: readonly string[];
}

/** Extensions linguist gives to several languages, settled the way most repositories use them. */
const PREFERRED: Record<string, string> = {
  ".h": "C",
  ".m": "Objective-C",
  ".pl": "Perl",
  ".sql": "SQL",
  ".ts": "TypeScript",
  ".md": "Markdown",
  ".rs": "Rust",
  ".yml": "YAML",
  ".yaml": "YAML",
  ".json": "JSON",
  ".txt": "Text",
  ".html": "HTML",
  ".inc": "PHP",
  ".cls": "TeX",
  ".v": "Verilog",
  ".fs": "F#",
  ".r": "R",
};
const TYPE_RANK: Record<string, number> = { programming: 0, markup: 1, data: 2, prose: 3 };

const byFilename = new Map<string, string>();
const byExtension = new Map<string, string>();
const byInterpreter = new Map<string, string>();
{
  const candidates = new Map<string, Lang[]>();
  for (const lang of Object.values(linguist) as Lang[]) {
    for (const f of lang.filenames ?? []) if (!byFilename.has(f)) byFilename.set(f, lang.name);
    for (const i of lang.interpreters ?? []) if (!byInterpreter.has(i)) byInterpreter.set(i, lang.name);
    for (const e of lang.extensions ?? []) {
      const key = e.toLowerCase();
      candidates.set(key, [...(candidates.get(key) ?? []), lang]);
    }
  }
  for (const [ext, langs] of candidates) {
    const chosen =
      PREFERRED[ext] ??
      langs.find((l) => l.extensions?.[0]?.toLowerCase() === ext && langs.filter((o) => o.extensions?.[0]?.toLowerCase() === ext).length === 1)?.name ??
      [...langs].sort((a, b) => (TYPE_RANK[a.type] ?? 9) - (TYPE_RANK[b.type] ?? 9) || a.name.localeCompare(b.name))[0]!.name;
    byExtension.set(ext, chosen);
  }
}

/** The linguist language of `path` ('' when unknown); `head` is the file's first bytes, for `#!`. */
export function detectLanguage(path: string, head = ""): string {
  const name = path.slice(path.lastIndexOf("/") + 1);
  const named = byFilename.get(name);
  if (named) return named;
  const lower = name.toLowerCase();
  for (let dot = lower.indexOf("."); dot >= 0; dot = lower.indexOf(".", dot + 1)) {
    const lang = byExtension.get(lower.slice(dot));
    if (lang && dot > 0) return lang;
  }
  if (lower.startsWith(".") && byExtension.has(lower)) return byExtension.get(lower)!;
  const shebang = /^#!\s*(?:\/usr\/bin\/env\s+(?:-\S+\s+)*)?(\S+)/.exec(head);
  if (shebang) {
    const interp = shebang[1]!.slice(shebang[1]!.lastIndexOf("/") + 1).replace(/[\d.]+$/, "");
    return byInterpreter.get(interp) ?? byInterpreter.get(shebang[1]!.slice(shebang[1]!.lastIndexOf("/") + 1)) ?? "";
  }
  return "";
}
