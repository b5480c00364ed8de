"""The seccomp filter of every sandbox (see README.md, "System calls"). Loaded by launcher.py.

A denylist modelled on Docker's default profile: every system call is allowed except those below,
which fail with EPERM (Docker's default errno). Docker allowlists instead; we deny what its list
leaves out for a container without extra capabilities, plus what it still allows but a task has
no use for and the kernel has had exploitable bugs in. Most of these already fail for lack of a
capability (the sandbox has none); the filter keeps the kernel code behind them unreachable, so a
bug in its permission checks cannot be reached either.

Only the native ABI is allowed: a system call of any other ABI (on x86-64 the 32-bit one, reached
through `int 0x80`, and x32) fails with EPERM whatever its number, so the compat entry points and
a number table the rules were not written for stay closed.

Two programs go to bwrap (`--add-seccomp-fd`, both applied, the stricter answer wins): the
denylist built by libseccomp, and a short hand-written one for personality(2), whose rule (deny
unless the argument is one of five values) libseccomp cannot express as a deny rule.
"""
import errno
import os
import struct
import sys
from typing import Any, Dict, List, Optional, Tuple, Union

import seccomp

# Denied outright, by reason. Names libseccomp does not know on this architecture are skipped
# (e.g. vm86 on x86-64); a name it knows on none is a typo and fails the build.
DENIED = {
    # Host administration: modules, kexec, reboot, swap, accounting, quotas, kernel log, clock,
    # host name, I/O ports, hang-up of the terminal. Each needs a capability the sandbox lacks.
    "host administration": [
        "init_module", "finit_module", "delete_module", "create_module", "get_kernel_syms", "query_module",
        "kexec_load", "kexec_file_load", "reboot", "swapon", "swapoff", "acct", "quotactl", "quotactl_fd",
        "syslog", "settimeofday", "stime", "clock_settime", "clock_settime64", "sethostname", "setdomainname",
        "iopl", "ioperm", "vhangup",
    ],
    # Obsolete interfaces nothing current uses.
    "obsolete": ["nfsservctl", "_sysctl", "sysfs", "ustat", "uselib", "lookup_dcookie", "vm86", "vm86old"],
    # Mount family: the mount table is bwrap's to set up, before the filter is loaded.
    "mounts": [
        "mount", "umount", "umount2", "pivot_root", "fsopen", "fsconfig", "fsmount", "fspick",
        "move_mount", "open_tree", "mount_setattr",
    ],
    # Namespaces are bwrap's to make; joining one needs a descriptor of it and CAP_SYS_ADMIN.
    "namespaces": ["setns"],
    # Kernel keyrings: not namespaced by the user namespace alone, a long list of CVEs.
    "keyrings": ["add_key", "keyctl", "request_key"],
    # Large kernel attack surface a task does not need: io_uring (bypasses the per-call checks of
    # ordinary I/O, many privilege escalations), userfaultfd (stalls the kernel mid-copy, the
    # usual race-widening tool of exploits), eBPF, perf events, fanotify, memfd_secret.
    "attack surface": [
        "io_uring_setup", "io_uring_enter", "io_uring_register", "userfaultfd", "bpf", "perf_event_open",
        "fanotify_init", "memfd_secret",
    ],
    # File handles bypass path permissions ("shocker" container escape); needs CAP_DAC_READ_SEARCH.
    "file handles": ["open_by_handle_at"],
    # Reading or changing another process from outside. ptrace itself stays allowed (see below).
    "other processes": ["process_vm_readv", "process_vm_writev", "pidfd_getfd", "process_madvise", "kcmp"],
    # NUMA placement: CAP_SYS_NICE in Docker's profile; nothing here runs on more than one node.
    "memory policy": ["mbind", "set_mempolicy", "get_mempolicy", "set_mempolicy_home_node", "migrate_pages", "move_pages"],
}

# Newer than the libseccomp this was written against (2.5.4 has no name for them): x86-64
# numbers, denied on that architecture only (every other ABI is denied whole anyway).
DENIED_BY_NUMBER_X86_64 = {"statmount": 457, "listmount": 458, "open_tree_attr": 467}

# Namespace flags of clone(2) and unshare(2). CLONE_NEWUSER is left to the kernel where bwrap
# disables nested user namespaces (--disable-userns: max_user_namespaces = 0, ENOSPC, which
# covers clone3 too); without that it is denied here.
CLONE_NEWNS, CLONE_NEWCGROUP, CLONE_NEWUTS, CLONE_NEWIPC = 0x00020000, 0x02000000, 0x04000000, 0x08000000
CLONE_NEWUSER, CLONE_NEWPID, CLONE_NEWNET, CLONE_NEWTIME = 0x10000000, 0x20000000, 0x40000000, 0x00000080
AF_VSOCK = 40
# personality(2) values Docker allows: PER_LINUX, PER_LINUX32, UNAME26, the last two together, and the query.
PERSONALITY_ALLOWED = (0x0, 0x8, 0x20000, 0x20008, 0xFFFFFFFF)

# Classic BPF, for the personality program (linux/filter.h, linux/seccomp.h).
BPF_LD_W_ABS, BPF_JEQ_K, BPF_RET_K = 0x20, 0x15, 0x06
SECCOMP_RET_ALLOW, SECCOMP_RET_ERRNO = 0x7FFF0000, 0x00050000


