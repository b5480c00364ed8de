// The walk that saves a plan's workspace stops at its caps and never lists a directory whole: a
// task may leave hundreds of thousands of entries behind, and the walk runs on the worker's loop.
import { mkdir, symlink, writeFile } from "node:fs/promises";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { WORKSPACE_LIMITS } from "../../functions/_shared/plans/limits.ts";
import { walkWorkspace } from "../../worker/plan-workspace.ts";
import { tempDirs } from "../helpers/temp.ts";

const tempDir = tempDirs("cogo-walk-");
const many = async (n: number, make: (i: number) => Promise<void>) => {
  for (let i = 0; i < n; i += 500) await Promise.all(Array.from({ length: Math.min(500, n - i) }, (_, k) => make(i + k)));
};

describe("walkWorkspace", () => {
  it("stops one file past the file cap in a directory of 30,000 files", async () => {
    const dir = await tempDir();
    await many(30_000, (i) => writeFile(path.join(dir, `f${i}`), ""));
    const w = await walkWorkspace(dir);
    expect(w.over).toBe(`the workspace holds more than ${WORKSPACE_LIMITS.files} files`);
    expect(w.files).toHaveLength(WORKSPACE_LIMITS.files + 1);
  });

  it("stops at the entry cap when entries are not files, and keeps a bounded list of them", async () => {
    const dir = await tempDir();
    await mkdir(path.join(dir, "links"));
    await many(4 * WORKSPACE_LIMITS.files + 500, (i) => symlink("/etc/hostname", path.join(dir, "links", `l${i}`)));
    await writeFile(path.join(dir, "a.txt"), "a");
    const w = await walkWorkspace(dir);
    expect(w.over).toBe(`the workspace holds more than ${4 * WORKSPACE_LIMITS.files} entries`);
    expect(w.other.length).toBe(WORKSPACE_LIMITS.files);
    expect(w.other[0]).toMatchObject({ why: "symlinks are not saved" });
  });

  it("lists nested files, and reports symlinks and refused names without following them", async () => {
    const dir = await tempDir();
    await mkdir(path.join(dir, "src", "lib"), { recursive: true });
    await writeFile(path.join(dir, "src", "lib", "x.ts"), "x");
    await writeFile(path.join(dir, "README"), "r");
    await symlink("/etc", path.join(dir, "src", "etc"));
    const w = await walkWorkspace(dir);
    expect(w.over).toBeUndefined();
    expect(w.files.sort()).toEqual(["README", "src/lib/x.ts"]);
    expect(w.other).toEqual([{ path: "src/etc", why: "symlinks are not saved" }]);
  });
});
