import { execFile } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { constants } from 'node:fs';
import { chmod, chown, lstat, mkdir, open, readdir, readFile, rm, rmdir, statfs, writeFile, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { ArtifactRejected, InvalidSandboxSpec, SandboxUnavailable, WorkspaceFull } from './errors.ts';
import { validateWorkspacePath } from '../../functions/_shared/paths.ts';
import { mountTmpfs, unmount } from './launcher.ts';
import { ownerAlive, ownerTag } from './procfs.ts';
import type { SandboxFile } from './types.ts';

const execFileP = promisify(execFile);

/**
 * Deletes a directory tree by its own process: fs.rm walks in JS on the event loop, and a task
 * may leave hundreds of thousands of files. rm(1) follows no symlink.
 */
async function removeTree(dir: string): Promise<void> {
  await execFileP('rm', ['-rf', '--one-file-system', '--', dir]).catch(() => rm(dir, { recursive: true, force: true }));
}

export interface Owner {
  uid: number;
  gid: number;
}

/**
 * Makes sure `root` can hold workspaces: a real directory (not a symlink) owned by us, not group-
 * or world-writable (else another user could swap a workspace for a symlink), and traversable by
 * the sandbox uids, which must reach the workspace to bind it.
 */
export async function prepareRoot(root: string, asRoot: boolean): Promise<void> {
  await mkdir(root, { recursive: true, mode: 0o711 });
  const st = await lstat(root);
  const problem = !st.isDirectory() ? 'is not a directory' : st.uid !== process.geteuid?.() ? 'is not owned by the worker' : st.mode & 0o022 ? 'is group or world writable' : null;
  if (problem) throw new SandboxUnavailable(`sandbox root ${root} ${problem}`, { root });
  if (asRoot && (st.mode & 0o001) === 0) await chmod(root, (st.mode & 0o755) | 0o711);
}

/** A task's workspace directory and how to get rid of it. */
export interface Workspace {
  /** Host directory bound at /workspace. */
  dir: string;
  /**
   * Removes it; nothing in it is followed. `reusable` (only when the task is proven gone, so
   * nothing can race the wipe) lets a pooled tmpfs be emptied and kept for the next task.
   */
  remove(reusable: boolean): Promise<void>;
}

/** Idle pooled tmpfs mounts per root, each with its size (`SandboxOptions.workspacePool`). */
const idle = new Map<string, { mount: string; bytes: number }[]>();

/**
 * Creates an empty workspace under root. As root it is on a tmpfs of exactly `bytes` (nosuid,
 * nodev) owned by the sandbox uid: the size cap is enforced by the kernel. With `pool` > 0 the
 * tmpfs outlives the task: the workspace is a fresh subdirectory of an idle mount of that size,
 * and up to `pool` emptied mounts per root are kept, which saves a mount and an unmount (by the
 * sandbox launcher) per task. Without root it is a plain directory and only RLIMIT_FSIZE bounds
 * the task.
 */
export async function createWorkspace(root: string, bytes: number, owner: Owner | null, pool: number): Promise<Workspace> {
  if (!owner) {
    const dir = join(root, `ws-${await ownerTag()}-${randomUUID()}`);
    await mkdir(dir, { mode: 0o700 });
    return { dir, remove: () => removeTree(dir) };
  }
  if (pool <= 0) {
    // Owned by root at mount, handed over after: tmpfs options show in the task's mountinfo, and
    // the kernel prints uid=/gid= there as host ids (the slot uid).
    const dir = await mountWorkspace(root, bytes, 'mode=0700');
    try {
      await chown(dir, owner.uid, owner.gid);
    } catch (err) {
      await removeWorkspace(dir, true);
      throw err;
    }
    return { dir, remove: () => removeWorkspace(dir, true) };
  }
  const free = idle.get(root) ?? [];
  const i = free.findIndex((m) => m.bytes === bytes);
  // The mount's root stays the worker's (0711): the task only ever sees its own subdirectory.
  const mount = i >= 0 ? free.splice(i, 1)[0]!.mount : await mountWorkspace(root, bytes, 'mode=0711');
  const dir = join(mount, `task-${randomUUID()}`);
  try {
    await mkdir(dir, { mode: 0o700 });
    await chown(dir, owner.uid, owner.gid);
  } catch (err) {
    await removeWorkspace(mount, true);
    throw err;
  }
  return {
    dir,
    remove: async (reusable) => {
      // Emptying a mount file by file is work on the worker's event loop (fs.rm walks in JS: a
      // task that left 600,000 files stalled its worker for ~18 s); unmounting frees everything in
      // the kernel, off the loop. So only a workspace with few entries is wiped for reuse.
      if (reusable && (await entriesOn(mount)) <= REUSE_MAX_ENTRIES) {
        const kept = await rm(dir, { recursive: true, force: true }).then(
          () => true,
          () => false,
        );
        const list = idle.get(root) ?? [];
        if (kept && list.length < pool) {
          list.push({ mount, bytes });
          idle.set(root, list);
          return;
        }
      }
      await removeWorkspace(mount, true);
    },
  };
}

/** A pooled workspace holding more entries than this is unmounted, not emptied for reuse. */
export const REUSE_MAX_ENTRIES = 2000;

/** Files and directories on a tmpfs, from its inode count (one statfs, no walk); Infinity if unknown. */
async function entriesOn(mount: string): Promise<number> {
  const s = await statfs(mount).catch(() => null);
  return s ? s.files - s.ffree : Infinity;
}

const TMPFS_MAGIC = 0x01021994;

/** Bytes used and free on the tmpfs a workspace is on (one statfs), or null when it is not a tmpfs (no root). */
export async function workspaceSpace(dir: string): Promise<{ usedBytes: number; freeBytes: number } | null> {
  const s = await statfs(dir).catch(() => null);
  if (!s || s.type !== TMPFS_MAGIC) return null;
  return { usedBytes: (s.blocks - s.bfree) * s.bsize, freeBytes: s.bavail * s.bsize };
}

/**
 * Whether a regular file under `dir` is exactly `bytes` long, by find(1) in its own process (a
 * workspace may hold hundreds of thousands of files; a walk in JS would stall the event loop).
 * Symlinks are not followed and other mounts not entered. False when find fails or takes too long.
 */
export async function hasFileOfSize(dir: string, bytes: number, timeoutMs = 3000): Promise<boolean> {
  const r = await execFileP('find', [dir, '-xdev', '-type', 'f', '-size', `${bytes}c`, '-print', '-quit'], { timeout: timeoutMs }).catch(() => null);
  return (r?.stdout.length ?? 0) > 0;
}

/** Unmounts the idle pooled workspaces of `root` (a worker shutting down). */
export async function drainWorkspacePool(root: string): Promise<void> {
  const list = idle.get(root) ?? [];
  idle.delete(root);
  await Promise.all(list.map((m) => removeWorkspace(m.mount, true)));
}

async function mountWorkspace(root: string, bytes: number, access: string): Promise<string> {
  const dir = join(root, `ws-${await ownerTag()}-${randomUUID()}`);
  await mkdir(dir, { mode: 0o700 });
  try {
    await mountTmpfs(dir, `size=${bytes},${access}`);
  } catch (err) {
    await rmdir(dir).catch(() => {});
    throw new SandboxUnavailable(`cannot mount the workspace tmpfs: ${(err as Error).message}`);
  }
  return dir;
}

const reaped = new Map<string, Promise<void>>();

/**
 * Once per root and process: removes workspaces whose worker died without cleaning up (a leaked
 * tmpfs holds RAM). Workspaces of live workers sharing the root are left alone.
 */
export function reapStaleWorkspaces(root: string): Promise<void> {
  let done = reaped.get(root);
  if (!done) {
    done = (async () => {
      const mounts = await readFile('/proc/self/mounts', 'utf8');
      for (const name of await readdir(root)) {
        const tag = /^ws-(\d+-\d+)-/.exec(name)?.[1];
        if (!tag || (await ownerAlive(tag))) continue;
        const dir = join(root, name);
        await removeWorkspace(dir, mounts.includes(` ${dir} `)).catch(() => {});
      }
    })();
    reaped.set(root, done);
  }
  return done;
}

/** Unmounts (as root) or deletes the workspace; nothing in it is followed. Idempotent. */
export async function removeWorkspace(dir: string, mounted: boolean): Promise<void> {
  if (mounted) {
    // The kernel frees a tmpfs's inodes inside umount(2): ~1.7 s for 600,000 files here. The
    // launcher serves one request at a time, so a big one is unmounted by its own process
    // instead, and sandbox starts meanwhile do not queue behind it.
    if ((await entriesOn(dir)) > REUSE_MAX_ENTRIES)
      await execFileP('umount', ['--', dir])
        .catch(() => unmount(dir))
        .catch(() => {});
    else await unmount(dir).catch(() => {});
    await rmdir(dir).catch((err: NodeJS.ErrnoException) => {
      if (err.code !== 'ENOENT') throw err;
    });
  } else {
    await removeTree(dir);
  }
}

/**
 * Writes the task's files into the fresh (so symlink-free) workspace, owned by the sandbox user.
 * Their total size must fit in `limitBytes`.
 */
export async function writeFiles(dir: string, files: SandboxFile[], owner: Owner | null, limitBytes: number): Promise<void> {
  const decoded = files.map((f, i) => decodeFile(f, i));
  if (decoded.reduce((sum, f) => sum + f.data.length, 0) > limitBytes) throw new WorkspaceFull(limitBytes);
  const madeDirs = new Set<string>();
  for (const [i, f] of decoded.entries()) {
    const parts = f.path.split('/');
    for (let d = 1; d < parts.length; d++) {
      const sub = parts.slice(0, d).join('/');
      if (madeDirs.has(sub)) continue;
      await mkdir(join(dir, sub), { mode: 0o755 }).catch((err: NodeJS.ErrnoException) => {
        throw new InvalidSandboxSpec(`files[${i}].path`, err.code === 'EEXIST' ? `${sub} is a file` : err.message);
      });
      madeDirs.add(sub);
      if (owner) await chown(join(dir, sub), owner.uid, owner.gid);
    }
    const target = join(dir, f.path);
    try {
      await writeFile(target, f.data, { flag: 'wx', mode: 0o600 });
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'ENOSPC') throw new WorkspaceFull(limitBytes);
      throw new InvalidSandboxSpec(`files[${i}].path`, code === 'EEXIST' ? 'duplicate or a directory' : (err as Error).message);
    }
    await chmod(target, f.mode);
    if (owner) await chown(target, owner.uid, owner.gid);
  }
}

