// Shell metacharacters in every field an agent controls. Each payload would create a file on the
// host if it ever reached a host shell (the worker runs as root), so the host files must never
// appear; bad names are refused with a 400 naming the field, good ones arrive byte for byte.
import { chmodSync, existsSync, mkdirSync, rmSync, writeFileSync } from "node:fs";
import { randomUUID } from "node:crypto";
import { afterAll, describe, expect, it } from "vitest";
import { api, sql } from "../helpers/env.ts";
import { pwnedPath, securitySuite } from "./helpers.ts";

const s = securitySuite("inj");

/** Host files any payload below would create; checked after every test. */
const pwned = [pwnedPath("/tmp"), pwnedPath("/var/tmp"), pwnedPath("/tmp")] as const;
const [P1, P2, P3] = pwned;
const payloads = (p: string) => [`$(touch ${p})`, `\`touch ${p}\``, `; touch ${p}`, `'; touch ${p}; '`, `"; touch ${p}; "`, `| touch ${p}`, `&& touch ${p}`, `\ntouch ${p}\n`];

// Host-side traps: a script BASH_ENV would source and fake tools a PATH lookup would find, should
// the task's env ever reach a host shell or command (the launcher is python3 execing bwrap and mounting workspaces).
const trapDir = `/var/tmp/cogo-sec-trap-${randomUUID()}`;
mkdirSync(trapDir, { recursive: true });
writeFileSync(`${trapDir}/bash_env`, `touch ${P3}\n`);
for (const tool of ["bash", "sh", "python3", "bwrap", "mount", "umount", "env", "ls", "printenv", "cat"]) {
  writeFileSync(`${trapDir}/${tool}`, `#!/bin/sh\ntouch ${P3}\nexec /usr/bin/${tool} "$@"\n`);
  chmodSync(`${trapDir}/${tool}`, 0o755);
}
afterAll(() => {
  rmSync(trapDir, { recursive: true, force: true });
  for (const p of pwned) rmSync(p, { force: true });
});
const expectNothingOnHost = () => {
  for (const p of pwned) expect(existsSync(p), p).toBe(false);
};

