// Files of a live sandbox over the API and the SDK (functions/_shared/routes/sandbox-files.ts,
// worker/sandboxes/files.ts, worker/sandbox/fileop.py, sdk/sandbox-files.ts) on the real stack with
// real bubblewrap. One sandbox (4 MiB workspace) serves every test: what the API writes a command
// sees and the other way round; list, delete, tar up and down; `..`, absolute paths and symlinks
// out of the workspace are refused and never show host content; another tenant gets 404 on every
// route; a full disk is 507, 33 MiB is 413, a burst of PUTs is served or told to retry (429 +
// Retry-After), as is a tenant over its files rate limit; ops make no tasks, count as activity, and maintenance purges them.
import { spawnSync } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { MAX_SANDBOX_FILE_BYTES } from "../../functions/_shared/sandbox-files.ts";
import { ConflictError, NotFoundError } from "../../sdk/index.ts";
import type { LiveSandbox } from "../../sdk/sandboxes.ts";
import { functionsUrl, newUser, sql, sqlAsUser, stack, startWorker, uniqueKind } from "../helpers/env.ts";
import { isRoot, requireRoot } from "../helpers/root.ts";

requireRoot("Files of persistent sandboxes");
const kind = uniqueKind("sbxfiles");
const MiB = 1024 * 1024;
let a: Awaited<ReturnType<typeof newUser>>;
let b: Awaited<ReturnType<typeof newUser>>;
let sbx: LiveSandbox;
let files: string;

/** A raw request to the function (binary bodies, headers and statuses as they are). */
async function raw(method: string, route: string, token: string, body?: Uint8Array | string) {
  const res = await fetch(functionsUrl + route, {
    method,
    headers: { authorization: `Bearer ${token}`, ...(body === undefined ? {} : { "content-type": "application/octet-stream" }) },
    body: body as BodyInit | undefined,
  });
  const bytes = new Uint8Array(await res.arrayBuffer());
  const text = new TextDecoder().decode(bytes);
  let json: any;
  try {
    json = JSON.parse(text);
  } catch {
    json = undefined;
  }
  return { status: res.status, bytes, text, json, headers: res.headers };
}

const run = async (cmd: string) => (await sbx.commands.run(cmd)).stdout;

beforeAll(async () => {
  a = await newUser({ maxRunning: 100 });
  b = await newUser();
  if (!isRoot) return;
  await startWorker({ kind, concurrency: 2 });
  sbx = await a.sandbox.sandboxes.create({ requirements: { kind }, idleTimeoutMs: 120_000, limits: { workspaceBytes: 4 * MiB } });
  expect(sbx.info.status).toBe("ready");
  files = `/sandboxes/${sbx.sandboxId}/files`;
});
afterAll(async () => {
  if (sbx) await sql`select cogo.stop_sandbox(${sbx.sandboxId})`;
});

