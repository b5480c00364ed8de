// Artifact patterns as tasks name them: a workspace path, where a component may use `*` (any
// characters but `/`), `?` (one such character), or be `**` (any number of directories).
// Shared by the API (400 on a bad pattern) and the worker (which matches them while it walks).
import { InvalidWorkspacePath, validateWorkspacePath } from "../paths.ts";

export interface ArtifactLimits {
  patterns: number;
  files: number;
  fileBytes: number;
  totalBytes: number;
  entriesVisited: number;
}

/** Caps on what one task may collect; past them files are refused with the reason. */
export const ARTIFACT_LIMITS: Readonly<ArtifactLimits> = Object.freeze({
  /** Patterns per task. */
  patterns: 32,
  /** Files collected per task (matches past it are dropped, and one row says so). */
  files: 100,
  /** Bytes per file. @default 16 MiB */
  fileBytes: 16 * 1024 * 1024,
  /** Bytes of all files of a task. @default 64 MiB */
  totalBytes: 64 * 1024 * 1024,
  /** Directory entries a glob may visit, so a workspace of a million files cannot stall the worker. */
  entriesVisited: 20_000,
});

/** Checks a pattern (as validateWorkspacePath, plus `**` only as a whole component) and normalises it. */
export function validateArtifactPattern(p: string): string {
  const path = validateWorkspacePath(p);
  for (const part of path.split("/")) {
    if (part.includes("**") && part !== "**") throw new InvalidWorkspacePath(p, "'**' must be a whole path component");
  }
  return path;
}

export const hasWildcard = (pattern: string) => /[*?]/.test(pattern);

/** The directory a pattern's matches are all under: its components before the first wildcard. */
export function literalPrefix(pattern: string): string {
  const parts = pattern.split("/");
  const i = parts.findIndex((part) => hasWildcard(part));
  return parts.slice(0, i < 0 ? parts.length - 1 : i).join("/");
}

/** A matcher for whole workspace-relative paths. */
export function artifactMatcher(pattern: string): (path: string) => boolean {
  const parts = validateArtifactPattern(pattern).split("/");
  const source = parts
    .map((part, i) => {
      if (part === "**") return i === parts.length - 1 ? ".+" : "(?:[^/]+/)*";
      const body = part
        .replace(/[.+^${}()|[\]\\]/g, "\\$&")
        .replaceAll("*", "[^/]*")
        .replaceAll("?", "[^/]");
      return i === parts.length - 1 ? body : body + "/";
    })
    .join("");
  const re = new RegExp(`^${source}$`, "u");
  return (path) => re.test(path);
}
