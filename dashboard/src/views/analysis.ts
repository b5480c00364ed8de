// Repository analyses (issue 8's API): start one, then its progress live (topic analysis:<id>),
// language breakdown, file tree and full-text search. The shapes are read defensively: this view
// only renders what the analysis routes return.
import { call } from "../../../sdk/api.ts";
import { bytes, duration, h, replace } from "../dom.ts";
import { log } from "../event-log.ts";
import type { Live } from "../live.ts";

interface AnalysisStatus {
  analysisId: string;
  source: string;
  ref: string;
  commit: string | null;
  phase: string;
  error: string | null;
  filesTotal: number | null;
  filesDone: number | null;
  filesReused: number | null;
  bytesTotal: number | null;
  percentage: number | null;
  etaMs: number | null;
  createdAt: string;
  finishedAt: string | null;
}
interface LanguageTotal {
  language: string | null;
  files: number;
  bytes: number;
  code: number | null;
  comment: number | null;
  blank: number | null;
  symbols: number | null;
}
interface FileRow {
  path: string;
  language: string | null;
  size: number;
  code: number | null;
  symbols: number | null;
}
interface Results {
  summary: { languages: LanguageTotal[] };
  files?: FileRow[];
  next: number | null;
}
interface SearchHit {
  path: string;
  language: string | null;
  snippet: string;
  symbols: { name?: string; kind?: string; line?: number }[];
}

/** The https example the source box suggests next to the deployment's local roots. */
const HTTPS_EXAMPLE = "https://github.com/supabase/supabase-js";
const RECENT_KEY = "cogo.dashboard.analyses";
const RECENT_MAX = 20;
/** The file tree loads at most this many files (pages of 1000). */
const TREE_MAX_FILES = 5000;
/** Live progress refetches the results at most this often. */
const RESULTS_REFRESH_MS = 1000;

function recent(): { id: string; source: string }[] {
  try {
    return JSON.parse(localStorage.getItem(RECENT_KEY) ?? "[]");
  } catch {
    return [];
  }
}

function remember(id: string, source: string): void {
  const list = [{ id, source }, ...recent().filter((r) => r.id !== id)].slice(0, RECENT_MAX);
  localStorage.setItem(RECENT_KEY, JSON.stringify(list));
}

export function analysesView(main: HTMLElement, live: Live, navigate: (hash: string) => void): () => void {
  const source = h("input", { class: "grow", placeholder: "https://github.com/org/repo", list: "analysis-sources", "aria-label": "repository source" });
  const suggestions = h("datalist", { id: "analysis-sources" });
  const hint = h("div", { class: "dim", "data-testid": "analysis-sources" }, "…");
  // Suggest what this deployment accepts (GET /analysis/sources): its local roots, and https.
  void call<{ localRoots: string[] }>(live.supabase, "GET", "/analysis/sources").then(
    ({ localRoots }) => {
      const examples = [...localRoots, HTTPS_EXAMPLE];
      if (localRoots.length) source.setAttribute("placeholder", `${localRoots[0]}, or ${HTTPS_EXAMPLE}`);
      replace(
        suggestions,
        examples.map((s) => h("option", { value: s })),
      );
      replace(
        hint,
        localRoots.length
          ? `Sources: a git repository under ${localRoots.join(", ")} (a path or file:// URL), an https URL of a public host, or workspace:<id>.`
          : "Sources: an https URL of a public host, or workspace:<id> (this deployment allows no local paths).",
      );
    },
    (err) => replace(hint, `Sources: an https URL of a public host, or workspace:<id> (${(err as Error).message}).`),
  );
  const ref = h("input", { placeholder: "ref (default HEAD)", "aria-label": "ref" });
  const error = h("div");
  const openId = h("input", { class: "grow mono", placeholder: "analysis id", "aria-label": "analysis id" });
  replace(
    main,
    h("h2", null, "Repository analyses"),
    h(
      "form",
      {
        class: "toolbar",
        onsubmit: async (e: Event) => {
          e.preventDefault();
          try {
            const r = await call<{ analysisId: string }>(live.supabase, "POST", "/analyze/repository", {
              source: source.value.trim(),
              ...(ref.value.trim() ? { ref: ref.value.trim() } : {}),
            });
            remember(r.analysisId, source.value.trim());
            navigate(`#/analyses/${r.analysisId}`);
          } catch (err) {
            replace(error, h("div", { class: "error-banner" }, `Could not start: ${(err as Error).message}`));
          }
        },
      },
      source,
      suggestions,
      ref,
      h("button", { type: "submit" }, "Analyze"),
    ),
    hint,
    error,
    h("form", { class: "toolbar", onsubmit: (e: Event) => (e.preventDefault(), navigate(`#/analyses/${openId.value.trim()}`)) }, openId, h("button", { type: "submit" }, "Open")),
    h(
      "div",
      { class: "panel" },
      recent().length === 0
        ? h("div", { class: "empty" }, "No analyses opened in this browser yet.")
        : h(
            "table",
            null,
            h(
              "tbody",
              null,
              recent().map((r) =>
                h("tr", { class: "link", onclick: () => navigate(`#/analyses/${r.id}`) }, h("td", { class: "mono" }, r.source), h("td", { class: "mono dim" }, r.id.slice(0, 8))),
              ),
            ),
          ),
    ),
  );
  return () => {};
}