function decodeFile(f: SandboxFile, i: number): { path: string; data: Buffer; mode: number } {
  if (typeof f !== 'object' || f === null) throw new InvalidSandboxSpec(`files[${i}]`, 'must be an object');
  const path = validateWorkspacePath(f.path);
  if (typeof f.content !== 'string') throw new InvalidSandboxSpec(`files[${i}].content`, 'must be a string');
  const encoding = f.encoding ?? 'utf8';
  if (encoding !== 'utf8' && encoding !== 'base64') throw new InvalidSandboxSpec(`files[${i}].encoding`, "must be 'utf8' or 'base64'");
  if (encoding === 'base64' && !/^[A-Za-z0-9+/]*={0,2}$/.test(f.content.replace(/\s+/g, ''))) {
    throw new InvalidSandboxSpec(`files[${i}].content`, 'is not valid base64');
  }
  const mode = f.mode ?? 0o644;
  if (!Number.isInteger(mode) || mode < 0 || mode > 0o7777) throw new InvalidSandboxSpec(`files[${i}].mode`, 'must be a permission number');
  return { path, data: Buffer.from(f.content, encoding), mode: mode & 0o777 };
}

const DIR_FLAGS = constants.O_RDONLY | constants.O_DIRECTORY | constants.O_NOFOLLOW;
const FILE_FLAGS = constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK | constants.O_NOCTTY;

