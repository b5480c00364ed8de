// A live sandbox's /workspace as an expandable tree (issue 19), read through the files API
// (GET /sandboxes/:id/files?path=DIR, GET /sandboxes/:id/files/<path>; docs/sandboxes.md, "Files of a sandbox").
// A directory is listed when it is opened, not before; Refresh lists the root and every open
// directory again. Clicking a file shows its first VIEW_BYTES as text, or "binary, N bytes", with a
// link to download it whole. Names are tenant data: they only ever go in as text nodes.
import { type EntryInfo, SandboxFiles } from "../../../sdk/sandbox-files.ts";
import type { SupabaseClient } from "@supabase/supabase-js";
import { bytes, h, replace } from "../dom.ts";

/** The viewer shows at most this much of a file (the download link has it all). */
const VIEW_BYTES = 256 * 1024;

type Listing = { entries: EntryInfo[] } | { error: string };

const message = (err: unknown) => (err instanceof Error ? err.message : String(err));
/** Directories first, then by name. */
const order = (a: EntryInfo, b: EntryInfo) => Number(b.type === "dir") - Number(a.type === "dir") || (a.name < b.name ? -1 : a.name > b.name ? 1 : 0);

/** Text unless it has a NUL byte or is not UTF-8 (a character cut at the end of the view is fine). */
function asText(view: Uint8Array): string | null {
  if (view.includes(0)) return null;
  try {
    return new TextDecoder("utf-8", { fatal: true }).decode(view, { stream: true });
  } catch {
    return null;
  }
}

export interface FileTree {
  element: HTMLElement;
  /** Lists the root and every open directory again (not while the sandbox is not running). */
  refresh(): Promise<void>;
  /** Whether the sandbox is running: the files API answers only then. */
  setLive(live: boolean): void;
  close(): void;
}

export function fileTree(supabase: SupabaseClient, sandboxId: string): FileTree {
  const files = new SandboxFiles(supabase, sandboxId);
  const listings = new Map<string, Listing>();
  const open = new Set<string>();
  let live = false;
  let closed = false;
  let selected: string | null = null;
  let selection = 0;
  let blobUrl: string | null = null;

  const tree = h("div", { class: "tree mono", "data-testid": "sandbox-files" });
  const viewer = h("div", { "data-testid": "sandbox-file", hidden: true });
  const refreshButton = h("button", { "data-action": "refresh-files", onclick: () => void refresh() }, "Refresh");
  const element = h(
    "div",
    { class: "panel" },
    h("div", { class: "toolbar" }, h("b", null, "Files"), h("span", { class: "dim" }, "/workspace"), h("span", { style: "flex:1" }), refreshButton),
    h("div", { class: "files" }, tree, viewer),
  );

  const list = async (dir: string): Promise<Listing> => {
    let listing: Listing;
    try {
      listing = { entries: (await files.list(dir)).sort(order) };
    } catch (err) {
      listing = { error: message(err) };
    }
    if (!closed) listings.set(dir, listing);
    return listing;
  };

  async function refresh(): Promise<void> {
    if (!live || closed) return render();
    refreshButton.disabled = true;
    try {
      const dirs = ["", ...open];
      const listed = await Promise.all(dirs.map(list));
      // An open directory that is gone (or became a file) closes.
      for (const [i, dir] of dirs.entries()) if (dir && "error" in listed[i]!) open.delete(dir), listings.delete(dir);
    } finally {
      refreshButton.disabled = false;
    }
    render();
  }

  async function toggle(dir: string): Promise<void> {
    if (open.delete(dir)) return render();
    open.add(dir);
    render();
    await list(dir);
    render();
  }

  async function show(entry: EntryInfo): Promise<void> {
    const mine = ++selection;
    selected = entry.path;
    render();
    viewer.hidden = false;
    viewer.dataset.path = entry.path;
    replace(viewer, h("div", { class: "dim" }, `${entry.path} — loading…`));
    let data: Uint8Array;
    try {
      data = await files.read(entry.path);
    } catch (err) {
      if (mine === selection && !closed) replace(viewer, h("div", { class: "error-banner" }, `Could not read ${entry.path}: ${message(err)}`));
      return;
    }
    if (mine !== selection || closed) return;
    if (blobUrl) URL.revokeObjectURL(blobUrl);
    blobUrl = URL.createObjectURL(new Blob([data as Uint8Array<ArrayBuffer>]));
    const text = asText(data.subarray(0, VIEW_BYTES));
    const cut = text !== null && data.length > VIEW_BYTES;
    replace(
      viewer,
      h(
        "div",
        { class: "toolbar" },
        h("b", null, entry.path),
        h("span", { class: "dim" }, text === null ? `binary, ${data.length} bytes` : cut ? `first ${bytes(VIEW_BYTES)} of ${bytes(data.length)}` : bytes(data.length)),
        h("a", { href: blobUrl, download: entry.name, "data-action": "download" }, "download"),
      ),
      text === null ? null : h("pre", { class: "raw mono", "data-testid": "sandbox-file-text" }, text),
    );
  }

  const row = (e: EntryInfo, depth: number) => {
    const isDir = e.type === "dir";
    const canOpen = isDir || e.type === "file";
    return h(
      "div",
      {
        class: `tree-row${canOpen ? " link" : ""}${selected === e.path ? " selected" : ""}`,
        style: `padding-left:${depth * 16}px`,
        "data-path": e.path,
        "data-type": e.type,
        "data-open": isDir ? String(open.has(e.path)) : null,
        title: e.type === "symlink" ? `${e.path} → ${e.symlinkTarget ?? "?"}` : e.path,
        onclick: canOpen ? () => void (isDir ? toggle(e.path) : show(e)) : null,
      },
      h("span", { class: "caret" }, isDir ? (open.has(e.path) ? "▾" : "▸") : ""),
      h("span", { class: "name" }, e.name + (isDir ? "/" : "")),
      e.type === "symlink" ? h("span", { class: "dim" }, ` → ${e.symlinkTarget ?? "?"}`) : null,
      h("span", { class: "size dim" }, isDir ? "" : bytes(e.size)),
    );
  };

  /** The rows of `dir` and, under each open directory, its own rows one step further in. */
  const rows = (dir: string, depth: number): HTMLElement[] => {
    const listing = listings.get(dir);
    const pad = `padding-left:${depth * 16 + 14}px`;
    if (!listing) return [h("div", { class: "dim", style: pad }, "loading…")];
    if ("error" in listing) return [h("div", { class: "sev-error", style: pad }, listing.error)];
    if (listing.entries.length === 0) return [h("div", { class: "dim", style: pad }, "empty")];
    return listing.entries.flatMap((e) => [row(e, depth), ...(e.type === "dir" && open.has(e.path) ? rows(e.path, depth + 1) : [])]);
  };

  function render(): void {
    if (closed) return;
    refreshButton.disabled = !live;
    replace(tree, !live ? h("div", { class: "empty" }, "The sandbox is not running.") : rows("", 0));
  }

  return {
    element,
    refresh,
    setLive(now: boolean) {
      if (now === live) return;
      live = now;
      if (live) void refresh();
      else render();
    },
    close() {
      closed = true;
      if (blobUrl) URL.revokeObjectURL(blobUrl);
    },
  };
}
