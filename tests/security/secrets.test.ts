// Secrets: the worker's process holds keys and the database URL; a task dumps everything it can
// reach (its env, every /proc/<pid>/environ and cmdline it sees, mountinfo, inherited descriptors,
// the worker's and Postgres' real host pids) and none of it may contain a secret.
import { execFileSync } from "node:child_process";
import { randomUUID } from "node:crypto";
import { existsSync } from "node:fs";
import { afterAll, describe, expect, it } from "vitest";
import { stack } from "../helpers/env.ts";
import { py, securitySuite } from "./helpers.ts";

const fakeServiceKey = `fake-service-role-${randomUUID()}`;
const testSecret = `cogo-test-secret-${randomUUID()}`;
const planted = { SUPABASE_SERVICE_ROLE_KEY: fakeServiceKey, COGO_TEST_SECRET: testSecret, SUPABASE_DB_URL: stack.dbUrl, JWT_SECRET: stack.jwtSecret };
const saved = Object.fromEntries(Object.keys(planted).map((k) => [k, process.env[k]]));
// In the worker's process environment before the worker starts (it runs in this process).
const s = securitySuite("secret", { beforeStart: () => Object.assign(process.env, planted) });
afterAll(() => {
  for (const [k, v] of Object.entries(saved)) {
    if (v === undefined) delete process.env[k];
    else process.env[k] = v;
  }
});

const dbPassword = decodeURIComponent(new URL(stack.dbUrl).password);
/** Everything that must never show up in a task's output. */
const SECRETS = {
  fakeServiceKey,
  testSecret,
  realServiceRoleKey: stack.serviceRoleKey,
  jwtSecret: stack.jwtSecret,
  dbUrl: stack.dbUrl,
  dbHostPort: new URL(stack.dbUrl).host,
  ...(dbPassword.length >= 6 ? { dbPassword } : {}),
  dataDir: stack.dataDir,
  repo: "/work/main",
};

const hostPids = () => {
  const pg = execFileSync("pgrep", ["-x", "postgres"], { encoding: "utf8" }).trim().split("\n").filter(Boolean).map(Number);
  return { worker: process.pid, postgres: pg[0] ?? 0 };
};

const DUMP = py(
  "dump.py",
  `
import os, sys
out = []
def read(path):
    try:
        with open(path, "rb") as f:
            return f.read().replace(b"\\0", b"\\n").decode("utf-8", "replace")
    except OSError as e:
        return f"<{type(e).__name__}>"
out.append("== env\\n" + "\\n".join(f"{k}={v}" for k, v in sorted(os.environ.items())))
pids = sorted(int(p) for p in os.listdir("/proc") if p.isdigit())
out.append("== pids " + " ".join(map(str, pids)))
for pid in list(range(1, 65)) + [int(a) for a in sys.argv[1:]]:
    if os.path.exists(f"/proc/{pid}"):
        out.append(f"== /proc/{pid}/environ\\n" + read(f"/proc/{pid}/environ"))
        out.append(f"== /proc/{pid}/cmdline\\n" + read(f"/proc/{pid}/cmdline"))
for name in ("mountinfo", "mounts", "cgroup", "status"):
    out.append(f"== /proc/self/{name}\\n" + read(f"/proc/self/{name}"))
out.append("== fds " + " ".join(sorted(os.listdir("/proc/self/fd"))))
for a in sys.argv[1:]:
    out.append(f"== host pid {a} " + ("VISIBLE" if os.path.exists(f"/proc/{a}") else "absent"))
out.append("== root " + " ".join(sorted(os.listdir("/"))))
out.append("== etc " + " ".join(sorted(os.listdir("/etc"))))
print("\\n".join(out))
`,
);

describe("secrets", () => {
  it("the worker's environment, keys and DB URL appear nowhere a task can look", async () => {
    // Control: the secrets are really in the worker's process environment.
    expect(process.env.COGO_TEST_SECRET).toBe(testSecret);
    expect(process.env.SUPABASE_SERVICE_ROLE_KEY).toBe(fakeServiceKey);
    const { worker, postgres } = hostPids();
    expect(postgres).toBeGreaterThan(0);
    const r = await s.run({ command: `python3 dump.py ${worker} ${postgres}`, files: [DUMP] });
    expect(r).toMatchObject({ status: "succeeded", stderr: "" });
    const out = r.stdout;
    // The dump is real: it read env, /proc of its own namespace and mountinfo.
    expect(out).toContain("== env\nHOME=/workspace\nHOSTNAME=sandbox\nLANG=C.UTF-8\nLOGNAME=sandbox\nPATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\n");
    const names = /== env\n([\s\S]*?)\n== pids/
      .exec(out)![1]!
      .split("\n")
      .map((l) => l.split("=")[0]);
    expect(names).toEqual(["HOME", "HOSTNAME", "LANG", "LOGNAME", "PATH", "PWD", "SHELL", "TERM", "TMPDIR", "USER"]);
    expect(out).toContain(" /workspace rw,nosuid,nodev");
    // /proc/1 is bwrap's init; its environ is what the launcher gave bwrap: PATH alone.
    expect(out).toContain("== /proc/1/environ\nPATH=/usr/sbin:/usr/bin:/sbin:/bin\n\n== /proc/1/cmdline");
    // Only the sandbox's own few processes; the worker and Postgres do not exist in here.
    const pids = /== pids (.*)/.exec(out)![1]!.split(" ").map(Number);
    expect(pids.length).toBeLessThanOrEqual(4);
    expect(Math.max(...pids)).toBeLessThan(64);
    expect(out).toContain(`== host pid ${worker} absent\n== host pid ${postgres} absent`);
    // Descriptors: stdin, stdout, stderr, and the one listdir itself opened.
    expect(out).toContain("== fds 0 1 2 3\n");
    // The merged-/usr links the host has (another package may add lib32 etc.), and nothing else.
    const links = ["bin", "sbin", "lib", "lib32", "lib64", "libx32"].filter((d) => existsSync(`/${d}`));
    expect(/== root (.*)/.exec(out)![1]).toBe([...links, "dev", "etc", "proc", "tmp", "usr", "workspace"].sort().join(" "));
    for (const [what, secret] of Object.entries(SECRETS)) expect(out.includes(secret), `${what} leaked`).toBe(false);
    await s.expectHealthy();
  });

  it("printenv, /proc/*/environ via the shell, and /proc/<worker pid> by number all come up empty", async () => {
    const { worker } = hostPids();
    const r = await s.run({
      command: `printenv; cat /proc/[0-9]*/environ | tr '\\0' '\\n'; cat /proc/${worker}/environ 2>&1; ls /proc/${worker} 2>&1; echo "files mentioning the secret's name: $(grep -rsl COGO_TEST_SECRET /proc/[0-9]*/environ /etc /workspace /tmp | wc -l)"`,
    });
    expect(r).toMatchObject({ status: "succeeded" });
    expect(r.stdout).toContain("HOSTNAME=sandbox\n");
    expect(r.stdout).toContain(
      `cat: /proc/${worker}/environ: No such file or directory\nls: cannot access '/proc/${worker}': No such file or directory\nfiles mentioning the secret's name: 0\n`,
    );
    for (const [what, secret] of Object.entries(SECRETS)) expect((r.stdout + r.stderr).includes(secret), `${what} leaked`).toBe(false);
    expect(r.stdout + r.stderr).not.toMatch(/SUPABASE|COGO_|JWT_SECRET|postgres(ql)?:\/\//);
    await s.expectHealthy();
  });
});