describe.runIf(isRoot)("files of a live sandbox", () => {
  it("what the API writes a command reads, and the other way round; list; a 1 MB round trip", async () => {
    expect(await sbx.files.write("dir/sub/a.txt", "hello\n")).toEqual({ path: "dir/sub/a.txt", size: 6 });
    expect(await run("cat dir/sub/a.txt && stat -c %U:%a dir/sub/a.txt && mkdir -p out && printf made > out/x && ln -s x out/link")).toBe("hello\nsandbox:644\n");
    // Replacing answers 200, a new file 201.
    const [again, created] = await Promise.all([raw("PUT", `${files}/dir/sub/a.txt`, a.token, "again\n"), raw("PUT", `${files}/dir/new.txt`, a.token, "")]);
    expect([again.status, created.status]).toEqual([200, 201]);
    expect(await sbx.files.readText("out/x")).toBe("made");
    const entries = await sbx.files.list("out");
    expect(entries.map((e) => [e.name, e.path, e.type, e.size])).toEqual([
      ["link", "out/link", "symlink", 1],
      ["x", "out/x", "file", 4],
    ]);
    expect(entries[0]!.symlinkTarget).toBe("x");
    expect(entries[1]).toMatchObject({ mode: 0o644, permissions: "-rw-r--r--" });
    expect(Date.parse(entries[1]!.modifiedTime)).toBeGreaterThan(Date.now() - 60_000);
    const root = await sbx.files.list();
    expect(root.find((e) => e.name === "dir")).toMatchObject({ type: "dir", path: "dir" });

    const mb = new Uint8Array(MiB).map((_, i) => (i * 7919) % 251);
    const t0 = performance.now();
    await sbx.files.write("big.bin", mb);
    const back = await sbx.files.read("big.bin");
    const roundTripMs = performance.now() - t0;
    expect(Buffer.compare(Buffer.from(back), Buffer.from(mb))).toBe(0);
    console.log(`sandbox files: 1 MiB write + read round trip ${roundTripMs.toFixed(0)} ms`);
    await sbx.files.remove("big.bin");
  });

  it("deletes files and symlinks; a directory only with recursive=true", async () => {
    await run("mkdir -p del/inner && echo 1 > del/inner/f && echo 2 > del/g && ln -s /etc del/etc");
    // The symlink itself goes, not what it points to.
    const [file, link, dir] = await Promise.all([raw("DELETE", `${files}/del/g`, a.token), raw("DELETE", `${files}/del/etc`, a.token), raw("DELETE", `${files}/del`, a.token)]);
    expect([file.status, link.status, dir.status]).toEqual([204, 204, 409]);
    expect(dir.json.error).toMatchObject({ code: "is_directory" });
    await expect(sbx.files.read("del/g")).rejects.toBeInstanceOf(NotFoundError);
    await expect(sbx.files.remove("del")).rejects.toBeInstanceOf(ConflictError);
    await sbx.files.remove("del", { recursive: true });
    expect((await raw("DELETE", `${files}/del`, a.token)).status).toBe(404);
    expect(await run("test -e /etc/passwd && echo kept; test -e del || echo gone; cat dir/sub/a.txt")).toBe("kept\ngone\nagain\n");
  });

  it("moves directories as tar, both ways", async () => {
    const local = mkdtempSync(join(tmpdir(), "cogo-files-tar-"));
    try {
      mkdirSync(join(local, "src/t"), { recursive: true });
      writeFileSync(join(local, "src/t/one.txt"), "one\n");
      writeFileSync(join(local, "src/two.txt"), "two\n");
      const tar = spawnSync("tar", ["-c", "-f", "-", "-C", join(local, "src"), "."], { maxBuffer: 64 * MiB }).stdout;
      expect(await sbx.files.upload("up/here", tar)).toMatchObject({ path: "up/here", size: tar.length });
      expect(await run("cat up/here/t/one.txt up/here/two.txt; stat -c %U up/here/two.txt")).toBe("one\ntwo\nsandbox\n");

      await run("echo three > up/here/t/three.txt");
      const down = await sbx.files.download("up/here");
      mkdirSync(join(local, "back"));
      const x = spawnSync("tar", ["-x", "-f", "-", "-C", join(local, "back")], { input: Buffer.from(down) });
      expect(x.status, x.stderr.toString()).toBe(0);
      expect(readFileSync(join(local, "back/t/three.txt"), "utf8")).toBe("three\n");
      expect(readFileSync(join(local, "back/two.txt"), "utf8")).toBe("two\n");
      // A body that is not a tar is refused naming tar's complaint.
      const bad = await raw("PUT", `${files}?format=tar&path=junk`, a.token, "not a tar archive");
      expect(bad.status).toBe(422);
      expect(bad.json.error.code).toBe("tar_failed");
    } finally {
      rmSync(local, { recursive: true, force: true });
    }
  });

  it("refuses '..', absolute paths and symlinks out of the workspace, never showing host content", async () => {
    await run("ln -sf /etc/passwd pw && ln -sfn /etc etcdir && ln -sfn / rootlink && mkdir -p real && ln -sfn ../.. real/up");
    const refused: [string, string, string?][] = [
      ["GET", `${files}/..%2F..%2Fetc%2Fpasswd`],
      ["GET", `${files}/a%2F..%2F..%2Fetc%2Fpasswd`],
      ["GET", `${files}/%2Fetc%2Fpasswd`],
      ["GET", `${files}?path=%2Fetc`],
      ["GET", `${files}?path=..`],
      ["GET", `${files}?path=..&format=tar`],
      ["PUT", `${files}/..%2Fescape.txt`, "x"],
      ["GET", `${files}/pw`],
      ["GET", `${files}/etcdir/passwd`],
      ["GET", `${files}/rootlink/etc/passwd`],
      ["GET", `${files}/real/up/etc/passwd`],
      ["GET", `${files}?path=etcdir`],
      ["GET", `${files}?path=rootlink&format=tar`],
      ["GET", `${files}?path=real/up&format=tar`],
      ["PUT", `${files}/etcdir/evil`, "x"],
      ["PUT", `${files}?path=rootlink/tmp&format=tar`, "x"],
      ["DELETE", `${files}/etcdir/passwd`],
      ["DELETE", `${files}/rootlink/workspace?recursive=true`],
    ];
    // In batches of 8, the most ops in flight per sandbox.
    for (let i = 0; i < refused.length; i += 8) {
      const batch = refused.slice(i, i + 8);
      const answers = await Promise.all(batch.map(([method, route, body]) => raw(method, route, a.token, body)));
      answers.forEach((r, k) => {
        expect([400, 404], `${batch[k]![0]} ${batch[k]![1]}: ${r.status} ${r.text}`).toContain(r.status);
        expect(r.text).not.toMatch(/root:x:0|daemon:/);
      });
    }
    const sym = await raw("GET", `${files}/pw`, a.token);
    expect(sym.json.error).toMatchObject({ code: "symlink" });
    const dots = await raw("GET", `${files}/..%2Fx`, a.token);
    expect(dots.json.error).toMatchObject({ code: "invalid_path" });
    expect(dots.json.error.message).toMatch(/contains '\.\.'/);
    // Writing over a symlink replaces the link itself; its target is untouched.
    expect((await raw("PUT", `${files}/pw`, a.token, "mine\n")).status).toBe(200);
    expect(await run("test -L pw || cat pw; head -c 5 /etc/passwd")).toBe("mine\nroot:");
    expect(await run("ls /etc/evil 2>&1 >/dev/null | wc -l")).toBe("1\n");
  });

  it("another tenant's token is a 404 on every route, the anon key a 403; a sandbox not ready is 409", async () => {
    const routes = [
      ["GET", files],
      ["GET", `${files}?format=tar`],
      ["PUT", `${files}?format=tar`, "x"],
      ["GET", `${files}/dir/sub/a.txt`],
      ["PUT", `${files}/stolen.txt`, "x"],
      ["DELETE", `${files}/dir/sub/a.txt`],
    ] as const;
    const answers = await Promise.all(routes.map(([method, route, body]) => raw(method, route, b.token, body)));
    answers.forEach((r, i) => {
      expect(r.status, `${routes[i]![0]} ${routes[i]![1]}`).toBe(404);
      expect(r.text).not.toMatch(/again/);
    });
    // The anon key alone reaches no file route.
    for (const r of await Promise.all([raw("GET", files, stack.anonKey), raw("PUT", `${files}/anon.txt`, stack.anonKey, "x")])) expect(r.status).toBe(403);
    expect(await run("cat dir/sub/a.txt; ls stolen.txt 2>/dev/null | wc -l")).toBe("again\n0\n");
    // No worker serves this kind: the sandbox stays `starting`.
    const [starting] = (await sqlAsUser(a.id, `select id from cogo.create_sandbox('{"requirements": {"kind": "${uniqueKind("none")}"}}'::jsonb)`)) as unknown as { id: string }[];
    try {
      const r = await raw("PUT", `/sandboxes/${starting!.id}/files/a.txt`, a.token, "x");
      expect(r.status).toBe(409);
      expect(r.json.error.message).toMatch(/starting/);
    } finally {
      await sql`select cogo.stop_sandbox(${starting!.id})`;
    }
  });

  it("a full disk is 507 sandbox_disk_full and leaves no partial file; 33 MiB is 413 naming the cap", async () => {
    const full = await raw("PUT", `${files}/fill.bin`, a.token, new Uint8Array(5 * MiB));
    expect(full.status, full.text).toBe(507);
    expect(full.json.error).toMatchObject({ code: "sandbox_disk_full" });
    expect(await run("ls -A | grep -c cogo-write; ls fill.bin 2>/dev/null | wc -l")).toBe("0\n0\n");
    // The disk works again once the op failed.
    await sbx.files.write("after-full.txt", "ok");
    const huge = await raw("PUT", `${files}/huge.bin`, a.token, new Uint8Array(33 * MiB));
    expect(huge.status).toBe(413);
    expect(huge.json.error).toMatchObject({ code: "too_large", maxBytes: 32 * MiB });
    expect(huge.json.error.message).toMatch(/32 MiB/);
  });

  it("20 concurrent PUTs are each served or told when to retry (429 + Retry-After)", async () => {
    const results = await Promise.all(Array.from({ length: 20 }, (_, i) => raw("PUT", `${files}/burst/f${i}.txt`, a.token, `file ${i}\n`)));
    const served = results.filter((r) => r.status === 201);
    const busy = results.filter((r) => r.status === 429);
    expect(served.length + busy.length, results.map((r) => `${r.status} ${r.text}`).join("\n")).toBe(20);
    expect(served.length).toBeGreaterThanOrEqual(8);
    for (const r of busy) {
      expect(Number(r.headers.get("retry-after"))).toBeGreaterThanOrEqual(1);
      expect(r.json.error).toMatchObject({ code: "sandbox_ops_busy", max: 8 });
    }
    console.log(`sandbox files: 20 concurrent PUTs → ${served.length} served, ${busy.length} × 429`);
    const written = (await run("ls burst | wc -l")).trim();
    expect(Number(written)).toBe(served.length);
  });

  it("file calls take tokens of the tenant's files rate limit: over it, 429 with Retry-After naming the limit", async () => {
    await sql`select cogo.set_tenant_limits(${a.id}, ${sql.json({ filesBurst: 2, filesPerSecond: 0.5 })})`;
    try {
      const results = [];
      for (let i = 0; i < 3; i++) results.push(await raw("GET", `${files}?path=.`, a.token));
      expect(results.map((r) => r.status)).toEqual([200, 200, 429]);
      expect(Number(results[2]!.headers.get("retry-after"))).toBeGreaterThanOrEqual(1);
      expect(results[2]!.json.error).toMatchObject({ code: "rate_limited", limit: "filesPerSecond" });
    } finally {
      await sql`select cogo.set_tenant_limits(${a.id}, ${sql.json({ filesBurst: null, filesPerSecond: null })})`;
    }
  });

  it("ops make no tasks, count as activity, are purged 5 min after they end; a stopped sandbox is 409", async () => {
    const before = await sql<{ n: number; at: Date }[]>`
      select (select count(*)::int from public.tasks where sandbox_id = ${sbx.sandboxId}) as n,
             (select last_activity_at from public.sandboxes where id = ${sbx.sandboxId}) as at`;
    await sbx.files.list();
    const after = await sql<{ n: number; at: Date }[]>`
      select (select count(*)::int from public.tasks where sandbox_id = ${sbx.sandboxId}) as n,
             (select last_activity_at from public.sandboxes where id = ${sbx.sandboxId}) as at`;
    expect(after[0]!.n).toBe(before[0]!.n);
    expect(after[0]!.at.getTime()).toBeGreaterThan(before[0]!.at.getTime());
    // The SQL cap is the API's.
    expect((await sql<{ n: string }[]>`select cogo.max_sandbox_op_bytes()::text as n`)[0]!.n).toBe(String(MAX_SANDBOX_FILE_BYTES));
    // Clients cannot reach the op tables.
    await expect(sqlAsUser(a.id, "select * from cogo.sandbox_ops")).rejects.toThrow(/permission denied/);

    await sql`update cogo.sandbox_ops set done_at = now() - interval '6 minutes' where sandbox_id = ${sbx.sandboxId} and status in ('done', 'failed')`;
    await sql`select cogo.purge_sandbox_ops(100000)`;
    const [left] = await sql<{ ops: number; chunks: number }[]>`
      select (select count(*)::int from cogo.sandbox_ops where sandbox_id = ${sbx.sandboxId}) as ops,
             (select count(*)::int from cogo.sandbox_op_chunks c join cogo.sandbox_ops o on o.id = c.op_id where o.sandbox_id = ${sbx.sandboxId}) as chunks`;
    expect(left).toEqual({ ops: 0, chunks: 0 });

    // A stopped sandbox has no files to reach: 409 naming why.
    expect((await sbx.kill()).status).toBe("stopped");
    const gone = await raw("GET", `${files}/dir/sub/a.txt`, a.token);
    expect(gone.status).toBe(409);
    expect(gone.json.error.message).toMatch(/stopped: deleted/);
  });
});
