// Workspace-relative paths as clients send them. Pure checks shared by the API (400 on bad input)
// and the worker (which never trusts what reaches it either).
import { CogoError } from "./errors.ts";

export class InvalidPathError extends CogoError {}

export const MAX_PATH_BYTES = 1024;

/** Returns the normalised relative path, or throws naming what is wrong. */
export function validateWorkspacePath(p: string): string {
  const fail = (why: string) => {
    throw new InvalidPathError("invalid_path", `path ${JSON.stringify(p.slice(0, 200))} ${why}`);
  };
  if (typeof p !== "string" || p.length === 0) fail("is empty");
  if (new TextEncoder().encode(p).length > MAX_PATH_BYTES) fail(`is longer than ${MAX_PATH_BYTES} bytes`);
  if (p.includes("\0")) fail("contains a NUL byte");
  if (p.startsWith("/")) fail("is absolute; give a path relative to the workspace");
  if (p.includes("\\")) fail("contains a backslash");
  const parts = p.split("/").filter((s) => s !== "" && s !== ".");
  if (parts.length === 0) fail("names the workspace itself");
  if (parts.includes("..")) fail("contains '..'");
  return parts.join("/");
}
