// Workspace-relative paths as clients send them. One check shared by the API (400 on bad input)
// and the worker's sandbox (which never trusts what reaches it either).
import { CogoError } from "./errors.ts";

export class InvalidWorkspacePath extends CogoError {
  constructor(path: string, problem: string) {
    super("invalid_workspace_path", `workspace path ${JSON.stringify(String(path).slice(0, 200))}: ${problem}`, {
      path: String(path).slice(0, 200),
      problem,
    });
  }
}

const PATH_MAX = 4095;
const NAME_MAX = 255;
const MAX_DEPTH = 64;
const bytes = (s: string) => new TextEncoder().encode(s).length;

/**
 * Checks a path meant to stay inside the workspace and returns it normalised ("a//./b" → "a/b").
 * Rejects: non-strings, empty, absolute, '..' components, NUL and other control characters,
 * backslashes (a Windows path would silently become one odd file name), names over 255 bytes,
 * paths over 4095 bytes or deeper than 64 components.
 */
export function validateWorkspacePath(p: string): string {
  if (typeof p !== "string") throw new InvalidWorkspacePath(String(p), "not a string");
  if (p.includes("\0")) throw new InvalidWorkspacePath(p, "contains NUL");
  if (/[\x01-\x1f\x7f]/.test(p)) throw new InvalidWorkspacePath(p, "contains a control character");
  if (p.includes("\\")) throw new InvalidWorkspacePath(p, "contains a backslash");
  if (p.startsWith("/")) throw new InvalidWorkspacePath(p, "is absolute");
  if (bytes(p) > PATH_MAX) throw new InvalidWorkspacePath(p, `is longer than ${PATH_MAX} bytes`);
  const parts = p.split("/").filter((part) => part !== "" && part !== ".");
  if (parts.length === 0) throw new InvalidWorkspacePath(p, "is empty");
  if (parts.includes("..")) throw new InvalidWorkspacePath(p, "contains '..'");
  if (parts.length > MAX_DEPTH) throw new InvalidWorkspacePath(p, `is deeper than ${MAX_DEPTH} components`);
  for (const part of parts) {
    if (bytes(part) > NAME_MAX) throw new InvalidWorkspacePath(p, `has a component longer than ${NAME_MAX} bytes`);
  }
  return parts.join("/");
}
