// Two tasks of (possibly) different tenants on one worker at the same time: B attacks A with
// everything it knows, including A's real host pid and host workspace path, and gets nowhere.
import { statSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { newUser, waitFor } from "../helpers/env.ts";
import { py, SECURITY_UID_BASE, sandboxProcesses, securitySuite, workspacesUnder } from "./helpers.ts";

const s = securitySuite("xtask", { concurrency: 2 });

/** A keeps a TCP listener and an abstract unix socket open in its own namespace. */
const LISTEN = py(
  "listen.py",
  `
import socket, time
t = socket.socket(); t.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); t.bind(("127.0.0.1", 7777)); t.listen()
u = socket.socket(socket.AF_UNIX); u.bind("\\0cogo-task-a"); u.listen()
print("listening", flush=True)
time.sleep(60)
`,
);

const ATTACK = py(
  "attack.py",
  `
import errno, os, signal, socket, sys
a_pid, a_ws = int(sys.argv[1]), sys.argv[2]
def attempt(what, fn):
    try:
        fn(); print(what, "SUCCEEDED")
    except OSError as e:
        print(what, errno.errorcode.get(e.errno, e))
attempt("kill", lambda: os.kill(a_pid, signal.SIGKILL))
attempt("signal0", lambda: os.kill(a_pid, 0))
attempt("environ", lambda: open(f"/proc/{a_pid}/environ").read())
attempt("workspace", lambda: os.listdir(a_ws))
for p in ("/workspace/a-secret", "/tmp/a-mark", "/dev/shm/a-mark"):
    attempt(p, lambda: open(p).read())
attempt("tcp", lambda: socket.create_connection(("127.0.0.1", 7777), timeout=2))
attempt("abstract", lambda: socket.socket(socket.AF_UNIX).connect("\\0cogo-task-a"))
print("pids", " ".join(sorted((p for p in os.listdir("/proc") if p.isdigit()), key=int)))
`,
);

describe("cross-task isolation", () => {
  it("B cannot see, read, signal or connect to A, even knowing A's host pid and workspace", async () => {
    let aOut = "";
    const a = await s.user.sandbox.execute(
      {
        command: [
          "echo a-secret > /workspace/a-secret; echo a-mark > /tmp/a-mark; echo a-mark > /dev/shm/a-mark; ipcmk -M 4096 > /dev/null",
          "python3 listen.py > /tmp/l & LPID=$!; until grep -q listening /tmp/l 2>/dev/null; do sleep 0.05; done",
          "sleep 45 & echo ready; read go",
          "cat /workspace/a-secret /tmp/a-mark /dev/shm/a-mark; ipcs -m | grep -c sandbox; kill -0 $! && echo sleeper-alive; kill $! $LPID",
        ].join("\n"),
        files: [LISTEN],
        stdin: "pipe",
        requirements: { kind: s.kind },
        timeoutMs: 30_000,
      },
      { onStdout: (d) => (aOut += d) },
    );
    await waitFor(() => aOut.includes("ready\n"), "task A to be ready", 15_000);

    // What B is told about A: its host pid (of `sleep 45`) and its host workspace directory.
    const aSleep = sandboxProcesses().find((p) => p.cmd === "sleep 45");
    expect(aSleep).toBeDefined();
    const [aWs] = workspacesUnder(s.root).map((n) => `${s.root}/${n}`);
    expect(aWs).toBeDefined();
    const aUid = statSync(`/proc/${aSleep!.pid}`).uid;

    const tenantB = await newUser(); // another tenant on the same worker
    const uids = new Set<number>();
    const seen = new Map<number, Set<string>>(); // uid → what ran as it, to say which when this fails
    let sampling = true;
    const sampler = (async () => {
      while (sampling) {
        for (const p of sandboxProcesses()) {
          const uid = statSync(`/proc/${p.pid}`, { throwIfNoEntry: false })?.uid;
          if (uid === undefined) continue;
          // Only this suite's slot uids: a sandbox an earlier test file's worker is still tearing
          // down carries this process's cgroup tag too (seen once in a full run: a third uid).
          if (uid >= SECURITY_UID_BASE && uid < SECURITY_UID_BASE + 10_000) uids.add(uid);
          if (!seen.has(uid)) seen.set(uid, new Set());
          seen.get(uid)!.add(p.cmd.slice(0, 60));
        }
        await new Promise((r) => setTimeout(r, 20));
      }
    })();
    const b = await (
      await tenantB.sandbox.execute({
        command: `python3 attack.py ${aSleep!.pid} ${aWs}; ls -A /tmp /dev/shm /workspace | tr '\\n' ' '; echo; ipcs -m | grep -c sandbox; ps -e -o comm= | sort | tr '\\n' ' '; echo; sleep 30 & sleep 0.3; kill -9 -1; echo kill-all=$?; wait; echo survived-own-kill-all`,
        files: [ATTACK],
        requirements: { kind: s.kind },
        timeoutMs: 20_000,
      })
    ).result();
    sampling = false;
    await sampler;
    expect(b).toMatchObject({ status: "succeeded", stderr: "" });
    expect(b.stdout.split("\n")).toEqual([
      "kill ESRCH",
      "signal0 ESRCH",
      "environ ENOENT",
      "workspace ENOENT",
      "/workspace/a-secret ENOENT",
      "/tmp/a-mark ENOENT",
      "/dev/shm/a-mark ENOENT",
      "tcp ECONNREFUSED",
      "abstract ECONNREFUSED",
      expect.stringMatching(/^pids 1 2 \d+$/),
      "/dev/shm:  /tmp:  /workspace: attack.py ", // all empty but its own script
      "0",
      "bwrap ps sh sort tr ",
      "kill-all=0",
      "survived-own-kill-all",
      "",
    ]);
    // A and B ran as two different host uids (A's plus exactly one other).
    expect(uids.has(aUid)).toBe(true);
    expect(uids.size, JSON.stringify([...seen].map(([uid, cmds]) => [uid, [...cmds]]))).toBe(2);

    // A is untouched: files, shared memory, and its background process all still there.
    await a.write("go\n");
    const ar = await a.result();
    expect(ar).toMatchObject({ status: "succeeded", exitCode: 0, stderr: "" });
    expect(ar.stdout).toBe("ready\na-secret\na-mark\na-mark\n1\nsleeper-alive\n");
    await s.expectHealthy();
  });
});
