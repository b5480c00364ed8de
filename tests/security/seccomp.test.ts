// The seccomp filter (worker/sandbox/syscall_filter.py): each denied system call fails with EPERM
// inside a task, the calls a toolchain needs still work, and the worker runs the next task as
// usual. The probe is C compiled in the sandbox; its arguments are valid, so without the filter
// most calls succeed or fail otherwise (noted where the kernel itself answers EPERM too).
import { describe, expect, it } from "vitest";
import { securitySuite } from "./helpers.ts";

const s = securitySuite("scmp");

const PROBE = String.raw`
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/io_uring.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>

static void report(const char *name, long rc) { printf("%s %s\n", name, rc == -1 ? strerrorname_np(errno) : "ok"); }
#define TRY(name, ...) report(name, syscall(__VA_ARGS__))

/* getpid through the 32-bit entry point, in a child: some kernels have no int 0x80 (SIGSEGV). */
static void int80_getpid(void) {
  pid_t child = fork();
  if (child == 0) {
    long ret;
    __asm__ volatile("int $0x80" : "=a"(ret) : "a"(20L) : "memory", "r8", "r9", "r10", "r11");
    printf("int80_getpid %s\n", ret == -EPERM ? "EPERM" : ret < 0 ? "error" : "ok");
    fflush(stdout);
    _exit(0);
  }
  int status;
  waitpid(child, &status, 0);
  if (WIFSIGNALED(status)) printf("int80_getpid %s\n", WTERMSIG(status) == SIGSEGV ? "no-int80" : "signal");
}

int main(void) {
  setvbuf(stdout, NULL, _IOLBF, 0);
  struct io_uring_params params;
  memset(&params, 0, sizeof params);
  TRY("io_uring_setup", SYS_io_uring_setup, 4, &params);
  TRY("io_uring_enter", SYS_io_uring_enter, -1, 0, 0, 0, 0, 0);
  TRY("io_uring_register", SYS_io_uring_register, -1, 0, 0, 0);
  TRY("userfaultfd", SYS_userfaultfd, 1 /* UFFD_USER_MODE_ONLY */);
  TRY("add_key", SYS_add_key, "user", "cogo", "x", 1, -2 /* KEY_SPEC_PROCESS_KEYRING */);
  TRY("keyctl", SYS_keyctl, 0 /* KEYCTL_GET_KEYRING_ID */, -3 /* KEY_SPEC_SESSION_KEYRING */, 1);
  TRY("request_key", SYS_request_key, "user", "cogo", 0, 0);
  TRY("memfd_secret", SYS_memfd_secret, 0);
  long pidfd = syscall(SYS_pidfd_open, getpid(), 0);
  TRY("pidfd_getfd", SYS_pidfd_getfd, pidfd, 0, 0);
  char src[8] = "secret", dst[8] = "";
  struct iovec local = {dst, sizeof dst}, remote = {src, sizeof src};
  TRY("process_vm_readv", SYS_process_vm_readv, getpid(), &local, 1, &remote, 1, 0);
  TRY("process_vm_writev", SYS_process_vm_writev, getpid(), &remote, 1, &local, 1, 0);
  TRY("process_madvise", SYS_process_madvise, pidfd, &local, 1, 20 /* MADV_COLD */, 0);
  TRY("kcmp", SYS_kcmp, getpid(), getpid(), 0 /* KCMP_FILE */, 0, 0);
  TRY("bpf", SYS_bpf, 0, 0, 0);
  TRY("perf_event_open", SYS_perf_event_open, 0, 0, -1, -1, 0);
  TRY("fanotify_init", SYS_fanotify_init, 0x200 /* FAN_REPORT_FID */, O_RDONLY);
  TRY("open_tree", SYS_open_tree, AT_FDCWD, "/", 0);
  TRY("statmount", 457, 0, 0, 0, 0);
  TRY("listmount", 458, 0, 0, 0, 0);
  TRY("setns", SYS_setns, -1, 0);
  TRY("get_mempolicy", SYS_get_mempolicy, 0, 0, 0, 0, 0);
  TRY("set_mempolicy", SYS_set_mempolicy, 0 /* MPOL_DEFAULT */, 0, 0);
  TRY("socket_vsock", SYS_socket, 40 /* AF_VSOCK: the hypervisor */, SOCK_STREAM, 0);
  TRY("clone3", SYS_clone3, 0, 0);
  TRY("personality_read_implies_exec", SYS_personality, 0x400000);
  TRY("personality_high_bits", SYS_personality, 0x100000000UL);
  /* The kernel refuses these too (no capability); the filter answers first. */
  TRY("mount", SYS_mount, "none", "/tmp", "tmpfs", 0, 0);
  TRY("unshare_mount_ns", SYS_unshare, CLONE_NEWNS);
  TRY("kexec_load", SYS_kexec_load, 0, 0, 0, 0);
  TRY("init_module", SYS_init_module, 0, 0, "");
  TRY("reboot", SYS_reboot, 0, 0, 0, 0);
  /* Allowed: the personality query and the values glibc and setarch use, other unshare flags. */
  TRY("personality_query", SYS_personality, 0xffffffffUL);
  TRY("personality_linux32", SYS_personality, 0x8);
  TRY("personality_linux", SYS_personality, 0x0);
  TRY("unshare_files", SYS_unshare, CLONE_FILES);
  /* Nested user namespaces: the kernel's answer (bwrap --disable-userns). */
  TRY("unshare_user_ns", SYS_unshare, CLONE_NEWUSER);
  /* Other ABIs: an x32 call (bit 30; ENOSYS without the filter) and the 32-bit entry point. */
  TRY("x32_getpid", 0x40000000 | SYS_getpid);
  int80_getpid();
  return 0;
}
`;

