// Root-only features (persistent sandboxes enter namespaces with setns, own cgroups and per-slot
// uids). Their cases run only as root; as another user, this one test fails in their place and
// says why, so a non-root run is never a silent pass.
import { it } from "vitest";

export const isRoot = process.geteuid?.() === 0;

export function requireRoot(what: string): void {
  if (isRoot) return; // nothing registered: a root run shows no skipped test for it
  it(`needs root: ${what}`, () => {
    throw new Error(`${what} need root (setns into the sandbox, cgroups, per-slot uids): run the tests as root, as CI does`);
  });
}
