import { constants, type Dirent } from 'node:fs';
import { open, opendir, type FileHandle } from 'node:fs/promises';
import { ARTIFACT_LIMITS, artifactMatcher, type ArtifactLimits, hasWildcard, literalPrefix, validateArtifactPattern } from '../../functions/_shared/artifacts/patterns.ts';
import { ArtifactRejected } from './errors.ts';
import { collectFile } from './workspace.ts';

/** One collected path: its bytes, or why it was refused. */
export type Artifact = { path: string; content: Buffer; error?: undefined } | { path: string; content?: undefined; error: string };

const DIR_FLAGS = constants.O_RDONLY | constants.O_DIRECTORY | constants.O_NOFOLLOW;

/** At most `max` entries of an open directory (in the order the filesystem gives them); [] if unreadable. */
async function listDir(dir: FileHandle, max: number): Promise<Dirent[]> {
  const entries: Dirent[] = [];
  if (max <= 0) return entries;
  const d = await opendir(`/proc/self/fd/${dir.fd}`).catch(() => null);
  if (!d) return entries;
  try {
    while (entries.length < max) {
      const e = await d.read();
      if (!e) break;
      entries.push(e);
    }
  } catch {
    // unreadable midway: what was read so far
  } finally {
    await d.close().catch(() => {});
  }
  return entries;
}

/**
 * Collects the files `patterns` name from a workspace whose task has exited. Literal paths are
 * read with collectFile; globs are expanded by a walk that opens every directory O_NOFOLLOW
 * relative to its parent and lists it through /proc/self/fd, so no symlink is ever followed, not
 * even one swapped in mid-walk. Whatever matches and is not a regular file (symlinks, fifos,
 * devices) or breaks a cap comes back with `error`; nothing here throws for what the task left.
 */
export async function collectArtifacts(workspace: string, patterns: string[], limits: Readonly<ArtifactLimits> = ARTIFACT_LIMITS): Promise<Artifact[]> {
  const found = new Map<string, Dirent | null>(); // null: named literally, not seen by a walk
  let visited = 0;
  let truncated = false;
  for (const raw of patterns.slice(0, limits.patterns)) {
    const pattern = validateArtifactPattern(raw);
    if (!hasWildcard(pattern)) {
      if (!found.has(pattern)) found.set(pattern, null);
      continue;
    }
    const matches = artifactMatcher(pattern);
    const walk = async (dir: FileHandle, rel: string, depth: number): Promise<void> => {
      // One past what the cap allows: a directory of a million entries is never listed whole.
      const entries = await listDir(dir, limits.entriesVisited - visited + 1);
      entries.sort((a, b) => (a.name < b.name ? -1 : 1));
      for (const e of entries) {
        if (++visited > limits.entriesVisited) return void (truncated = true);
        const path = rel ? `${rel}/${e.name}` : e.name;
        if (e.isDirectory()) {
          if (depth >= 64) continue;
          const sub = await open(`/proc/self/fd/${dir.fd}/${e.name}`, DIR_FLAGS).catch(() => null);
          if (!sub) continue; // replaced by a symlink (or gone) since the listing
          try {
            await walk(sub, path, depth + 1);
          } finally {
            await sub.close();
          }
        } else if (matches(path) && !found.has(path)) {
          found.set(path, e);
        }
      }
    };
    const prefix = literalPrefix(pattern);
    const start = await openDirNoFollow(workspace, prefix);
    if (!start) continue;
    try {
      await walk(start, prefix, prefix ? prefix.split('/').length : 0);
    } finally {
      await start.close();
    }
  }

  const out: Artifact[] = [];
  let total = 0;
  for (const [path, entry] of [...found].sort(([a], [b]) => (a < b ? -1 : 1))) {
    if (out.length >= limits.files) {
      truncated = true;
      break;
    }
    if (entry && !entry.isFile()) {
      out.push({ path, error: entry.isSymbolicLink() ? 'is a symlink' : 'is not a regular file' });
      continue;
    }
    const room = Math.min(limits.fileBytes, limits.totalBytes - total);
    try {
      const content = await collectFile(workspace, path, room);
      total += content.length;
      out.push({ path, content });
    } catch (err) {
      if (!(err instanceof ArtifactRejected)) throw err;
      const problem = String(err.details?.problem ?? err.message);
      out.push({ path, error: room < limits.fileBytes && /larger than/.test(problem) ? `${problem} (the task's artifacts may total ${limits.totalBytes} bytes)` : problem });
    }
  }
  if (truncated)
    out.push({ path: '.cogo-artifacts-truncated', error: `more than ${limits.files} files or ${limits.entriesVisited} directory entries matched; the rest were skipped` });
  return out;
}

/** Opens workspace/rel as a directory without following any symlink on the way, or null. */
async function openDirNoFollow(workspace: string, rel: string): Promise<FileHandle | null> {
  let dir = await open(workspace, DIR_FLAGS).catch(() => null);
  for (const part of rel ? rel.split('/') : []) {
    if (!dir) return null;
    const next = await open(`/proc/self/fd/${dir.fd}/${part}`, DIR_FLAGS).catch(() => null);
    await dir.close();
    dir = next;
  }
  return dir;
}