const DENIED = [
  "io_uring_setup",
  "io_uring_enter",
  "io_uring_register",
  "userfaultfd",
  "add_key",
  "keyctl",
  "request_key",
  "memfd_secret",
  "pidfd_getfd",
  "process_vm_readv",
  "process_vm_writev",
  "process_madvise",
  "kcmp",
  "bpf",
  "perf_event_open",
  "fanotify_init",
  "open_tree",
  "statmount",
  "listmount",
  "setns",
  "get_mempolicy",
  "set_mempolicy",
  "socket_vsock",
  "personality_read_implies_exec",
  "personality_high_bits",
  "mount",
  "unshare_mount_ns",
  "kexec_load",
  "init_module",
  "reboot",
  "x32_getpid",
];

describe("seccomp filter", () => {
  it("denies each listed call with EPERM (clone3 with ENOSYS), allows personality queries and ordinary calls", async () => {
    const r = await s.run({
      command: "gcc -O0 -o probe probe.c && ./probe",
      files: [{ path: "probe.c", content: PROBE }],
      timeoutMs: 30_000,
    });
    expect(r).toMatchObject({ status: "succeeded", exitCode: 0, stderr: "" });
    const results = Object.fromEntries(
      r.stdout
        .trim()
        .split("\n")
        .map((l) => l.split(" ") as [string, string]),
    );
    for (const name of DENIED) expect({ name, result: results[name] }).toEqual({ name, result: "EPERM" });
    expect(results).toMatchObject({
      clone3: "ENOSYS",
      personality_query: "ok",
      personality_linux32: "ok",
      personality_linux: "ok",
      unshare_files: "ok",
      unshare_user_ns: "ENOSPC",
    });
    // EPERM where the kernel has the 32-bit entry point; where it has none the call cannot be made.
    expect(["EPERM", "no-int80"]).toContain(results.int80_getpid);
    await s.expectHealthy();
  });

  it("every process of the task is filtered, bwrap's PID 1 included", async () => {
    const r = await s.run({ command: "grep -h '^Seccomp' /proc/1/status /proc/self/status; sh -c 'grep ^Seccomp: /proc/self/status'" });
    expect(r).toMatchObject({ status: "succeeded", stderr: "" });
    // Mode 2 (filter) with two programs: the denylist and the personality rule.
    expect(r.stdout).toBe("Seccomp:\t2\nSeccomp_filters:\t2\n".repeat(2) + "Seccomp:\t2\n");
    await s.expectHealthy();
  });

  it("the toolchain still works: threads, subprocesses, node, python, gcc, make, git, strace", async () => {
    const r = await s.run({
      command: [
        "set -e",
        'node -e \'const { Worker } = require("node:worker_threads"); new Worker("process.exit(0)", { eval: true }).on("exit", () => console.log("node ok"))\'',
        'python3 -c \'import subprocess, threading, multiprocessing as mp; t = threading.Thread(target=print, args=("thread ok",)); t.start(); t.join(); print(subprocess.run(["echo", "subprocess ok"], capture_output=True, text=True).stdout.strip()); p = mp.Pool(2); print("pool", sum(p.map(abs, [-1, -2]))); p.close(); p.join()\'',
        "printf 'int main(void){return 0;}\\n' > t.c && printf 'all: t\\n' > Makefile && make -s && ./t && echo 'make ok'",
        "git init -q r && cd r && git -c user.email=a@b -c user.name=a commit -q --allow-empty -m x && git log --oneline | wc -l && cd ..",
        "strace -f -e trace=none -o /dev/null true && echo 'strace ok'",
      ].join("\n"),
      timeoutMs: 60_000,
    });
    expect(r).toMatchObject({ status: "succeeded", exitCode: 0 });
    expect(r.stdout).toBe(["node ok", "thread ok", "subprocess ok", "pool 3", "make ok", "1", "strace ok", ""].join("\n"));
    await s.expectHealthy();
  });
});