def build(deny_userns: bool) -> Tuple[List[bytes], Dict[str, Any]]:
    """The two cBPF programs and a summary: {denied: [names], rules: [...], bytes}."""
    eperm = seccomp.ERRNO(errno.EPERM)
    f = seccomp.SyscallFilter(seccomp.ALLOW)
    # Every ABI but the native one: EPERM for any call (no second number table to get right).
    f.set_attr(seccomp.Attr.ACT_BADARCH, eperm)
    # libseccomp's tokens are the kernel's AUDIT_ARCH values (system_arch() unsigned, Arch signed).
    arch = seccomp.system_arch()
    native = seccomp.Arch.NATIVE
    denied: List[str] = []
    for names in DENIED.values():
        for name in names:
            if seccomp.resolve_syscall(native, name) < 0:
                if all(seccomp.resolve_syscall(a, name) < 0 for a in (seccomp.Arch.X86, seccomp.Arch.X86_64, seccomp.Arch.AARCH64)):
                    raise ValueError("unknown system call %r in the denylist" % name)
                continue
            f.add_rule(eperm, name)
            denied.append(name)
    if arch == seccomp.Arch.X86_64 & 0xFFFFFFFF:
        for name, nr in DENIED_BY_NUMBER_X86_64.items():
            if seccomp.resolve_syscall(native, name) < 0:
                f.add_rule_exactly(eperm, nr)
            else:
                f.add_rule(eperm, name)
            denied.append(name)
    ns_flags = [CLONE_NEWNS, CLONE_NEWCGROUP, CLONE_NEWUTS, CLONE_NEWIPC, CLONE_NEWPID, CLONE_NEWNET]
    if deny_userns:
        ns_flags.append(CLONE_NEWUSER)
    for flag in ns_flags + [CLONE_NEWTIME]:
        f.add_rule(eperm, "unshare", seccomp.Arg(0, seccomp.MASKED_EQ, flag, flag))
    # clone's low byte is the exit signal, not CLONE_NEWTIME (only unshare and clone3 take that).
    for flag in ns_flags:
        f.add_rule(eperm, "clone", seccomp.Arg(0, seccomp.MASKED_EQ, flag, flag))
    # clone3 passes its flags in memory, where a filter cannot look: ENOSYS makes glibc (and
    # everything else) fall back to clone(2), whose flags are checked above. Docker does the same.
    f.add_rule(seccomp.ERRNO(errno.ENOSYS), "clone3")
    # AF_VSOCK reaches the hypervisor; it is not scoped by the network namespace.
    f.add_rule(eperm, "socket", seccomp.Arg(0, seccomp.EQ, AF_VSOCK))
    denylist = _export(f)
    rules = [
        "unshare/clone: namespace flags (%s)" % ("all" if deny_userns else "all but CLONE_NEWUSER, which --disable-userns refuses"),
        "clone3: ENOSYS (fallback to clone)",
        "socket(AF_VSOCK)",
        "personality: all but 0x0, 0x8, 0x20000, 0x20008, 0xffffffff",
        "non-native ABIs (32-bit x86, x32): every call",
    ]
    personality = personality_program(arch, seccomp.resolve_syscall(native, "personality"))
    return [denylist, personality], {"denied": denied, "rules": rules, "bytes": len(denylist) + len(personality)}


def _export(f: Any) -> bytes:
    """libseccomp writes the program to a file descriptor: an anonymous memory file."""
    fd = os.memfd_create("cogo-seccomp", os.MFD_CLOEXEC)
    try:
        with os.fdopen(os.dup(fd), "wb+") as out:
            f.export_bpf(out)
        return os.pread(fd, os.fstat(fd).st_size, 0)
    finally:
        os.close(fd)


def personality_program(arch: int, nr: int) -> bytes:
    """EPERM for personality(x) unless x is one of PERSONALITY_ALLOWED (all 64 bits compared)."""
    lo, hi = (16, 20) if sys.byteorder == "little" else (20, 16)  # offsets of args[0]'s halves in seccomp_data
    # (code, jump-if-true label, jump-if-false label, k); labels name instructions below.
    code: List[Union[str, Tuple[str, Optional[str], Optional[str], int]]] = [
        ("ld", None, None, 4),  # arch
        ("jeq", None, "allow", arch),
        ("ld", None, None, 0),  # syscall number
        ("jeq", None, "allow", nr),
        ("ld", None, None, hi),
        ("jeq", None, "deny", 0),
        ("ld", None, None, lo),
        *[("jeq", "allow", None, v) for v in PERSONALITY_ALLOWED[:-1]],
        ("jeq", None, "deny", PERSONALITY_ALLOWED[-1]),
        "allow",
        ("ret", None, None, SECCOMP_RET_ALLOW),
        "deny",
        ("ret", None, None, SECCOMP_RET_ERRNO | errno.EPERM),
    ]
    labels: Dict[str, int] = {}
    insns: List[Tuple[str, Optional[str], Optional[str], int]] = []
    for item in code:
        if isinstance(item, str):
            labels[item] = len(insns)
        else:
            insns.append(item)
    out = b""
    for pc, (op, jt, jf, k) in enumerate(insns):
        opcode = {"ld": BPF_LD_W_ABS, "jeq": BPF_JEQ_K, "ret": BPF_RET_K}[op]
        out += struct.pack("=HBBI", opcode, _offset(labels, jt, pc), _offset(labels, jf, pc), k & 0xFFFFFFFF)
    return out


def _offset(labels: Dict[str, int], label: Optional[str], pc: int) -> int:
    """A jump from instruction pc to label (none: the next instruction)."""
    return 0 if label is None else labels[label] - pc - 1
