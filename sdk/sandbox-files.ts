// `sbx.files`: the files of a live sandbox, named as E2B's (docs/design/persistent-sandboxes.md §2):
//   await sbx.files.write("src/app.ts", "export {}\n");     // parent directories made
//   const text = await sbx.files.readText("src/app.ts");
//   const entries = await sbx.files.list("src");            // EntryInfo[]
//   await sbx.files.remove("src", { recursive: true });
//   await sbx.files.upload("project", tarBytes);            // a tar archive, extracted into project/
//   const tar = await sbx.files.download("project");        // project/ as a tar archive
// Paths are relative to /workspace; a symlink is never followed. At most 32 MiB per call (413),
// 8 calls in flight per sandbox (429 with retryAfterSeconds); a full disk is `sandbox_disk_full`.
import type { SupabaseClient } from "@supabase/supabase-js";
import type { EntryInfo } from "../functions/_shared/sandbox-files.ts";
import { call } from "./api.ts";

export type { EntryInfo } from "../functions/_shared/sandbox-files.ts";

const encodePath = (path: string) => path.split("/").map(encodeURIComponent).join("/");
const asBlob = (data: string | Uint8Array) => new Blob([typeof data === "string" ? new TextEncoder().encode(data) : (data as Uint8Array<ArrayBuffer>)]);
const bytesOf = async (blob: Blob) => new Uint8Array(await blob.arrayBuffer());

export class SandboxFiles {
  private readonly base: string;

  constructor(
    private readonly supabase: SupabaseClient,
    sandboxId: string,
  ) {
    this.base = `/sandboxes/${sandboxId}/files`;
  }

  /** Entries of a directory (not recursive). @param dir relative to /workspace; "" is /workspace itself */
  async list(dir = ""): Promise<EntryInfo[]> {
    return (await call<{ entries: EntryInfo[] }>(this.supabase, "GET", `${this.base}?path=${encodeURIComponent(dir)}`)).entries;
  }

  /** A file's bytes. */
  async read(path: string): Promise<Uint8Array> {
    return bytesOf(await call<Blob>(this.supabase, "GET", `${this.base}/${encodePath(path)}`));
  }

  /** A file's text (UTF-8). */
  async readText(path: string): Promise<string> {
    return new TextDecoder().decode(await this.read(path));
  }

  /** Writes a file (replacing it atomically), making its parent directories. */
  async write(path: string, data: string | Uint8Array): Promise<{ path: string; size: number }> {
    return call(this.supabase, "PUT", `${this.base}/${encodePath(path)}`, asBlob(data));
  }

  /** Removes a file or a symlink; a directory only with `recursive: true`. */
  async remove(path: string, opts: { recursive?: boolean } = {}): Promise<void> {
    await call(this.supabase, "DELETE", `${this.base}/${encodePath(path)}${opts.recursive ? "?recursive=true" : ""}`);
  }

  /** Extracts a tar archive into `dir` (made if missing); owners and permissions in it are not kept. */
  async upload(dir: string, tar: Uint8Array): Promise<{ path: string; size: number }> {
    return call(this.supabase, "PUT", `${this.base}?format=tar&path=${encodeURIComponent(dir)}`, asBlob(tar));
  }

  /** `dir` as a tar archive (symlinks stored as symlinks). */
  async download(dir = ""): Promise<Uint8Array> {
    return bytesOf(await call<Blob>(this.supabase, "GET", `${this.base}?format=tar&path=${encodeURIComponent(dir)}`));
  }
}
