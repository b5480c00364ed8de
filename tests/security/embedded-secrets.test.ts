// The embedded default's own secrets: the database superuser has a password of its own (a fixed
// one let any local process, or a sandbox sharing the host's loopback, run programs on the host
// through COPY … TO PROGRAM), and a data directory or key file someone else planted is refused.
import { chmod, chown, lstat, symlink, writeFile } from "node:fs/promises";
import path from "node:path";
import postgres from "postgres";
import { describe, expect, it } from "vitest";
import { freePort } from "../../embedded/ports.ts";
import { assertPrivateDir, assertPrivateFile } from "../../embedded/private-files.ts";
import { startStack } from "../../embedded/stack.ts";
import { api, stack } from "../helpers/env.ts";
import { tempDirs } from "../helpers/temp.ts";

const tempDir = tempDirs("cogo-secrets-");

describe("the database superuser", () => {
  it("has a password of its own: the old fixed one and no password are refused", async () => {
    const port = new URL(stack.dbUrl).port;
    // supabase_admin is the superuser; postgres (not one, but it owns the migrations) has its own.
    for (const [role, pw] of ["supabase_admin", "postgres"].flatMap((r) => ["postgres", ""].map((p) => [r, p] as const))) {
      const sql = postgres(`postgresql://${role}:${pw}@127.0.0.1:${port}/postgres`, { max: 1, connect_timeout: 5, onnotice: () => {} });
      const err = await sql`select 1`.then(
        () => undefined,
        (e: { code?: string }) => e,
      );
      await sql.end({ timeout: 1 });
      expect(err?.code, `${role} with password ${JSON.stringify(pw)} must not log in`).toMatch(/^(28P01|28000)$/);
    }
    expect(new URL(stack.dbUrl).password.length).toBeGreaterThanOrEqual(24);
    expect(new URL(stack.postgresUrl).password.length).toBeGreaterThanOrEqual(24);
    expect(new URL(stack.postgresUrl).password).not.toBe(new URL(stack.dbUrl).password);
    for (const file of ["db-password", "db-admin-password"]) {
      const st = await lstat(path.join(stack.dataDir, file));
      expect(st.mode & 0o777, file).toBe(0o600);
    }
    // The stack itself still works with it.
    expect((await api("GET", "/health", { token: stack.anonKey })).body.db.ok).toBe(true);
  });
});

describe("planted data directories and key files", () => {
  it("a data dir writable by others, or owned by another user, is refused before anything starts", async () => {
    const open = await tempDir();
    await chmod(open, 0o777);
    await expect(assertPrivateDir(open)).rejects.toMatchObject({ code: "data_dir_not_private" });
    const t0 = performance.now();
    await expect(startStack({ dataDir: open, dbPort: await freePort(), apiPort: 0, watch: false })).rejects.toMatchObject({ code: "data_dir_not_private" });
    expect(performance.now() - t0).toBeLessThan(2000); // refused up front, no Postgres started

    const foreign = await tempDir();
    await chmod(foreign, 0o755);
    await chown(foreign, 65534, 65534); // nobody
    await expect(assertPrivateDir(foreign)).rejects.toThrow(/owner uid 65534/);
    const mine = await tempDir();
    await expect(assertPrivateDir(mine)).resolves.toBeUndefined();
  });

  it("a key file readable by others, owned by someone else or a symlink is refused", async () => {
    const dir = await tempDir();
    const file = path.join(dir, "jwt-secret");
    await writeFile(file, "attacker-known-secret\n", { mode: 0o644 });
    await expect(assertPrivateFile(file)).rejects.toMatchObject({ code: "key_file_not_private" });
    await chmod(file, 0o600);
    await expect(assertPrivateFile(file)).resolves.toBeUndefined();
    await chown(file, 65534, 65534);
    await expect(assertPrivateFile(file)).rejects.toThrow(/owner uid 65534/);
    const link = path.join(dir, "signing-key.json");
    await symlink("/etc/hostname", link);
    await expect(assertPrivateFile(link)).rejects.toMatchObject({ code: "key_file_not_private" });
  });

  it("a planted jwt-secret in a data dir of ours stops the start, saying which file", async () => {
    const dir = await tempDir();
    await chmod(dir, 0o755);
    await writeFile(path.join(dir, "jwt-secret"), "attacker-known-secret\n", { mode: 0o644 });
    await expect(startStack({ dataDir: dir, dbPort: await freePort(), apiPort: 0, watch: false })).rejects.toThrow(
      new RegExp(`${dir}/jwt-secret must be a regular file of this user with mode 600`),
    );
  });
});
