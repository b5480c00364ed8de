// Artifacts out through the API: a task names paths and globs, the worker collects them after
// exit. Every plant (symlinks to /etc/shadow and /proc/1/environ, a symlinked directory, a fifo,
// a huge sparse file) comes back refused with the reason, and no byte of the host appears.
import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { ApiError } from "../../sdk/index.ts";
import { api, newUser } from "../helpers/env.ts";
import { securitySuite } from "./helpers.ts";

const s = securitySuite("art");

const PLANT = [
  "mkdir -p dist/sub && echo 'console.log(1)' > dist/a.js && echo 'b' > dist/sub/b.js && echo keep > dist/c.txt",
  "printf 'hello\\0bytes' > out.bin",
  "ln -s /etc/shadow shadow.txt",
  "ln -s /proc/1/environ environ.txt",
  "ln -s /etc etclink",
  "ln -s /etc dist/etc",
  "ln -s /etc/shadow dist/shadow.js",
  "mkfifo dist/fifo.js",
  "truncate -s 17M big.bin",
].join(" && ");

describe("artifacts", () => {
  it("collects named files and globs; symlinks, fifos, missing and oversized files are refused with the reason", async () => {
    const r = await s.run({
      command: PLANT,
      artifacts: ["out.bin", "shadow.txt", "environ.txt", "etclink/shadow", "dist/**/*.js", "missing.txt", "big.bin", "dist/etc/*"],
    });
    expect(r).toMatchObject({ status: "succeeded" });
    const list = await s.user.sandbox.listArtifacts(r.task.id);
    expect(list).toMatchObject({ taskId: r.task.id, status: "succeeded", complete: true });
    const byPath = Object.fromEntries(list.artifacts.map((a) => [a.path, a.error ?? `${a.sizeBytes} bytes`]));
    expect(byPath).toEqual({
      "big.bin": `is larger than ${16 * 1024 * 1024} bytes`,
      "dist/a.js": "15 bytes",
      "dist/fifo.js": "is not a regular file",
      "dist/shadow.js": "is a symlink",
      "dist/sub/b.js": "2 bytes",
      "environ.txt": "is a symlink",
      "etclink/shadow": "goes through a symlink (etclink)",
      "missing.txt": "does not exist",
      "out.bin": "11 bytes",
      "shadow.txt": "is a symlink",
    });
    // Nothing under the symlinked dist/etc was walked: the glob matched nothing there.
    expect(list.artifacts.some((a) => a.path.startsWith("dist/etc/"))).toBe(false);

    const bytes = await s.user.sandbox.getArtifact(r.task.id, "out.bin");
    expect(Buffer.from(bytes).toString("latin1")).toBe("hello\0bytes");
    const js = await s.user.sandbox.getArtifact(r.task.id, "dist/sub/b.js");
    expect(Buffer.from(js).toString()).toBe("b\n");

    const refused = await s.user.sandbox.getArtifact(r.task.id, "shadow.txt").catch((e: unknown) => e);
    expect(refused).toBeInstanceOf(ApiError);
    expect(refused).toMatchObject({ status: 409, code: "artifact_rejected" });
    expect((refused as Error).message).toContain("is a symlink");

    // No host secret in any stored byte.
    const shadow = readFileSync("/etc/shadow", "utf8").split("\n")[0]!;
    for (const a of list.artifacts.filter((x) => x.error === null)) {
      const body = Buffer.from(await s.user.sandbox.getArtifact(r.task.id, a.path)).toString("latin1");
      expect(body.includes(shadow), a.path).toBe(false);
      expect(body.includes("SUPABASE"), a.path).toBe(false);
    }
    await s.expectHealthy();
  });

  it("paths are checked: '..' and absolute paths are 400, unknown ones 404, another user's task 404", async () => {
    const r = await s.run({ command: "echo x > a.txt", artifacts: ["a.txt"] });
    expect(r).toMatchObject({ status: "succeeded" });
    const id = r.task.id;
    for (const [route, status, code] of [
      [`/tasks/${id}/artifacts/..%2F..%2Fetc%2Fshadow`, 400, "invalid_path"],
      [`/tasks/${id}/artifacts/%2Fetc%2Fshadow`, 400, "invalid_path"],
      [`/tasks/${id}/artifacts/a.txt%00`, 400, "invalid_path"],
      [`/tasks/${id}/artifacts/%E0%A4%A`, 400, "invalid_path"],
      [`/tasks/${id}/artifacts/b.txt`, 404, "artifact_not_found"],
    ] as const) {
      const res = await api("GET", route, { token: s.user.token });
      expect({ route, status: res.status, code: res.body.error?.code }).toEqual({ route, status, code });
    }
    const ok = await api("GET", `/tasks/${id}/artifacts/a.txt`, { token: s.user.token });
    expect(ok.status).toBe(200);
    expect(ok.body).toBe("x\n");

    const other = await newUser();
    for (const route of [`/tasks/${id}/artifacts`, `/tasks/${id}/artifacts/a.txt`]) {
      const res = await api("GET", route, { token: other.token });
      expect(res.status).toBe(404);
      expect(res.body.error.code).toBe("task_not_found");
    }
  });

  it("a task without artifacts lists none; a failed task's artifacts are still collected", async () => {
    const plain = await s.run({ command: "echo hi > a.txt" });
    expect(await s.user.sandbox.listArtifacts(plain.task.id)).toMatchObject({ patterns: [], artifacts: [], complete: true });
    const failed = await s.run({ command: "echo partial > log.txt; exit 3", artifacts: ["*.txt"] });
    expect(failed).toMatchObject({ status: "failed", exitCode: 3 });
    const list = await s.user.sandbox.listArtifacts(failed.task.id);
    expect(list.artifacts).toMatchObject([{ path: "log.txt", sizeBytes: 8, error: null, attempt: 1 }]);
    expect(list.artifacts[0]!.sha256).toMatch(/^[0-9a-f]{64}$/);
  });
});
