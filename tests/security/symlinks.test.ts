// Symlink (and hard link) plants: a task leaves links to host secrets in its workspace. Neither
// the worker's cleanup nor artifact collection may follow them.
//
// The task API does not return artifacts yet, so the collection half runs the same attack with
// startSandbox directly (same workspace root and slot uids as this file's worker) and calls
// collectFile on the workspace after exit, as a worker collecting artifacts would.
import { mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { randomUUID } from "node:crypto";
import { afterAll, describe, expect, it } from "vitest";
import { ArtifactRejected, collectFile, startSandbox } from "../../worker/sandbox/index.ts";
import { securitySuite } from "./helpers.ts";

const s = securitySuite("link");

// A host directory with a file the task cannot see but would reach if a link were followed.
const canary = `/var/tmp/cogo-sec-canary-${randomUUID()}`;
mkdirSync(`${canary}/dir`, { recursive: true });
writeFileSync(`${canary}/keep`, "host canary\n");
writeFileSync(`${canary}/dir/inner`, "host inner\n");
afterAll(() => rmSync(canary, { recursive: true, force: true }));

/** Links to everything a worker running as root must never read or delete for a task. */
const PLANT = [
  "echo fine > ok.txt",
  "ln -s /etc/shadow out",
  "ln -s /proc/1/environ init-environ",
  "ln -s /proc/self/environ self-environ", // on the host: the worker's own environment
  `ln -s ${canary}/keep canary-file`,
  `ln -s ${canary} canary-dir`,
  "ln -s / rootlink",
  "mkdir -p a/b && ln -s /etc a/b/etc",
  "ln -s ok.txt rel-link",
  "ln -s loop loop",
  "mkfifo fifo",
].join(" && ");

describe("symlink plants", () => {
  it("through the stack: links to host paths resolve to nothing inside, and cleanup follows none", async () => {
    const r = await s.run({
      command: `${PLANT} && cat out canary-file canary-dir/keep rootlink/etc/shadow 2>&1 | sed 's/^cat: //'; ln /etc/passwd hard 2>&1; ln /usr/bin/su su-copy 2>&1; ls -A | tr '\\n' ' '`,
    });
    expect(r).toMatchObject({ status: "succeeded", exitCode: 0, stderr: "" });
    expect(r.stdout).toBe(
      [
        "out: No such file or directory",
        "canary-file: No such file or directory",
        "canary-dir/keep: No such file or directory",
        "rootlink/etc/shadow: No such file or directory",
        "ln: failed to create hard link 'hard' => '/etc/passwd': Invalid cross-device link",
        "ln: failed to create hard link 'su-copy' => '/usr/bin/su': Invalid cross-device link",
        "a canary-dir canary-file fifo init-environ loop ok.txt out rel-link rootlink self-environ ",
      ].join("\n"),
    );
    await s.expectHealthy(); // also waits until the workspace is gone
    // Removing the workspace deleted nothing the links pointed to.
    expect(readFileSync(`${canary}/keep`, "utf8")).toBe("host canary\n");
    expect(readFileSync(`${canary}/dir/inner`, "utf8")).toBe("host inner\n");
    expect(readFileSync("/etc/shadow", "utf8")).toContain("root:");
  });

  it("collectFile refuses every planted link, fifo and loop; a real file still comes out", async () => {
    const proc = await startSandbox({ command: PLANT, limits: { wallTimeMs: 10_000 } }, { root: s.root });
    try {
      const exit = await proc.exited;
      expect(exit).toMatchObject({ exitCode: 0, reason: "exited" });
      const ws = proc.workspace;
      expect((await collectFile(ws, "ok.txt", 100)).toString()).toBe("fine\n"); // positive control
      const cases: [path: string, problem: string][] = [
        ["out", "is a symlink"],
        ["init-environ", "is a symlink"],
        ["self-environ", "is a symlink"],
        ["canary-file", "is a symlink"],
        ["canary-dir/keep", "goes through a symlink (canary-dir)"],
        ["canary-dir/dir/inner", "goes through a symlink (canary-dir)"],
        ["rootlink/etc/shadow", "goes through a symlink (rootlink)"],
        ["a/b/etc/shadow", "goes through a symlink (etc)"],
        ["rel-link", "is a symlink"],
        ["loop", "is a symlink"],
        ["loop/x", "goes through a symlink (loop)"],
        ["fifo", "is not a regular file"],
        ["a", "is not a regular file"],
      ];
      for (const [path, problem] of cases) {
        const started = performance.now();
        const err = await collectFile(ws, path, 1 << 20).then(
          (data) => new Error(`collected ${data.length} bytes: ${data.toString().slice(0, 40)}`),
          (e: unknown) => e,
        );
        expect(err, path).toBeInstanceOf(ArtifactRejected);
        expect((err as Error).message, path).toBe(`artifact ${JSON.stringify(path)}: ${problem}`);
        expect(performance.now() - started, `${path} must not block`).toBeLessThan(1000);
      }
    } finally {
      proc.kill("killed");
      await proc.cleanup();
    }
    expect(readFileSync(`${canary}/keep`, "utf8")).toBe("host canary\n");
    await s.expectHealthy();
  });
});
