// The data directory holds the JWT secret, the signing key and the database password. On a shared
// host /var/tmp is writable by everyone: a directory or key file planted there before our first
// start would hand its author a known secret, so neither is used unless it is ours and private.
import { existsSync } from "node:fs";
import { lstat, readFile, writeFile } from "node:fs/promises";
import { userInfo } from "node:os";
import { EmbeddedError } from "./errors.ts";

const isOurs = (uid: number) => uid === userInfo().uid || uid === 0;

/** The data dir must be a real directory, ours (or root's), writable by no one else. */
export async function assertPrivateDir(dir: string): Promise<void> {
  const st = await lstat(dir);
  if (!st.isDirectory() || !isOurs(st.uid) || st.mode & 0o022) {
    throw new EmbeddedError(
      "data_dir_not_private",
      `${dir} is not a private directory of this user (owner uid ${st.uid}, mode ${(st.mode & 0o777).toString(8)}${st.isSymbolicLink() ? ", a symlink" : ""}): someone else could have planted keys in it. Remove it or set COGO_DATA_DIR to a directory of your own (mode 755 or tighter).`,
    );
  }
}

/** A secret file must be a regular file, ours, readable by no one else. */
export async function assertPrivateFile(file: string): Promise<void> {
  const st = await lstat(file);
  if (!st.isFile() || !isOurs(st.uid) || st.mode & 0o077) {
    throw new EmbeddedError(
      "key_file_not_private",
      `${file} must be a regular file of this user with mode 600 (owner uid ${st.uid}, mode ${(st.mode & 0o777).toString(8)}); it was not made by COGO Sandbox. If you made it, chown it and chmod 600; else start afresh (npm start -- --reset, or another COGO_DATA_DIR).`,
    );
  }
}

/** A secret kept in `file`: made once by `make` (0600, never over an existing file), then checked and read. */
export async function loadOrCreatePrivateFile(file: string, make: () => Promise<string> | string): Promise<string> {
  if (!existsSync(file)) await writeFile(file, (await make()) + "\n", { mode: 0o600, flag: "wx" });
  await assertPrivateFile(file);
  return (await readFile(file, "utf8")).trim();
}
