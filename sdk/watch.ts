// `cogo watch`: mirrors a local directory into a plan's workspace. Saves are collected until the
// directory is quiet for `debounceMs`, then sent as one change (POST /files), so a burst of saves
// (an editor writing a temp file and renaming, a formatter touching ten files) re-runs steps once.
import { createHash } from "node:crypto";
import { watch, type FSWatcher } from "node:fs";
import { lstat, readdir, readFile } from "node:fs/promises";
import { join, relative, sep } from "node:path";
import { validateWorkspacePath } from "../functions/_shared/paths.ts";
import type { ChangeResult } from "../functions/_shared/plans/view.ts";
import type { SandboxClient } from "./client.ts";

export interface WatchOptions {
  workspaceId: string;
  /** Quiet time before a batch of changes is sent. @default 200 */
  debounceMs?: number;
  /** Path components never uploaded. @default [".git", "node_modules"] */
  ignore?: string[];
  /** Upload every file once at start (else only later changes). @default false */
  initial?: boolean;
  /** Each change sent, with what it re-ran. */
  onChange?: (result: ChangeResult) => void;
  /** Files skipped (symlinks, bad names, unreadable) and failed uploads. */
  onWarning?: (message: string) => void;
}

export const WATCH_DEFAULTS = { debounceMs: 200, ignore: [".git", "node_modules"], initial: false } satisfies Partial<WatchOptions>;

interface Known {
  hash: string;
  executable: boolean;
}

export interface Watcher {
  /** Resolves once the changes seen so far are sent. */
  flushed(): Promise<void>;
  close(): Promise<void>;
}

export async function watchDirectory(sandbox: SandboxClient, dir: string, options: WatchOptions): Promise<Watcher> {
  const o = { ...WATCH_DEFAULTS, ...options };
  const warn = o.onWarning ?? (() => {});
  const known = new Map<string, Known>();
  const pending = new Set<string>();
  let timer: ReturnType<typeof setTimeout> | undefined;
  let sending: Promise<void> = Promise.resolve();
  const ignored = (rel: string) => rel.split("/").some((part) => o.ignore.includes(part));

  /** Reads a path as the workspace would store it; null when it is gone or not a regular file. */
  async function snapshot(rel: string): Promise<{ content: Buffer; executable: boolean } | null> {
    const st = await lstat(join(dir, rel)).catch(() => null);
    if (!st) return null;
    if (st.isSymbolicLink()) {
      warn(`${rel}: symlinks are not uploaded`);
      return null;
    }
    if (!st.isFile()) return null;
    return { content: await readFile(join(dir, rel)), executable: (st.mode & 0o100) !== 0 };
  }

  async function scan(rel = ""): Promise<string[]> {
    const out: string[] = [];
    for (const e of await readdir(join(dir, rel), { withFileTypes: true }).catch(() => [])) {
      const path = rel ? `${rel}/${e.name}` : e.name;
      if (ignored(path)) continue;
      if (e.isDirectory()) out.push(...(await scan(path)));
      else out.push(path);
    }
    return out;
  }

  async function send(paths: string[]): Promise<void> {
    const files: { path: string; content: string; encoding: "base64"; executable: boolean }[] = [];
    const deletes: string[] = [];
    const next = new Map<string, Known | null>();
    const seen = new Set<string>();
    for (const rel of paths) {
      if (seen.has(rel)) continue;
      seen.add(rel);
      try {
        validateWorkspacePath(rel);
      } catch (e) {
        warn((e as Error).message);
        continue;
      }
      const st = await lstat(join(dir, rel)).catch(() => null);
      if (st?.isDirectory()) {
        // A new or renamed directory: what is inside may not have produced events of its own.
        for (const inner of await scan(rel)) paths.push(inner);
        continue;
      }
      const snap = await snapshot(rel);
      if (!snap) {
        // Gone: the file itself, or a removed directory and everything known under it.
        const gone = !st ? [...known.keys()].filter((k) => k === rel || k.startsWith(`${rel}/`)) : known.has(rel) ? [rel] : [];
        for (const k of gone) {
          if (next.get(k) === null) continue;
          deletes.push(k);
          next.set(k, null);
        }
        continue;
      }
      const k = { hash: createHash("sha256").update(snap.content).digest("hex"), executable: snap.executable };
      const was = known.get(rel);
      if (was && was.hash === k.hash && was.executable === k.executable) continue;
      files.push({ path: rel, content: snap.content.toString("base64"), encoding: "base64", executable: k.executable });
      next.set(rel, k);
    }
    if (files.length === 0 && deletes.length === 0) return;
    try {
      o.onChange?.(await sandbox.writeFiles({ workspaceId: o.workspaceId, files, delete: deletes }));
      for (const [rel, k] of next) k ? known.set(rel, k) : known.delete(rel);
    } catch (err) {
      warn(`upload failed: ${(err as Error).message}; the next change sends these files again`);
    }
  }

  const flush = () => {
    timer = undefined;
    const batch = [...pending];
    pending.clear();
    sending = sending.then(() => send(batch));
  };

  // Known state first, so that only real changes are sent (or everything, with `initial`).
  const all = await scan();
  if (o.initial) await send(all);
  else {
    for (const rel of all) {
      const snap = await snapshot(rel).catch(() => null);
      if (snap) known.set(rel, { hash: createHash("sha256").update(snap.content).digest("hex"), executable: snap.executable });
    }
  }

  const watcher: FSWatcher = watch(dir, { recursive: true }, (_event, name) => {
    if (!name) return;
    const rel = relative(".", name.toString()).split(sep).join("/");
    if (ignored(rel)) return;
    pending.add(rel);
    clearTimeout(timer);
    timer = setTimeout(flush, o.debounceMs);
  });

  const flushed = async () => {
    if (timer) {
      clearTimeout(timer);
      flush();
    }
    await sending;
  };
  return {
    flushed,
    async close() {
      watcher.close();
      await flushed();
    },
  };
}