describe("metacharacter fuzz", () => {
  it.each([
    [{ env: { [`A;touch ${P1}`]: "x" } }, `env.A;touch ${P1}: env names are letters, digits and _`],
    [{ env: { [`$(touch ${P1})`]: "x" } }, `env.$(touch ${P1}): env names are letters`],
    [{ env: { "A B": "x" } }, "env.A B: env names are letters"],
    [{ env: { "A=B": "x" } }, "env.A=B: env names are letters"],
    [{ env: { "BASH_FUNC_x%%": "() { touch /tmp/x; }" } }, "env.BASH_FUNC_x%%: env names are letters"],
    [{ env: { "": "x" } }, "env.: env names are letters"],
    [{ env: { "-rf": "x" } }, "env.-rf: env names are letters"],
    [{ env: { OK: "a\u0000b" } }, "env.OK: env value contains a NUL byte"],
    [{ files: [{ path: `../$(touch ${P1})`, content: "x" }] }, "files.0.path: workspace path"],
    [
      {
        files: [
          { path: "ok", content: "x" },
          { path: `/tmp/x; touch ${P1}`, content: "x" },
        ],
      },
      "files.1.path: workspace path",
    ],
    [{ files: [{ path: "a\ntouch x", content: "x" }] }, 'files.0.path: workspace path "a\\ntouch x": contains a control character'],
    [{ files: [{ path: "a\\..\\..\\x", content: "x" }] }, 'files.0.path: workspace path "a\\\\..\\\\..\\\\x": contains a backslash'],
    [{ requirements: { kind: `basic;touch ${P1}` } }, "requirements.kind: kind must be lower-case letters"],
    [{ requirements: { kind: "basic", labels: ["gpu", `$(touch ${P1})`] } }, "requirements.labels.1: labels are letters, digits and . _ : -"],
    [{ requirements: { labels: ["`id`"] } }, "requirements.labels.0: labels are letters"],
    [{ argv: ["echo", "a\u0000b"] }, "argv.1: argument contains a NUL byte"],
    [{ network: "yes" }, "network: "],
    [{ artifacts: ["../../etc/shadow"] }, "artifacts.0: workspace path"],
    [{ artifacts: ["/etc/shadow"] }, 'artifacts.0: workspace path "/etc/shadow": is absolute'],
    [{ artifacts: ["dist/a**"] }, "artifacts.0: workspace path \"dist/a**\": '**' must be a whole path component"],
  ])("400 for %j, naming the field, and no task", async (bad, message) => {
    const body = { command: "echo x", ...bad };
    if ("argv" in bad) delete (body as { command?: string }).command;
    const r = await api("POST", "/execute", { token: s.user.token, body });
    expect(r.status).toBe(400);
    expect(r.body.error.code).toBe("invalid_request");
    expect(r.body.error.message).toContain(message);
    const [row] = await sql<{ n: number }[]>`select count(*)::int as n from public.tasks where owner = ${s.user.id}`;
    expect(row!.n).toBe(0);
    expectNothingOnHost();
  });

  it("a command string runs only inside the sandbox: its host-path writes land in the private /tmp", async () => {
    const r = await s.run({ command: `touch ${P1} && ls ${P1} && touch ${P2}; echo rc=$?` });
    expect(r).toMatchObject({ status: "succeeded" });
    // It ran (the file exists in the sandbox's /tmp); /var/tmp does not even exist in there.
    expect(r.stdout).toBe(`${P1}\nrc=1\n`);
    expect(r.stderr).toBe(`touch: cannot touch '${P2}': No such file or directory\n`);
    expectNothingOnHost();
    await s.expectHealthy();
  });

  it("argv elements are passed literally, never through a shell", async () => {
    const args = [...payloads(P1), ...payloads(P2), "*", "~", "$HOME", "-rf", "--", "ü ☃ \u202e"];
    const r = await s.run({ argv: ["printf", "%s\\0", ...args] });
    expect(r).toMatchObject({ status: "succeeded", stderr: "" });
    // NUL separators come back as U+FFFD (Postgres text holds no NUL).
    expect(r.stdout.split("\uFFFD").slice(0, -1)).toEqual(args);
    expectNothingOnHost();
    await s.expectHealthy();
  });

  it("env values with payloads arrive verbatim; BASH_ENV / PATH / LD_PRELOAD affect nothing on the host", async () => {
    const env: Record<string, string> = {};
    payloads(P1).forEach((p, i) => {
      env[`P${i}`] = p;
    });
    env.BASH_ENV = `${trapDir}/bash_env`;
    env.ENV = `${trapDir}/bash_env`;
    env.PATH = `${trapDir}:/usr/bin:/bin`;
    env.LD_PRELOAD = `${trapDir}/evil.so`;
    env.SHELLOPTS = "xtrace";
    env.PS4 = `$(touch ${P3})`;
    env.IFS = "/";
    const names = Object.keys(env).filter((n) => /^P\d$/.test(n));
    const r = await s.run({
      argv: ["/usr/bin/python3", "-c", "import os, sys; sys.stdout.write('\\0'.join(os.environ[n] for n in sys.argv[1:]) + '|' + os.environ['PATH'])", ...names],
      env,
    });
    expect(r).toMatchObject({ status: "succeeded", exitCode: 0 });
    expect(r.stdout).toBe(names.map((n) => env[n]).join("\uFFFD") + `|${trapDir}:/usr/bin:/bin`);
    // The preload is missing inside (only ld.so's warning), the traps are invisible inside.
    expect(r.stderr).toContain(`object '${trapDir}/evil.so' from LD_PRELOAD cannot be preloaded`);
    expectNothingOnHost();
    await s.expectHealthy();
  });

  it("file paths full of metacharacters are written as plain names", async () => {
    const paths = [`x$(touch ${P1.slice(1).replaceAll("/", "_")})y`, "`id`", ";rm -rf ~;", "a b'c\"d", "-rf", "--help", "*", "&&|<>", "ü☃"];
    const files = [...paths.map((path, i) => ({ path: `d/${path}`, content: `content ${i}` })), { path: "expected.json", content: JSON.stringify(paths) }];
    const check =
      "import json, os; want = json.load(open('expected.json')); print(sorted(os.listdir('d')) == sorted(want) and all(open('d/' + p).read() == f'content {i}' for i, p in enumerate(want)))";
    const r = await s.run({ argv: ["python3", "-c", check], files });
    expect(r).toMatchObject({ status: "succeeded", stdout: "True\n", stderr: "" });
    expectNothingOnHost();
    await s.expectHealthy();
  });

  it("hostile output bytes (NUL, invalid UTF-8, escapes) are stored safely and do not break the task", async () => {
    const r = await s.run({ command: "printf 'a\\000b\\377c\\033[2J\\033]0;title\\007d\\r\\n'; printf 'e\\000\\n' >&2" });
    expect(r).toMatchObject({ status: "succeeded", stdout: "a\uFFFDb\uFFFDc\u001b[2J\u001b]0;title\u0007d\r\n", stderr: "e\uFFFD\n" });
    await s.expectHealthy();
  });

  it("an idempotency key full of SQL is just a key", async () => {
    const key = `'); drop table public.tasks; -- ${randomUUID()}`;
    const a = await api("POST", "/execute", { token: s.user.token, body: { command: "echo idem", idempotencyKey: key, requirements: { kind: s.kind } } });
    const b = await api("POST", "/execute", { token: s.user.token, body: { command: "echo idem", idempotencyKey: key, requirements: { kind: s.kind } } });
    expect(a.status).toBe(202);
    expect(b.body.taskId).toBe(a.body.taskId);
    const [row] = await sql<{ n: number }[]>`select count(*)::int as n from public.tasks where id = ${a.body.taskId}`;
    expect(row!.n).toBe(1);
    await s.expectHealthy();
  });
});
