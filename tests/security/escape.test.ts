// Classic escapes: terminal injection, ptrace of the worker, mounts, setuid binaries, writes to the
// read-only system, chroot and new namespaces. Each fails with its precise error.
import { execFileSync } from "node:child_process";
import { randomUUID } from "node:crypto";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { py, securitySuite } from "./helpers.ts";

const s = securitySuite("esc");

describe("escape attempts", () => {
  it("TIOCSTI: no descriptor is a terminal and there is no controlling tty to inject into", async () => {
    const r = await s.run({
      command: "python3 tiocsti.py",
      files: [
        py(
          "tiocsti.py",
          `
import errno, fcntl, os, termios
for fd in (0, 1, 2):
    try:
        fcntl.ioctl(fd, termios.TIOCSTI, b"x")
        print(f"fd{fd} INJECTED")
    except OSError as e:
        print(f"fd{fd} {errno.errorcode[e.errno]}")
try:
    os.open("/dev/tty", os.O_RDWR)
    print("/dev/tty OPENED")
except OSError as e:
    print(f"/dev/tty {errno.errorcode[e.errno]}")
`,
        ),
      ],
    });
    expect(r).toMatchObject({ status: "succeeded", stderr: "" });
    expect(r.stdout).toBe("fd0 ENOTTY\nfd1 ENOTTY\nfd2 ENOTTY\n/dev/tty ENXIO\n");
    await s.expectHealthy();
  });

  it("ptrace: the worker's host pid does not exist in the sandbox (python ctypes, strace, gdb)", async () => {
    const worker = process.pid;
    const r = await s.run({
      command: [`python3 ptrace.py ${worker}`, `strace -p ${worker} 2>&1`, `gdb -p ${worker} -batch 2>&1 | grep -o 'ptrace: No such process.'`, `ls -d /proc/${worker} 2>&1`].join(
        "; ",
      ),
      files: [
        py(
          "ptrace.py",
          `
import ctypes, errno, sys
libc = ctypes.CDLL(None, use_errno=True)
PTRACE_ATTACH, PTRACE_SEIZE = 16, 0x4206
for name, req in (("attach", PTRACE_ATTACH), ("seize", PTRACE_SEIZE)):
    rc = libc.ptrace(req, int(sys.argv[1]), 0, 0)
    print(name, rc, errno.errorcode.get(ctypes.get_errno()))
`,
        ),
      ],
      timeoutMs: 15_000,
    });
    expect(r).toMatchObject({ status: "failed", exitCode: 2 }); // from the final ls
    expect(r.stdout).toBe(
      [
        "attach -1 ESRCH",
        "seize -1 ESRCH",
        `strace: attach: ptrace(PTRACE_SEIZE, ${worker}): No such process`,
        "ptrace: No such process.",
        `ls: cannot access '/proc/${worker}': No such file or directory`,
        "",
      ].join("\n"),
    );
    await s.expectHealthy();
  });

  it("mount, chroot, unshare and mknod are refused", async () => {
    const r = await s.run({
      command:
        "python3 sys.py; mount -t tmpfs t /tmp; echo mount=$?; mount --bind /workspace /tmp; echo bind=$?; chroot /tmp /bin/true; echo chroot=$?; unshare -r id; echo unshare-r=$?; unshare -m true; echo unshare-m=$?; unshare -n true; echo unshare-n=$?; mknod sda b 8 0; echo mknod=$?",
      files: [
        py(
          "sys.py",
          `
import ctypes, errno
libc = ctypes.CDLL(None, use_errno=True)
for name, call in (
    ("mount", lambda: libc.mount(b"none", b"/tmp", b"tmpfs", 0, None)),
    ("umount", lambda: libc.umount2(b"/usr", 2)),
    ("pivot_root", lambda: libc.syscall(155, b"/tmp", b"/tmp")),
    ("setuid0", lambda: libc.setuid(0)),
    ("unshare_user", lambda: libc.unshare(0x10000000)),
):
    print(name, call(), errno.errorcode.get(ctypes.get_errno()))
`,
        ),
      ],
    });
    expect(r).toMatchObject({ status: "succeeded" });
    expect(r.stdout).toBe(
      [
        "mount -1 EPERM",
        "umount -1 EPERM",
        "pivot_root -1 EPERM",
        "setuid0 -1 EINVAL", // uid 0 is not even mapped in the sandbox's user namespace
        "unshare_user -1 ENOSPC", // nested user namespaces disabled (max_user_namespaces = 0)
        "mount=32",
        "bind=32",
        "chroot=125",
        "unshare-r=1",
        "unshare-m=1",
        "unshare-n=1",
        "mknod=1",
        "",
      ].join("\n"),
    );
    expect(r.stderr).toContain("mount: /tmp: must be superuser to use mount.");
    expect(r.stderr).toContain("chroot: cannot change root directory to '/tmp': Operation not permitted");
    expect(r.stderr).toContain("unshare: unshare failed: No space left on device");
    expect(r.stderr).toContain("mknod: sda: Operation not permitted");
    await s.expectHealthy();
  });

  it("setuid binaries do not elevate (no_new_privs, nosuid): ld.so stays in non-secure mode", async () => {
    // Control on the host: an unprivileged user running the setuid `su` gets AT_SECURE, so ld.so
    // ignores LD_DEBUG (0 lines); a plain binary honours it (1 line).
    const hostCount = (cmd: string) =>
      Number(
        execFileSync("sh", ["-c", `setpriv --reuid=65534 --regid=65534 --clear-groups env LD_DEBUG=statistics ${cmd} 2>&1 | grep -c 'total startup time'; true`], {
          encoding: "utf8",
        }).trim(),
      );
    expect(hostCount("/usr/bin/su --help")).toBe(0);
    expect(hostCount("/usr/bin/id -u")).toBe(1);
    const r = await s.run({
      command: [
        "grep NoNewPrivs /proc/self/status",
        "stat -c '%A %U' /usr/bin/su /usr/bin/mount /usr/bin/passwd",
        "for b in su mount passwd; do printf '%s ' $b; LD_DEBUG=statistics /usr/bin/$b --help 2>&1 | grep -c 'total startup time'; done",
        "su -c 'id -u' root < /dev/null 2>/dev/null; echo su=$?",
        "passwd -d sandbox 2>&1; echo passwd=$?",
        "id",
      ].join("\n"),
    });
    expect(r).toMatchObject({ status: "succeeded", stderr: "" });
    expect(r.stdout).toBe(
      [
        "NoNewPrivs:\t1",
        "-rwsr-xr-x nobody", // really setuid root on the host (host root is unmapped: nobody) ...
        "-rwsr-xr-x nobody",
        "-rwsr-xr-x nobody",
        "su 1", // ... yet executed without privilege
        "mount 1",
        "passwd 1",
        "su=1",
        "passwd: Permission denied.",
        "passwd=1",
        "uid=1000(sandbox) gid=1000(sandbox) groups=1000(sandbox)",
        "",
      ].join("\n"),
    );
    await s.expectHealthy();
  });

  it("detached daemons (setsid, nohup, double fork) die with the task", async () => {
    const marker = `${300 + Math.floor(Math.random() * 1000)}.${Math.floor(Math.random() * 1e6)}`; // a unique sleep argument
    const r = await s.run({
      command: `setsid sleep ${marker} & nohup sleep ${marker} > /dev/null 2>&1 & (sh -c 'sleep ${marker} &' &) ; python3 -c "import os; os.fork() or (os.setsid(), os.fork() or os.execvp('sleep', ['sleep', '${marker}']))"; sleep 0.3; ps -e -o comm= | grep -c '^sleep$'`,
    });
    expect(r).toMatchObject({ status: "succeeded", stdout: "4\n", stderr: "" }); // four daemons were running
    // Nothing with that argument survives anywhere on the host.
    const cmdline = (pid: string) => {
      try {
        return readFileSync(`/proc/${pid}/cmdline`, "utf8");
      } catch {
        return ""; // exited while we looked
      }
    };
    const survivors = readdirSync("/proc").filter((pid) => /^\d+$/.test(pid) && cmdline(pid).includes(marker));
    expect(survivors).toEqual([]);
    await s.expectHealthy();
  });

  it("the system is read-only: /usr, /etc, / and /proc/sys writes fail and nothing lands on the host", async () => {
    const name = `cogo-sec-${randomUUID()}`;
    const r = await s.run({
      command: [
        `touch /usr/bin/${name}`,
        "echo 'root::0:0::/:/bin/sh' >> /etc/passwd",
        `touch /etc/${name}`,
        `mkdir /${name}`,
        `cp /bin/sh /usr/local/bin/${name}`,
        "echo 1 > /proc/sys/kernel/sysrq",
        "echo h > /proc/sysrq-trigger",
        "echo done",
      ].join("; "),
    });
    expect(r).toMatchObject({ status: "succeeded", stdout: "done\n" });
    const errors = r.stderr.trim().split("\n");
    expect(errors).toHaveLength(7);
    expect(errors.slice(0, 5)).toEqual([
      `touch: cannot touch '/usr/bin/${name}': Read-only file system`,
      "/bin/sh: 1: cannot create /etc/passwd: Permission denied", // owned by the unmapped host root, and read-only

      `touch: cannot touch '/etc/${name}': Read-only file system`,
      `mkdir: cannot create directory ‘/${name}’: Read-only file system`,
      `cp: cannot create regular file '/usr/local/bin/${name}': Read-only file system`,
    ]);
    expect(errors[5]).toMatch(/^\/bin\/sh: 1: cannot create \/proc\/sys\/kernel\/sysrq: /);
    expect(errors[6]).toMatch(/^\/bin\/sh: 1: cannot create \/proc\/sysrq-trigger: /);
    for (const p of [`/usr/bin/${name}`, `/etc/${name}`, `/${name}`, `/usr/local/bin/${name}`]) expect(existsSync(p), p).toBe(false);
    await s.expectHealthy();
  });
});