export function analysisView(main: HTMLElement, live: Live, id: string): () => void {
  let closed = false;
  let status: AnalysisStatus | undefined;
  let languages: LanguageTotal[] = [];
  const statusBox = h("div", { class: "panel", "data-testid": "analysis-status" });
  const langBox = h("div", { class: "panel", "data-testid": "languages" });
  const treeBox = h("div", { class: "panel mono", "data-testid": "file-tree" });
  const hitsBox = h("div", { "data-testid": "search-hits" });
  const error = h("div");
  const q = h("input", { class: "grow", type: "search", placeholder: "search file contents and symbols", "aria-label": "search" });
  replace(
    main,
    statusBox,
    error,
    h("div", { class: "row" }, h("div", null, h("h2", null, "Languages"), langBox), h("div", null, h("h2", null, "Files"), treeBox)),
    h("h2", null, "Search"),
    h("form", { class: "toolbar", onsubmit: (e: Event) => (e.preventDefault(), void search()) }, q, h("button", { type: "submit" }, "Search")),
    hitsBox,
  );

  const showError = (what: string, err: unknown) => {
    const msg = `${what}: ${err instanceof Error ? err.message : String(err)}`;
    log("api", "error", msg);
    replace(error, h("div", { class: "error-banner" }, msg));
  };

  const renderStatus = () => {
    if (!status) return;
    const s = status;
    const pct = s.percentage;
    replace(
      statusBox,
      h(
        "div",
        { class: "toolbar" },
        h("span", { class: `badge s-${s.phase === "completed" ? "succeeded" : s.phase === "failed" ? "failed" : "running"}`, "data-phase": s.phase }, s.phase),
        h("code", null, s.source),
        h("span", { class: "dim" }, `@ ${s.ref}${s.commit ? ` (${s.commit.slice(0, 10)})` : ""}`),
        h("span", { style: "flex:1" }),
        pct !== null ? `${pct} %` : "",
        s.etaMs ? h("span", { class: "dim" }, ` · ETA ${duration(s.etaMs)}`) : null,
      ),
      h("div", { class: pct === null && s.phase !== "failed" ? "bar indeterminate" : "bar" }, h("div", { style: `width:${pct ?? 0}%` })),
      h(
        "div",
        { class: "dim", style: "margin-top:6px" },
        `${s.filesDone ?? 0} of ${s.filesTotal ?? "?"} files`,
        s.filesReused ? ` (${s.filesReused} unchanged, reused)` : "",
        s.bytesTotal !== null ? ` · ${bytes(s.bytesTotal)}` : "",
        ` · analysis ${s.analysisId}`,
      ),
      s.error ? h("div", { class: "error-banner" }, s.error) : null,
    );
  };

  const renderLanguages = () => {
    const max = Math.max(1, ...languages.map((l) => l.code ?? 0));
    replace(
      langBox,
      languages.length === 0
        ? h("div", { class: "empty" }, "nothing counted yet")
        : languages.map((l) =>
            h(
              "div",
              { class: "queue-row", "data-language": l.language ?? "other" },
              h("span", null, l.language ?? "other", h("span", { class: "dim" }, ` ${l.files} file${l.files === 1 ? "" : "s"}`)),
              h("div", { class: "bar" }, h("div", { style: `width:${((l.code ?? 0) / max) * 100}%` })),
              h("span", { class: "num" }, l.code ?? 0),
            ),
          ),
      languages.length ? h("div", { class: "dim" }, "lines of code per language") : null,
    );
  };

  async function loadStatus(): Promise<void> {
    status = await call<AnalysisStatus>(live.supabase, "GET", `/analysis/${id}/status`);
    remember(id, status.source);
    renderStatus();
  }

  async function loadResults(withTree: boolean): Promise<void> {
    const files: FileRow[] = [];
    for (let offset: number | null = 0; offset !== null && files.length < TREE_MAX_FILES; ) {
      const r: Results = await call<Results>(live.supabase, "GET", `/analysis/${id}/results?section=files&limit=1000&offset=${offset}`);
      languages = r.summary.languages;
      renderLanguages();
      if (!withTree) return;
      files.push(...(r.files ?? []));
      offset = r.next;
    }
    replace(
      treeBox,
      files.length === 0 ? h("div", { class: "empty" }, "no files yet") : fileTree(files),
      files.length >= TREE_MAX_FILES ? h("div", { class: "dim" }, `first ${TREE_MAX_FILES} files`) : null,
    );
  }

  async function search(): Promise<void> {
    if (!q.value.trim()) return;
    try {
      const r = await call<{ hits: SearchHit[] }>(live.supabase, "GET", `/analysis/${id}/search?q=${encodeURIComponent(q.value.trim())}`);
      replace(
        hitsBox,
        r.hits.length === 0
          ? h("div", { class: "empty panel" }, "no matches")
          : h(
              "div",
              { class: "panel" },
              r.hits.map((hit) =>
                h(
                  "div",
                  { class: "search-hit", "data-path": hit.path, style: "margin-bottom:10px" },
                  h(
                    "div",
                    null,
                    h("code", null, hit.path),
                    h("span", { class: "dim" }, ` ${hit.language ?? ""}`),
                    (hit.symbols ?? []).map((s) => h("span", { class: "badge", style: "margin-left:6px" }, `${s.kind ?? ""} ${s.name ?? ""}${s.line ? `:${s.line}` : ""}`)),
                  ),
                  h("div", { class: "mono dim" }, highlighted(hit.snippet)),
                ),
              ),
            ),
      );
    } catch (err) {
      showError("search", err);
    }
  }

  // Live: each progress_update refreshes the status now and the results at most once a second.
  let channel: ReturnType<Live["supabase"]["channel"]> | undefined;
  let lastResults = 0;
  let pending: ReturnType<typeof setTimeout> | undefined;
  const onProgress = () => {
    void loadStatus().catch((err) => showError("status", err));
    if (pending) return;
    pending = setTimeout(
      () => {
        pending = undefined;
        lastResults = Date.now();
        void loadResults(status?.phase === "completed").catch((err) => showError("results", err));
      },
      Math.max(0, RESULTS_REFRESH_MS - (Date.now() - lastResults)),
    );
  };
  void (async () => {
    try {
      await loadStatus();
      await live.supabase.realtime.setAuth();
      if (closed) return;
      channel = live.supabase
        .channel(`analysis:${id}`, { config: { private: true } })
        .on("broadcast", { event: "progress_update" }, ({ payload }) => {
          const p = payload as { phase?: string; message?: string };
          log(`analysis:${id.slice(0, 8)}`, "info", `${p.phase ?? ""} ${p.message ?? ""}`.trim());
          onProgress();
        })
        .subscribe((s) => s === "SUBSCRIBED" && onProgress()); // (re)joined: catch up
      await loadResults(true);
    } catch (err) {
      showError(`analysis ${id}`, err);
    }
  })();
  return () => {
    closed = true;
    clearTimeout(pending);
    if (channel) void live.supabase.removeChannel(channel);
  };
}