/**
 * Reads a regular file of the workspace, refusing anything that is not one. Never follows a
 * symlink: each directory is opened with O_NOFOLLOW relative to its parent's descriptor (through
 * /proc/self/fd, an openat walk), and the file itself is lstat'ed, opened O_NOFOLLOW|O_NONBLOCK
 * (a fifo cannot block us) and checked again with fstat. Files over maxBytes are refused.
 */
export async function collectFile(workspace: string, relPath: string, maxBytes: number): Promise<Buffer> {
  const rel = validateWorkspacePath(relPath);
  const parts = rel.split('/');
  const name = parts.pop()!;
  const handles: FileHandle[] = [];
  try {
    let dir = await open(workspace, DIR_FLAGS);
    handles.push(dir);
    for (const part of parts) {
      const at = `/proc/self/fd/${dir.fd}/${part}`;
      dir = await open(at, DIR_FLAGS).catch(async (err: NodeJS.ErrnoException) => {
        const st = await lstat(at).catch(() => null);
        throw st?.isSymbolicLink() ? new ArtifactRejected(rel, `goes through a symlink (${part})`) : rejectFor(rel, err, `${part} is not a directory`);
      });
      handles.push(dir);
    }
    const at = `/proc/self/fd/${dir.fd}/${name}`;
    const before = await lstat(at).catch((err: NodeJS.ErrnoException) => {
      throw rejectFor(rel, err, err.message);
    });
    if (!before.isFile()) throw new ArtifactRejected(rel, before.isSymbolicLink() ? 'is a symlink' : 'is not a regular file');
    if (before.size > maxBytes) throw new ArtifactRejected(rel, `is larger than ${maxBytes} bytes`, { size: before.size, maxBytes });
    const file = await open(at, FILE_FLAGS).catch((err: NodeJS.ErrnoException) => {
      throw rejectFor(rel, err, err.message);
    });
    handles.push(file);
    const st = await file.stat();
    if (!st.isFile() || st.ino !== before.ino || st.dev !== before.dev) throw new ArtifactRejected(rel, 'changed while being opened');
    // Read to EOF rather than trusting st.size, but never past maxBytes + 1.
    const chunks: Buffer[] = [];
    let length = 0;
    for (;;) {
      const chunk = Buffer.alloc(Math.min(64 * 1024, maxBytes + 1 - length));
      const { bytesRead } = await file.read(chunk, 0, chunk.length, length);
      if (bytesRead === 0) break;
      chunks.push(chunk.subarray(0, bytesRead));
      length += bytesRead;
      if (length > maxBytes) throw new ArtifactRejected(rel, `is larger than ${maxBytes} bytes`, { maxBytes });
    }
    return Buffer.concat(chunks, length);
  } finally {
    for (const h of handles.reverse()) await h.close().catch(() => {});
  }
}

function rejectFor(rel: string, err: NodeJS.ErrnoException, fallback: string): ArtifactRejected {
  if (err.code === 'ENOENT') return new ArtifactRejected(rel, 'does not exist');
  if (err.code === 'ELOOP') return new ArtifactRejected(rel, 'goes through a symlink');
  return new ArtifactRejected(rel, fallback, { errno: err.code });
}