interface Dir {
  dirs: Map<string, Dir>;
  files: FileRow[];
  count: number;
}

function fileTree(files: FileRow[]): HTMLElement {
  const root: Dir = { dirs: new Map(), files: [], count: 0 };
  for (const f of files) {
    let d = root;
    const parts = f.path.split("/");
    for (const part of parts.slice(0, -1)) {
      d.count++;
      if (!d.dirs.has(part)) d.dirs.set(part, { dirs: new Map(), files: [], count: 0 });
      d = d.dirs.get(part)!;
    }
    d.count++;
    d.files.push(f);
  }
  const render = (d: Dir, depth: number): HTMLElement[] => [
    ...[...d.dirs.entries()]
      .sort(([a], [b]) => a.localeCompare(b))
      .map(([name, sub]) =>
        h("details", { open: depth === 0, style: "margin-left:12px" }, h("summary", null, `${name}/`, h("span", { class: "dim" }, ` ${sub.count}`)), ...render(sub, depth + 1)),
      ),
    ...d.files.map((f) =>
      h(
        "div",
        { style: "margin-left:24px", "data-file": f.path },
        f.path.split("/").at(-1)!,
        h("span", { class: "dim" }, ` ${f.language ?? ""} · ${f.code ?? 0} loc${f.symbols ? ` · ${f.symbols} symbols` : ""}`),
      ),
    ),
  ];
  return h("div", null, ...render(root, 0));
}

/** ts_headline marks matches with « »: shown as <mark>, built as text nodes, never HTML. */
function highlighted(snippet: string): (Node | string)[] {
  return snippet.split(/(«[^»]*»)/).map((part) => (part.startsWith("«") && part.endsWith("»") ? h("mark", null, part.slice(1, -1)) : part));
}
