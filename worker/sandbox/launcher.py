"""Fork server between the worker and bwrap (protocol: launcher-protocol.ts / launcher-protocol.json).

A worker that has grown to hundreds of MiB pays for every fork() it does (page tables are
copied), so it starts this small process once and asks it to start each sandbox. Per request it
creates the pipes, forks, and in the child: new session, joins the task's cgroups, stdio on the
pipes with the status pipe as fd 3 and nothing else open, rlimits, drops to the slot uid/gid,
resets signals, then execs bwrap with only the environment it was given. The worker opens the
read ends through /proc/<this pid>/fd/<n> (the same pipe), then tells us to close ours.

Joining cgroup v1 hierarchies is slow (each migration waits for an RCU grace period, ms on a
busy machine), so when a task wants cgroups the child is a "spare": forked ahead of time into
fresh task cgroups, where it waits on a socketpair for its request and pipes (SCM_RIGHTS). The
launcher keeps a few spares per cgroup layout and makes the next one after each start.

It also mounts and unmounts the workspace tmpfs mounts (mount(2), umount2(2)): as a child process
of the worker each would be another fork of the worker.

It builds the sandboxes' seccomp filter once at start (syscall_filter.py, libseccomp through
Debian's python3-seccomp) and refuses to run without it. Each child gets the filter programs, and
any data the request carries (bwrap's real arguments, generated /etc files), as memory files at
the descriptors the request names; bwrap reads and closes them before the task starts.

Requests arrive as JSON lines on stdin, replies leave as JSON lines on stdout; the first line out
announces the protocol version. Every request is checked against its schema in
launcher-protocol.json and gets exactly one reply; a request that is malformed, too large, or
fails (even by a bug here) is answered with an error and nothing else changes, so one bad request
never ends the launcher and the sandboxes it runs. EOF on stdin (the worker died or stopped) kills
every sandbox still running and exits; so does the worker's death (PR_SET_PDEATHSIG), and bwrap's
--die-with-parent takes the sandboxes down with us.

Persistent sandboxes (protocol 3): a `start` with `persistent` runs bwrap in an `init/` leaf under
a sandbox cgroup that holds the limits of the whole sandbox. `pin` then checks that a pid is that
sandbox's PID 1 (a pidfd, and each namespace's inode against what bwrap reported) and keeps its
namespace descriptors. `enter` runs a later command inside it from outside: a helper forked here
joins the command's own cgroup leaf as root, enters the pinned namespaces (user last), drops to
the sandbox uid with the rlimits, no capabilities, no_new_privs and the same seccomp programs,
forks (a PID namespace applies to children only) and execs. See enter_child() for each step.
Protocol 5: each sandbox's spare helper does all that but the exec ahead of time, its command
process waiting inside (enter_spare_main, next_command_main).

Terminals (protocol 4): an `enter` with `pty` gives the command a pseudo-terminal of the sandbox's
own devpts (bwrap's --dev mounts a fresh instance), opened by the helper as the sandbox user after
it entered; the helper relays between it and the pipes, and `resize` reaches it over a pipe of its
own. See relay_pty() for why the terminal never leaves the sandbox's side.
"""
import base64
import ctypes
import errno
import fcntl
import json
import os
import platform
import re
import resource
import select
import selectors
import signal
import socket
import stat
import struct
import sys
import termios
import time
import traceback
import uuid
from typing import Any, Callable, Dict, List, NamedTuple, NoReturn, Optional, Tuple, TypedDict, Union, cast

# -I -S keep the user's and the script's directories off sys.path; Debian's python3-seccomp lives
# in the system's dist-packages, syscall_filter.py next to this file (both root-owned).
sys.dont_write_bytecode = True  # no __pycache__ in the worker's tree
sys.path.append("/usr/lib/python3/dist-packages")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
try:
    import syscall_filter
except ImportError as e:
    sys.stderr.write("cogo launcher: the sandbox seccomp filter needs libseccomp's python module (%s): apt-get install python3-seccomp\n" % e)
    sys.exit(3)

PROTOCOL_FILE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "launcher-protocol.json")
PR_SET_PDEATHSIG, PR_SET_NAME = 1, 15
MS_NOSUID, MS_NODEV = 2, 4
MNT_DETACH = 2
libc = ctypes.CDLL(None, use_errno=True)
libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p]
libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]
libc.setns.argtypes = [ctypes.c_int, ctypes.c_int]
PR_SET_DUMPABLE, PR_CAPBSET_DROP, PR_SET_NO_NEW_PRIVS, PR_SET_SECCOMP, PR_CAP_AMBIENT = 4, 24, 38, 22, 47
PR_CAP_AMBIENT_CLEAR_ALL, SECCOMP_MODE_FILTER = 4, 2
LINUX_CAPABILITY_VERSION_3 = 0x20080522
# The namespaces a command enters, in the order it enters them. The user namespace comes last:
# the mount namespace belongs to bwrap's outer user namespace, so once in the inner one the helper
# would hold no capability over it and setns(CLONE_NEWNS) fails with EPERM (verified on 6.18).
NAMESPACES: List[Tuple[str, int]] = [
    ("mnt", 0x00020000), ("pid", 0x20000000), ("net", 0x40000000), ("ipc", 0x08000000),
    ("uts", 0x04000000), ("cgroup", 0x02000000), ("user", 0x10000000),
]
# Fds a child juggles through before landing on 0..3 (never below, so dup2 cannot collide).
HIGH_FD = 64
# Spares kept ready per cgroup layout.
SPARES = 2
# How long an enter waits for a live sandbox's spare to report its cgroup joined before forking a helper itself.
SPARE_JOIN_WAIT_S = 0.2
# How long ending a prepared spare waits for it to reap its waiting process before SIGKILL.
SPARE_END_WAIT_S = 0.5
# The seccomp programs of every sandbox and what they deny (main() builds them).
FILTERS: List[bytes] = []
FILTER_INFO: Dict[str, Any] = {}
# Longest error message sent back (they may quote the frame).
MAX_MESSAGE = 500
# Terminals: ioctls termios lacks (asm-generic/ioctls.h), devpts' ptmx device, and the relay's bounds.
TIOCSPTLCK, TIOCGPTPEER = 0x40045431, 0x5441
PTMX_RDEV = os.makedev(5, 2)
# Input the terminal has not taken yet (a command that does not read): past this, stdin waits.
MAX_PTY_PENDING = 1 << 20
# After the command exits, output still on its way is read until the terminal is closed by every
# process holding it (EIO), or until it has been quiet this long, or at most PTY_DRAIN_MAX_MS.
PTY_DRAIN_QUIET_MS, PTY_DRAIN_MAX_MS = 100, 2000
# One resize on the helper's resize pipe: rows, cols (native unsigned shorts, as struct winsize).
RESIZE = struct.Struct("=HH")

Json = Dict[str, Any]
Schema = Dict[str, Any]


def child_pipes(with_stdin: bool, made: List[int]) -> Tuple[Dict[str, Tuple[int, int]], List[int]]:
    """The pipes a sandbox process (a task, or a command entered into a live sandbox) talks over:
    stdout, stderr, status, and stdin (a pipe, or /dev/null). Every descriptor is appended to
    `made` so the caller closes them all on failure. Returns the pipes by name and the child's
    ends in fd order 0, 1, 2, status."""
    pipes: Dict[str, Tuple[int, int]] = {}
    for name in ("stdout", "stderr", "status") + (("stdin",) if with_stdin else ()):
        pipes[name] = os.pipe()
        made += pipes[name]
    if not with_stdin:
        fd = os.open("/dev/null", os.O_RDONLY | os.O_CLOEXEC)
        made.append(fd)
        pipes["stdin"] = (fd, -1)
    return pipes, [pipes["stdin"][0], pipes["stdout"][1], pipes["stderr"][1], pipes["status"][1]]


class CgroupRequest(TypedDict):
    parents: Dict[str, str]
    prefix: str
    sparePrefix: str
    rename: bool
    limits: Dict[str, int]
    optional: List[str]


class FdData(TypedDict):
    fd: int
    data: str


class StartRequest(TypedDict):
    id: int
    op: str
    path: str
    argv: List[str]
    env: Dict[str, str]
    uid: Optional[int]
    gid: Optional[int]
    rlimits: List[Tuple[str, int, int]]
    cgroup: Optional[CgroupRequest]
    stdin: bool
    fds: List[FdData]
    filterFds: List[int]


class PtySize(TypedDict):
    cols: int
    rows: int


class EnterRequired(TypedDict):
    id: int
    op: str
    sandbox: int
    argv: List[str]
    env: Dict[str, str]
    cwd: str
    uid: int
    gid: int
    rlimits: List[Tuple[str, int, int]]
    stdin: bool
    cgroup: Optional[Dict[str, str]]


class EnterRequest(EnterRequired, total=False):
    pty: Optional[PtySize]  # a terminal of the sandbox's devpts on stdio (needs stdin)


class RequestError(Exception):
    """What went wrong with one request; it is answered with this code and message."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


class ChannelClosed(Exception):
    """The worker's end of stdout is gone: nobody is left to answer."""


# --- the protocol file: version, frame size, and a JSON Schema per request -----------------------

# The JSON Schema keywords zod's toJSONSchema emits for launcher-protocol.ts; any other keyword in
# the file is refused at start (a check we cannot do must not pass silently).
SCHEMA_KEYWORDS = {
    "type", "properties", "required", "additionalProperties", "propertyNames", "items", "prefixItems",
    "minItems", "maxItems", "const", "enum", "anyOf", "minimum", "maximum", "exclusiveMinimum",
    "exclusiveMaximum", "minLength", "maxLength", "pattern", "description",
}
TYPES: Dict[str, Callable[[object], bool]] = {
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
    "string": lambda v: isinstance(v, str),
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
    "boolean": lambda v: isinstance(v, bool),
    "null": lambda v: v is None,
}


def compile_pattern(pattern: str) -> "re.Pattern[str]":
    """A JavaScript pattern: ASCII \\w, and `$` only at the very end (Python's also before a final newline)."""
    if pattern.endswith("$") and not pattern.endswith("\\$"):
        pattern = pattern[:-1] + r"\Z"
    return re.compile(pattern, re.ASCII)


def check_schema(schema: object, where: str) -> None:
    """Refuses a schema with a keyword validate() does not implement; compiles its patterns."""
    if isinstance(schema, bool):
        return
    if not isinstance(schema, dict):
        raise ValueError("%s: not a schema" % where)
    for key, sub in schema.items():
        if key not in SCHEMA_KEYWORDS:
            raise ValueError("%s: unsupported JSON Schema keyword %r" % (where, key))
        if key == "properties":
            for name, s in sub.items():
                check_schema(s, "%s.%s" % (where, name))
        elif key in ("items", "additionalProperties", "propertyNames"):
            check_schema(sub, "%s[%s]" % (where, key))
        elif key in ("prefixItems", "anyOf"):
            for i, s in enumerate(sub):
                check_schema(s, "%s[%s %d]" % (where, key, i))
        elif key == "pattern":
            schema["pattern"] = compile_pattern(sub)


def validate(schema: Union[Schema, bool], value: object, path: str) -> None:
    """Raises ValueError naming the first place where value does not match schema."""
    if schema is True:
        return
    if schema is False:
        raise ValueError("%s: not allowed" % path)
    if "anyOf" in schema:
        problems = []
        for option in schema["anyOf"]:
            try:
                validate(option, value, path)
                break
            except ValueError as e:
                problems.append(str(e))
        else:
            raise ValueError(" or ".join(problems))
    if "type" in schema:
        types = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
        if not any(TYPES[t](value) for t in types):
            raise ValueError("%s: expected %s, got %s" % (path, " or ".join(types), type_name(value)))
    if "const" in schema and (value != schema["const"] or isinstance(value, bool) != isinstance(schema["const"], bool)):
        raise ValueError("%s: must be %s" % (path, json.dumps(schema["const"])))
    if "enum" in schema and value not in schema["enum"]:
        raise ValueError("%s: must be one of %s" % (path, ", ".join(json.dumps(v) for v in schema["enum"])))
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        for key, ok in (("minimum", value >= schema.get("minimum", value)), ("maximum", value <= schema.get("maximum", value)),
                        ("exclusiveMinimum", "exclusiveMinimum" not in schema or value > schema["exclusiveMinimum"]),
                        ("exclusiveMaximum", "exclusiveMaximum" not in schema or value < schema["exclusiveMaximum"])):
            if not ok:
                raise ValueError("%s: %s is out of range (%s %s)" % (path, value, key, schema[key]))
    if isinstance(value, str):
        if len(value) < schema.get("minLength", 0) or len(value) > schema.get("maxLength", len(value)):
            raise ValueError("%s: wrong length" % path)
        if "pattern" in schema and not schema["pattern"].search(value):
            raise ValueError("%s: %s does not match %s" % (path, json.dumps(value)[:80], schema["pattern"].pattern))
    if isinstance(value, list):
        if len(value) < schema.get("minItems", 0) or len(value) > schema.get("maxItems", len(value)):
            raise ValueError("%s: %d items, expected %s..%s" % (path, len(value), schema.get("minItems", 0), schema.get("maxItems", "")))
        prefix = schema.get("prefixItems", [])
        for i, item in enumerate(value):
            validate(prefix[i] if i < len(prefix) else schema.get("items", True), item, "%s[%d]" % (path, i))
    if isinstance(value, dict):
        for name in schema.get("required", []):
            if name not in value:
                raise ValueError("%s.%s: missing" % (path, name))
        props = schema.get("properties", {})
        for name, item in value.items():
            if "propertyNames" in schema:
                validate(schema["propertyNames"], name, "%s (a key)" % path)
            validate(props[name] if name in props else schema.get("additionalProperties", True), item, "%s.%s" % (path, name))


JSON_TYPES = {bool: "boolean", int: "integer", float: "number", str: "string", list: "array", dict: "object"}


def type_name(value: object) -> str:
    return "null" if value is None else JSON_TYPES.get(type(value), type(value).__name__)


class Protocol:
    """launcher-protocol.json: what the worker and we agreed on."""

    def __init__(self, path: str) -> None:
        with open(path, encoding="utf-8") as f:
            doc = json.load(f)
        self.version: int = doc["version"]
        self.max_frame: int = doc["maxFrameBytes"]
        self.error_codes = set(doc["errorCodes"])
        self.requests: Dict[str, Schema] = doc["requests"]
        for op, schema in self.requests.items():
            check_schema(schema, op)
        missing = {"bad_frame", "frame_too_large", "unknown_op", "invalid_request", "failed", "internal"} - self.error_codes
        if missing:
            raise ValueError("error codes missing: %s" % ", ".join(sorted(missing)))

    def check(self, req: Json) -> str:
        """The request's op, after checking the request against its schema."""
        op = req.get("op")
        if not isinstance(op, str) or op not in self.requests:
            raise RequestError("unknown_op", "unknown op %s (known: %s)" % (json.dumps(op)[:60], ", ".join(sorted(self.requests))))
        try:
            validate(self.requests[op], req, op)
        except ValueError as e:
            raise RequestError("invalid_request", str(e))
        return op


class Frames:
    """Splits stdin into lines of at most max_bytes; a longer one is skipped up to its newline."""

    # Enough of a frame to read the id it starts with (the worker writes it first).
    PREFIX = 64

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.buf = bytearray()
        self.scanned = 0  # bytes of buf known to hold no newline
        self.skipping: Optional[bytes] = None  # prefix of the too-large frame being skipped

    def feed(self, chunk: bytes) -> List[Tuple[bool, bytes]]:
        """(too_large, frame or its prefix) for each frame completed by chunk."""
        out: List[Tuple[bool, bytes]] = []
        self.buf += chunk
        while True:
            nl = self.buf.find(b"\n", self.scanned)
            if nl < 0:
                if self.skipping is None and len(self.buf) >= self.max_bytes:
                    self.skipping = bytes(self.buf[:self.PREFIX])
                if self.skipping is not None:
                    self.buf.clear()
                self.scanned = len(self.buf)
                return out
            if self.skipping is not None:
                out.append((True, self.skipping))
                self.skipping = None
            elif nl + 1 > self.max_bytes:
                out.append((True, bytes(self.buf[:self.PREFIX])))
            else:
                out.append((False, bytes(self.buf[:nl])))
            del self.buf[:nl + 1]
            self.scanned = 0


# The number must be seen to end (a delimiter, or blanks up to the end of a cut prefix).
ID_PREFIX = re.compile(rb'\s*\{\s*"id"\s*:\s*([1-9][0-9]{0,15})(?=\s*[,}]|\s+$)')


def id_prefix(frame: bytes) -> Optional[int]:
    """The id a frame starts with, read without parsing the rest (which may be broken or cut)."""
    m = ID_PREFIX.match(frame)
    return int(m.group(1)) if m else None


def send(msg: Json) -> None:
    data = memoryview((json.dumps(msg, separators=(",", ":")) + "\n").encode())
    try:
        while data:
            data = data[os.write(1, data):]
    except OSError as e:
        raise ChannelClosed(str(e))


# --- the child: from fork to exec -----------------------------------------------------------------

def join_cgroups(procs_files: List[str]) -> None:
    for procs in sorted(set(procs_files)):
        with open(procs, "w") as f:
            f.write(str(os.getpid()))


def child(req: StartRequest, stdin_r: int, out_w: int, err_w: int, status_w: int) -> NoReturn:
    """Runs in the forked child (already in its cgroups); never returns."""
    try:
        reset_signals()
        os.setsid()
        high = [fcntl.fcntl(fd, fcntl.F_DUPFD, HIGH_FD) for fd in (stdin_r, out_w, err_w, status_w)]
        for target, fd in enumerate(high):
            os.dup2(fd, target)
        # Everything else, including fds the worker inherited without CLOEXEC (close_range(2)).
        os.closerange(4, 1 << 30)
        data = [(e["fd"], e["data"].encode("utf-8", "surrogateescape")) for e in req["fds"]]
        if len(req["filterFds"]) != len(FILTERS):
            raise ValueError("%d seccomp programs, %d descriptors for them" % (len(FILTERS), len(req["filterFds"])))
        data += list(zip(req["filterFds"], FILTERS))
        place_data(data)
        set_rlimits(req["rlimits"])
        gid, uid = req["gid"], req["uid"]
        if gid is not None:
            os.setgroups([])
            os.setresgid(gid, gid, gid)
        if uid is not None:
            os.setresuid(uid, uid, uid)
        os.chdir("/")
        os.execve(req["path"], req["argv"], req["env"])
    except BaseException as e:  # anything here means the sandbox cannot start
        try:
            os.write(2, ("cogo launcher: %s\n" % e).encode())
        finally:
            os._exit(125)


def place_data(entries: List[Tuple[int, bytes]]) -> None:
    """Each (fd, bytes) as a memory file at that descriptor (>= 4), positioned at its start."""
    for target, data in sorted(entries):
        if target < 4:
            raise ValueError("data descriptor %d would replace stdio or the status pipe" % target)
        fd = os.memfd_create("cogo", 0)  # not CLOEXEC: bwrap reads it after the exec
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.lseek(fd, 0, os.SEEK_SET)
        if fd != target:
            os.dup2(fd, target)
            os.close(fd)


def spare_main(sock: socket.socket, procs_files: List[str]) -> NoReturn:
    """A spare: joins its cgroups now, then waits for its request; never returns."""
    try:
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        # Only the socket stays: a copy of another task's stdin pipe would keep its EOF away.
        keep = sock.fileno()
        os.closerange(0, keep)
        os.closerange(keep + 1, 1 << 30)
        join_cgroups(procs_files)
        sock.sendall(b"J")  # joined: the launcher may now rename the directories and use us
        _, fds, _, _ = socket.recv_fds(sock, 1, 4)
        chunks = []
        while chunk := sock.recv(1 << 20):
            chunks.append(chunk)
        if len(fds) != 4:
            os._exit(0)  # the launcher is shutting down
        req = cast(StartRequest, json.loads(b"".join(chunks)))
    except BaseException:
        os._exit(125)
    child(req, *fds)


# --- entering a live sandbox from outside (protocol 3) ----------------------------------------------

def enter_spare_main(sock: socket.socket, procs_files: List[str], ns_fds: List[Tuple[int, int]], prepared: "Optional[Prepared]") -> NoReturn:
    """A live sandbox's spare helper: does now what does not depend on the command, then waits for
    the command and runs it; never returns.

    Always: drop every descriptor but its socket, turn non-dumpable, join the command's cgroup leaf
    (the slow part). With `prepared` (the sandbox's usual ids and rlimits) also: enter the sandbox
    (ns_fds), become its user, and fork the next command's process into it (next_command_main),
    which loads seccomp and waits; a command asking for exactly that then costs a message and an
    exec. Only then does it say "J" (ready); one that fails to get there exits without it, and the
    launcher forks a helper of its own. Until it is prepared it is root on the host, outside the
    sandbox's PID namespace, holding nothing but its socket and the namespaces."""
    s = Steps()
    try:
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        # Up high, so the stdio a command brings lands on 0-4 without touching them.
        raw = sock.detach()
        keep = [fcntl.fcntl(raw, fcntl.F_DUPFD, HIGH_FD)]
        ns = [(fcntl.fcntl(fd, fcntl.F_DUPFD, HIGH_FD), flag) for fd, flag in ns_fds] if prepared else []
        for lo, hi in gaps(0, keep + [fd for fd, _ in ns]):
            os.closerange(lo, hi)
        sock = socket.socket(fileno=keep[0])
        checked(libc.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0), "PR_SET_DUMPABLE")
        join_cgroups(procs_files)
        child, child_sock = 0, -1
        if prepared:
            reset_signals()
            os.setsid()
            name_process(b"cogo-next-command")
            become_sandbox_user(s, prepared, ns)
            ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
            child = fork_into_sandbox(s)
            if child == 0:
                ours.close()
                sock.close()
                next_command_main(theirs.detach())
            theirs.close()
            child_sock = fcntl.fcntl(ours.fileno(), fcntl.F_DUPFD, HIGH_FD)
            ours.close()
        sock.sendall(b"J")  # ready: the launcher may hand us a command
        if child:
            child = wait_for_request(sock, child)
        try:
            _, fds, _, _ = socket.recv_fds(sock, 1, 5 + len(NAMESPACES))
            chunks = []
            while chunk := sock.recv(1 << 20):
                chunks.append(chunk)
        except ConnectionResetError:  # closed by the launcher with our "J" unread: no command
            fds = []
        sock.close()
        if not fds:
            # The launcher is ending this spare. Its waiting process is reaped here: left to the
            # host's init, its zombie would hold the sandbox's PID namespace (and so the end of
            # the sandbox) until that init got round to it.
            if child:
                os.kill(child, signal.SIGKILL)
                os.waitpid(child, 0)
            os._exit(0)
        req = cast(EnterRequest, json.loads(b"".join(chunks)))
        own = 5 if req.get("pty") else 4
        if len(fds) != own + len(NAMESPACES):
            raise ValueError("%d descriptors, %d expected" % (len(fds), own + len(NAMESPACES)))
    except BaseException:
        os._exit(125)
    stdio, theirs_ns = fds[:4], fds[own:]
    resize_r = fds[4] if own == 5 else -1
    if not prepared:
        # The cgroup leaf is joined already: enter_child skips that step (no cgroup.procs to write).
        enter_child(req, [(fd, flag) for fd, (_, flag) in zip(theirs_ns, NAMESPACES)], [], resize_r, *stdio)
    try:
        # In the sandbox as its user already: the namespaces sent along are not needed.
        close_quietly(theirs_ns)
        to_stdio(stdio + ([resize_r] if resize_r >= 0 else []), [child_sock])
        if prepared_for(req) != prepared:
            raise ValueError("the spare was prepared for other ids or rlimits")  # the launcher checks first
        conn = socket.socket(fileno=child_sock)
        s.now = "hand the command to its process"
        reaped = child == 0 or os.waitpid(child, os.WNOHANG)[0] != 0
        if not req.get("pty") and not reaped:
            try:
                # Code in the sandbox may have stopped it (it is the sandbox user's): go on.
                os.kill(child, signal.SIGCONT)
                socket.send_fds(conn, [b"R"], [0, 1, 2])
                conn.sendall(json.dumps({"argv": req["argv"], "env": req["env"], "cwd": req["cwd"]}).encode())
                conn.close()  # EOF: the request is whole
            except OSError:
                pass  # it died (killed from inside the sandbox): fork another
            else:
                await_command(s, child, -1, -1)
        # A terminal, or the prepared child is gone: this helper is the sandbox user already.
        conn.close()
        if not reaped:
            kill_tree(child)
            os.waitpid(child, 0)
        run_command(s, req)
    except BaseException as e:
        cannot_enter(s, e)


class CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class CapData(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32), ("inheritable", ctypes.c_uint32)]


class SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


def readable(fd: int, timeout_s: float) -> bool:
    """Whether fd polls readable within timeout_s (0: now). poll, not select: a launcher holding
    ~100 live sandboxes (namespace fds, pidfds, spare sockets) has descriptors past select's 1024."""
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    return bool(poller.poll(int(timeout_s * 1000)))


def checked(result: int, what: str) -> None:
    if result != 0:
        e = ctypes.get_errno()
        raise OSError(e, "%s: %s" % (what, os.strerror(e)))


def cap_last_cap() -> int:
    """The highest capability number this kernel knows (read here, on the host's /proc)."""
    try:
        with open("/proc/sys/kernel/cap_last_cap") as f:
            return int(f.read())
    except (OSError, ValueError):
        return 63


CAP_LAST = cap_last_cap()


def set_rlimits(rlimits: List[Tuple[str, int, int]]) -> None:
    """Each limit capped at our own hard limit (only root could raise it, and we never ask to)."""
    for name, soft, hard in rlimits:
        which = getattr(resource, name)
        cap = resource.getrlimit(which)[1]
        if cap != resource.RLIM_INFINITY:
            soft, hard = min(soft, cap), min(hard, cap)
        resource.setrlimit(which, (soft, hard))


def reset_signals() -> None:
    signal.pthread_sigmask(signal.SIG_SETMASK, [])
    # Python ignores SIGPIPE and SIGXFSZ, we ignore SIGINT/TERM/HUP/QUIT; ignored signals survive exec.
    for s in range(1, signal.NSIG):
        try:
            signal.signal(s, signal.SIG_DFL)
        except (OSError, ValueError):
            pass


def load_filters() -> None:
    """The launcher's seccomp programs, as bwrap's --add-seccomp-fd loads them for a task."""
    for program in FILTERS:
        buf = ctypes.create_string_buffer(program, len(program))
        prog = SockFprog(len(program) // 8, ctypes.cast(buf, ctypes.c_void_p))
        checked(libc.prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.byref(prog), 0, 0), "seccomp")


def host_pts_dev() -> Optional[int]:
    """The device of the host's devpts (read at start, on the host's /dev), if it has one."""
    try:
        return os.stat("/dev/pts/ptmx").st_dev
    except OSError:
        return None


HOST_PTS_DEV = host_pts_dev()


# Terminals. Where the pty comes from and who holds its master is the whole security question:
#   * it is opened by the helper after it entered the sandbox's mount namespace and dropped to the
#     sandbox user, from the sandbox's own devpts (bwrap's --dev mounts a new instance at /dev/pts,
#     ptmxmode=666): exactly what any process inside could do. It is checked to be a ptmx device
#     on a filesystem that is not the host's devpts, so the host's terminals are never involved.
#   * its master never leaves the helper. The launcher (root) holds no descriptor of the sandbox's
#     filesystems and parses nothing of the terminal's output; the worker sees only the same pipes
#     as for any command. (Reopening /proc/<pid>/fd/<n> of a master, as the worker does for pipes,
#     would open /dev/ptmx again and make a new pty, and SCM_RIGHTS to the worker would need a
#     socket from the worker into this process for nothing gained.)
#   * the helper that relays is the sandbox user without capabilities, non-dumpable, outside the
#     sandbox's PID namespace (no process inside can name it to signal or trace it), in the
#     command's cgroup (killed with it). It copies bytes and never interprets them.
def open_pty(cols: int, rows: int) -> Tuple[int, int]:
    """A new pty of the sandbox's devpts (we are inside its mount namespace), sized: (master, slave).
    The slave is opened here, before the fork, so the master never reads as hung up (EIO) in the
    moment before the command has it. Not /dev/ptmx: bwrap's /dev is a tmpfs of the sandbox user,
    who can replace that symlink; /dev/pts is a mount point nothing inside can move, and devpts
    takes no new files."""
    fd = os.open("/dev/pts/ptmx", os.O_RDWR | os.O_NOCTTY | os.O_CLOEXEC | os.O_NOFOLLOW)
    try:
        st = os.fstat(fd)
        if not stat.S_ISCHR(st.st_mode) or st.st_rdev != PTMX_RDEV:
            raise OSError(errno.ENODEV, "the sandbox's /dev/pts/ptmx is not a pty multiplexer")
        if st.st_dev == HOST_PTS_DEV:
            raise OSError(errno.EXDEV, "the sandbox's /dev/pts is the host's devpts (no --dev?)")
        fcntl.ioctl(fd, TIOCSPTLCK, struct.pack("i", 0))  # unlockpt
        fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
        # TIOCGPTPEER opens the slave of this very master (no path lookup a process inside could race).
        slave = fcntl.ioctl(fd, TIOCGPTPEER, os.O_RDWR | os.O_NOCTTY | os.O_CLOEXEC)
    except BaseException:
        os.close(fd)
        raise
    return fd, slave


def attach_pty(master: int, slave: int) -> None:
    """In the command (a new session's leader): the terminal's slave as stdio and controlling terminal."""
    fcntl.ioctl(slave, termios.TIOCSCTTY, 0)
    for target in (0, 1, 2):
        os.dup2(slave, target)
    if slave > 2:
        os.close(slave)
    os.close(master)


def relay_pty(master: int, pid: int) -> int:
    """In the helper, while the command runs: stdin pipe (fd 0) -> terminal -> stdout pipe (fd 1),
    resizes from fd 4 (RESIZE records, the launcher writes them) -> TIOCSWINSZ. Returns the exit
    status to report (128 + n for a signal, as bwrap does) once the command has exited and its
    output is drained. Input the terminal does not take yet waits here (at most MAX_PTY_PENDING)
    so output keeps flowing and a Ctrl-C typed later is still delivered in order."""
    os.set_blocking(master, False)
    pidfd = os.pidfd_open(pid)
    pending = bytearray()
    resize_buf = b""
    inputs = {0: True, 4: True}  # open inputs: stdin, resizes
    master_open = True
    status: Optional[int] = None
    exited_at = last_output = 0.0
    while True:
        now = time.monotonic()
        if status is not None:
            if not master_open or now - last_output >= PTY_DRAIN_QUIET_MS / 1000 or now - exited_at >= PTY_DRAIN_MAX_MS / 1000:
                return status
        poller = select.poll()
        if master_open:
            poller.register(master, select.POLLIN | (select.POLLOUT if pending else 0))
        if inputs[0] and len(pending) < MAX_PTY_PENDING and master_open:
            poller.register(0, select.POLLIN)
        if inputs[4]:
            poller.register(4, select.POLLIN)
        if status is None:
            poller.register(pidfd, select.POLLIN)
        timeout = None if status is None else PTY_DRAIN_QUIET_MS
        for fd, ev in poller.poll(timeout):
            if fd == pidfd:
                _, raw = os.waitpid(pid, 0)
                status = 128 + os.WTERMSIG(raw) if os.WIFSIGNALED(raw) else os.WEXITSTATUS(raw)
                exited_at = last_output = time.monotonic()
            elif fd == master:
                if ev & (select.POLLIN | select.POLLHUP | select.POLLERR):
                    try:
                        data = os.read(master, 1 << 16)
                    except BlockingIOError:
                        data = None
                    except OSError:  # EIO: every process holding the terminal has closed it
                        data = b""
                    if data == b"":
                        master_open = False
                        pending.clear()
                    elif data:
                        last_output = time.monotonic()
                        view = memoryview(data)
                        while view:
                            view = view[os.write(1, view):]
                if master_open and pending and ev & select.POLLOUT:
                    try:
                        del pending[:os.write(master, pending[:4096])]
                    except BlockingIOError:
                        pass
                    except OSError:
                        pending.clear()
            elif fd == 0:
                data = os.read(0, 1 << 16)
                if data:
                    pending += data
                else:
                    inputs[0] = False  # no more input; the terminal stays until the command ends
            elif fd == 4:
                chunk = os.read(4, 4096)
                if not chunk:
                    inputs[4] = False
                    continue
                resize_buf += chunk
                whole = len(resize_buf) - len(resize_buf) % RESIZE.size
                if whole:
                    rows, cols = RESIZE.unpack_from(resize_buf, whole - RESIZE.size)  # the latest wins
                    resize_buf = resize_buf[whole:]
                    if master_open:
                        fcntl.ioctl(master, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))


class Steps:
    """Which step of entering a sandbox is under way: a failure's message names it."""

    def __init__(self) -> None:
        self.now = "fork"


class Prepared(NamedTuple):
    """What every command of a live sandbox is likely to ask (its last command's ids and rlimits):
    a spare helper given this becomes the sandbox user before any command comes (enter_spare_main)."""
    uid: int
    gid: int
    rlimits: List[Tuple[str, int, int]]


def prepared_for(req: EnterRequest) -> Prepared:
    return Prepared(req["uid"], req["gid"], [tuple(r) for r in req["rlimits"]])  # type: ignore[misc]


def become_sandbox_user(s: Steps, p: Prepared, ns_fds: List[Tuple[int, int]]) -> None:
    """Root on the host → the sandbox's uid/gid inside its namespaces (entered from ns_fds, then
    closed), with p's rlimits, no group, no capability, no_new_privs, non-dumpable. Every step that
    needs privilege is done before the last one that gives privilege up."""
    s.now = "rlimits"
    set_rlimits(p.rlimits)
    # Inside, setgroups is denied (bwrap writes "deny"): drop host group 0 while still on the host.
    s.now = "setgroups"
    os.setgroups([])
    s.now = "setns"
    for fd, flag in ns_fds:
        checked(libc.setns(fd, flag), "setns %#x" % flag)
    close_quietly([fd for fd, _ in ns_fds])
    # Now in the sandbox's user namespace with every capability there (none on the host): drop
    # the bounding set while CAP_SETPCAP is still held, then the ids in this same process
    # (across an exec the capabilities for setresuid would be gone).
    s.now = "capabilities"
    for cap in range(CAP_LAST + 1):
        checked(libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0), "PR_CAPBSET_DROP %d" % cap)
    s.now = "setresgid %d" % p.gid
    os.setresgid(p.gid, p.gid, p.gid)
    s.now = "setresuid %d" % p.uid
    os.setresuid(p.uid, p.uid, p.uid)
    s.now = "capabilities"
    checked(libc.prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0), "PR_CAP_AMBIENT")
    none = (CapData * 2)()
    checked(libc.capset(ctypes.byref(CapHeader(LINUX_CAPABILITY_VERSION_3, 0)), none), "capset")
    checked(libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "PR_SET_NO_NEW_PRIVS")
    checked(libc.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0), "PR_SET_DUMPABLE")


def fork_into_sandbox(s: Steps) -> int:
    """fork(2) after setns(CLONE_NEWPID), which applies to children only: the child is in the
    sandbox's PID namespace. One whose init has exited takes no new process (ENOMEM)."""
    s.now = "fork into the sandbox"
    try:
        return os.fork()
    except OSError as e:
        if e.errno == errno.ENOMEM:
            raise OSError(e.errno, "the sandbox's init has exited")
        raise


def run_command(s: Steps, req: EnterRequest) -> NoReturn:
    """As the sandbox user, stdio on 0-2, the status pipe on 3 (and a terminal's resize pipe on 4):
    forks the command into the sandbox, reports its pid and exits with its status."""
    pty = req.get("pty")
    master = slave = -1
    if pty:
        # Only now, as the sandbox user with nothing of the host left: the terminal is made
        # the way any process inside could make one.
        s.now = "open the sandbox's terminal"
        master, slave = open_pty(pty["cols"], pty["rows"])
    pid = fork_into_sandbox(s)
    if pid == 0:
        os.closerange(3, 5)  # the status pipe, and the resize pipe of a terminal
        os.setsid()  # bwrap's --new-session: no TIOCSTI into a terminal
        if master >= 0:
            s.now = "attach the terminal"
            attach_pty(master, slave)
        s.now = "seccomp"
        load_filters()
        exec_command(s, req)
    await_command(s, pid, master, slave)


def exec_command(s: Steps, req: EnterRequest) -> NoReturn:
    # Resolved in the sandbox's root (setns(mnt) set our root and cwd there): a symlink a
    # tenant left cannot lead to a host path.
    s.now = "chdir %s" % req["cwd"]
    os.chdir(req["cwd"])
    s.now = "exec %s" % req["argv"][0]
    os.execvpe(req["argv"][0], req["argv"], req["env"])


def await_command(s: Steps, pid: int, master: int, slave: int) -> NoReturn:
    """The helper's part once the command `pid` is forked: tells the worker its pid (as bwrap's
    --json-status-fd does), relays a terminal or lets go of the output, and exits with its status."""
    os.write(3, json.dumps({"child-pid": pid}).encode() + b"\n")
    os.close(3)
    if master >= 0:
        os.close(slave)  # the command's now: the terminal hangs up when its processes close it
        s.now = "relay the terminal"
        os._exit(relay_pty(master, pid))
    os.closerange(0, 3)  # the command's output ends when the command's processes are gone
    s.now = "wait"
    _, status = os.waitpid(pid, 0)
    # As bwrap reports it: death by signal n is 128 + n.
    os._exit(128 + os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status))


def cannot_enter(s: Steps, e: BaseException) -> NoReturn:
    """Anything failing on the way in means the command cannot start: said on its stderr, exit 125."""
    try:
        os.write(2, ("cogo launcher: cannot enter the sandbox (%s): %s\n" % (s.now, e)).encode())
    finally:
        os._exit(125)


def to_stdio(fds: List[int], keep: List[int]) -> None:
    """fds onto 0, 1, 2, … in order; every other descriptor but `keep` (all at HIGH_FD or above) closed
    (a host fd inside the sandbox is runc's CVE-2016-9962 / CVE-2024-21626)."""
    high = [fcntl.fcntl(fd, fcntl.F_DUPFD, HIGH_FD + 64) for fd in fds]
    for target, fd in enumerate(high):
        os.dup2(fd, target)
    for lo, hi in gaps(len(high), keep):
        os.closerange(lo, hi)


def gaps(start: int, keep: List[int]) -> List[Tuple[int, int]]:
    """The [lo, hi) ranges from start to 1 << 30 that leave out every fd in keep."""
    out, lo = [], start
    for fd in sorted(k for k in keep if k >= start):
        if fd > lo:
            out.append((lo, fd))
        lo = fd + 1
    return out + [(lo, 1 << 30)]


def enter_child(req: EnterRequest, ns_fds: List[Tuple[int, int]], procs_files: List[str], resize_r: int,
                stdin_r: int, out_w: int, err_w: int, status_w: int) -> NoReturn:
    """The helper: runs in the forked child, as root on the host, and never returns.

    Nothing of the host reaches the sandbox: no descriptor but stdio, no group, no capability.
    With a terminal (`pty`), the read end of its resize pipe is fd 4 and the helper relays.
    """
    s = Steps()
    try:
        s.now = "signals"
        reset_signals()
        # Joined as root, on the host side: the slot uid never owns a cgroup.procs, and once in the
        # sandbox's user namespace the host cgroup files are out of reach. (A spare has joined its
        # leaf already and passes none.)
        s.now = "cgroup"
        join_cgroups(procs_files)
        os.setsid()
        # While it holds host credentials, code in the sandbox must neither ptrace this process nor
        # open its /proc/<pid>/fd or exe (runc CVE-2019-5736). Restored by the kernel at exec.
        checked(libc.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0), "PR_SET_DUMPABLE")
        # stdio on 0-2, the status pipe on 3, the namespace fds after it; nothing else survives.
        own = [stdin_r, out_w, err_w, status_w] + ([resize_r] if req.get("pty") else [])
        to_stdio(own + [fd for fd, _ in ns_fds], [])
        become_sandbox_user(s, prepared_for(req), [(len(own) + i, flag) for i, (_, flag) in enumerate(ns_fds)])
        run_command(s, req)
    except BaseException as e:
        cannot_enter(s, e)


def wait_for_request(sock: socket.socket, child: int) -> int:
    """Until the launcher writes (or closes) sock, reaps the waiting process `child` if it exits
    first (killed from inside, or the sandbox ending: its PID namespace cannot finish dying while
    a zombie of it is unreaped). Returns child, or 0 once it is reaped."""
    pidfd = os.pidfd_open(child)
    try:
        poller = select.poll()
        poller.register(sock.fileno(), select.POLLIN)
        poller.register(pidfd, select.POLLIN)
        while True:
            ready = {fd for fd, _ in poller.poll()}
            if pidfd in ready and child:
                os.waitpid(child, 0)
                child = 0
                poller.unregister(pidfd)
            if sock.fileno() in ready:
                return child
    finally:
        os.close(pidfd)


def name_process(title: bytes) -> None:
    """What `ps` shows for this process and the children it forks (comm and cmdline), instead of
    the launcher's command line: code in the sandbox can read a waiting process's cmdline, and has
    no business learning the worker's install path. Overwrites the argv strings in place, as
    setproctitle does (PR_SET_MM would need CAP_SYS_RESOURCE). Reads /proc/self: call it on the host."""
    libc.prctl(PR_SET_NAME, title[:15], 0, 0, 0)
    with open("/proc/self/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    # proc(5): arg_start and arg_end are fields 48 and 49; fields[0] is field 3.
    start, end = int(fields[45]), int(fields[46])
    if end > start:
        ctypes.memmove(start, title[: end - start - 1].ljust(end - start, b"\0"), end - start)


def next_command_main(sock: int) -> NoReturn:
    """A prepared spare's child: already in the sandbox (its namespaces, its user, seccomp loaded),
    waiting on `sock` for the next command's stdio and request, then only chdir and exec are left.
    It is non-dumpable (no ptrace, no /proc/<pid>/fd or mem from inside) and holds no descriptor but
    sock; if its helper goes away first, sock reads EOF and it exits."""
    s = Steps()
    try:
        os.setsid()  # bwrap's --new-session: no TIOCSTI into a terminal
        s.now = "seccomp"
        load_filters()
        s.now = "wait for the command"
        conn = socket.socket(fileno=sock)
        _, fds, _, _ = socket.recv_fds(conn, 1, 3)
        chunks = []
        while chunk := conn.recv(1 << 20):
            chunks.append(chunk)
        conn.close()
        if len(fds) != 3:
            os._exit(0)  # the helper is ending: no command
        to_stdio(fds, [])
        exec_command(s, cast(EnterRequest, json.loads(b"".join(chunks))))
    except BaseException as e:
        cannot_enter(s, e)


# --- the server -------------------------------------------------------------------------------------

class Live:
    """A persistent sandbox: its cgroup (one directory per controller, each with an init/ leaf)
    and, once pinned, its PID 1 (a pidfd) and that process's namespaces (descriptors, in the
    order a command enters them). The descriptors keep the namespaces, and with them the
    workspace mount, alive: they are closed when the sandbox's bwrap is reaped."""

    def __init__(self, dirs: Dict[str, str]) -> None:
        self.dirs = dirs
        self.pidfd = -1
        self.init_pid = 0
        self.ns_fds: List[Tuple[int, int]] = []
        # What its commands ask for (the pin says, each enter updates): its spare prepares for it.
        self.prepared: Optional[Prepared] = None

    def release(self) -> None:
        close_quietly([self.pidfd] + [fd for fd, _ in self.ns_fds])
        self.pidfd, self.ns_fds = -1, []

    def init_alive(self) -> bool:
        # A pidfd polls readable once its process has exited.
        return self.pidfd >= 0 and not readable(self.pidfd, 0)


class Spare:
    def __init__(self, pid: int, sock: socket.socket, dirs: Dict[str, str], pidfd: int, prepared: Optional[Prepared] = None) -> None:
        self.pid, self.sock, self.dirs, self.pidfd = pid, sock, dirs, pidfd
        # A live sandbox's spare that is the sandbox user already, with a command process waiting.
        self.prepared = prepared


def kill_tree(pid: int) -> None:
    """SIGKILL to pid's process group (it leads one after setsid) and to pid itself."""
    for kill in (os.killpg, os.kill):
        try:
            kill(pid, signal.SIGKILL)
        except OSError:
            pass


def close_quietly(fds: List[int]) -> None:
    for fd in fds:
        if fd >= 0:
            try:
                os.close(fd)
            except OSError:
                pass


class Server:
    def __init__(self, protocol: Protocol) -> None:
        self.protocol = protocol
        self.frames = Frames(protocol.max_frame)
        self.sel = selectors.DefaultSelector()
        self.running: Dict[int, int] = {}  # start id -> pid (until reaped)
        self.held: Dict[int, List[int]] = {}  # start id -> our copies of the worker's pipe ends (until "opened")
        self.spares: Dict[str, List[Spare]] = {}  # cgroup layout -> [Spare]
        self.enter_spares: Dict[int, Spare] = {}  # persistent start id -> its spare helper (joined to a fresh cmd- leaf)
        self.entered: Dict[int, int] = {}  # enter id -> its sandbox's start id (until reaped: then a spare is made)
        self.live: Dict[int, Live] = {}  # persistent start id -> its sandbox (until reaped)
        self.commands: Dict[int, Dict[str, str]] = {}  # enter id -> its cgroup leaf (until reaped)
        self.terminals: Dict[int, int] = {}  # enter id with a pty -> write end of its resize pipe (until reaped)
        self.after_reply: Optional[Callable[[], None]] = None
        self.handlers: Dict[str, Callable[[Json], Json]] = {
            "start": lambda r: self.start(cast(StartRequest, r)),
            "opened": self.opened,
            "kill": self.kill,
            "mount": self.mount,
            "umount": self.umount,
            "filter": self.filter,
            "pin": self.pin,
            "enter": lambda r: self.enter(cast(EnterRequest, r)),
            "resize": self.resize,
        }
        missing = set(protocol.requests) ^ set(self.handlers)
        if missing:
            raise ValueError("the protocol file and this launcher disagree on ops: %s" % ", ".join(sorted(missing)))

    def hello(self) -> Json:
        return {
            "type": "hello",
            "protocol": self.protocol.version,
            "pid": os.getpid(),
            "python": platform.python_version(),
            "capabilities": {"seccomp": len(FILTERS) > 0, "mount": os.geteuid() == 0},
        }

    # One frame, one reply: nothing a request carries reaches past this method.
    def handle(self, frame: bytes, too_large: bool = False) -> None:
        rid: Optional[int] = None
        self.after_reply = None
        try:
            if too_large:
                rid = id_prefix(frame)
                raise RequestError("frame_too_large", "frame longer than %d bytes skipped (it began %r)" % (self.protocol.max_frame, frame[:40]))
            try:
                req = json.loads(frame)
            except (ValueError, RecursionError) as e:  # UnicodeDecodeError included; nesting too deep
                rid = id_prefix(frame)
                raise RequestError("bad_frame", "not JSON (%s): %r" % (e, frame[:60]))
            if not isinstance(req, dict):
                raise RequestError("bad_frame", "a request is a JSON object, not %s" % type_name(req))
            given = req.get("id")
            if not isinstance(given, int) or isinstance(given, bool) or given <= 0:
                raise RequestError("bad_frame", "a request needs a positive integer id, got %s" % json.dumps(given)[:40])
            rid = given
            result = self.handlers[self.protocol.check(req)](req)
        except RequestError as e:
            result = {"type": "error", "id": rid, "code": e.code, "message": str(e)[:MAX_MESSAGE]}
        except ChannelClosed:
            raise
        except Exception as e:
            traceback.print_exc(file=sys.stderr)
            result = {"type": "error", "id": rid, "code": "internal", "message": ("%s: %s" % (type(e).__name__, e))[:MAX_MESSAGE]}
        send(result)
        if self.after_reply and result["type"] != "error":
            try:
                self.after_reply()
            except Exception:
                traceback.print_exc(file=sys.stderr)

    def start(self, req: StartRequest) -> Json:
        tid = req["id"]
        if tid in self.running or tid in self.held:
            raise RequestError("invalid_request", "id %d is already in use by a running process" % tid)
        targets = [e["fd"] for e in req["fds"]] + req["filterFds"]
        if len(set(targets)) != len(targets):
            raise RequestError("invalid_request", "fds and filterFds name a descriptor twice: %s" % sorted(targets))
        if len(req["filterFds"]) != len(FILTERS):
            raise RequestError("invalid_request", "%d seccomp programs, %d filterFds" % (len(FILTERS), len(req["filterFds"])))
        cg = req["cgroup"]
        persistent = bool(req.get("persistent"))
        if persistent and cg is None:
            raise RequestError("invalid_request", "a persistent sandbox needs a cgroup (its limits cover every command)")
        made: List[int] = []  # every descriptor made here, closed on failure
        spare: Optional[Spare] = None
        live: Optional[Live] = None
        pid = 0
        try:
            pipes, theirs = child_pipes(bool(req["stdin"]), made)
            if cg and persistent:
                # No spare: a sandbox starts once and lives long; its bwrap goes into init/.
                live = Live(self.make_sandbox_cgroups(cg))
                pid = os.fork()
                if pid == 0:
                    try:
                        join_cgroups([os.path.join(d, "init", "cgroup.procs") for d in live.dirs.values()])
                    except BaseException:
                        os._exit(125)
                    child(req, *theirs)
            elif cg:
                spare = self.take_spare(cg)
                for name, value in cg["limits"].items():
                    controller = name.split(".")[0]
                    if controller in spare.dirs:
                        try:
                            with open(os.path.join(spare.dirs[controller], name), "w") as f:
                                f.write(str(value))
                        except OSError:
                            if name not in cg["optional"]:  # e.g. swap files without swap accounting
                                raise
                socket.send_fds(spare.sock, [b"R"], theirs)
                spare.sock.sendall(json.dumps(req).encode())
                spare.sock.close()
                pid = spare.pid
                self.sel.unregister(spare.pidfd)
                os.close(spare.pidfd)
            else:
                pid = os.fork()
                if pid == 0:
                    child(req, *theirs)
            # The child's ends; ours stay until the worker has opened its own copies.
            close_quietly(theirs)
            made = [fd for fd in made if fd not in theirs]
            ours = {name: pipes[name][0] for name in ("stdout", "stderr", "status")}
            if pipes["stdin"][1] >= 0:
                ours["stdin"] = pipes["stdin"][1]
            pidfd = os.pidfd_open(pid)
            self.sel.register(pidfd, selectors.EVENT_READ, ("exit", tid, pid))
        except BaseException as e:
            close_quietly(made)
            if pid:
                self.abandon(pid, spare.dirs if spare else {})
            elif spare:
                self.kill_spare(spare)
            if live:
                self.remove_sandbox_cgroups(live.dirs)
            if isinstance(e, OSError):
                raise RequestError("failed", "cannot start: %s" % e)
            raise
        self.held[tid] = list(ours.values())
        self.running[tid] = pid
        if live:
            self.live[tid] = live
            return {"type": "started", "id": tid, "pid": pid, "fds": ours, "cgroups": live.dirs}
        if cg is not None:
            layout: CgroupRequest = cg
            self.after_reply = lambda: self.top_up(layout)
        return {"type": "started", "id": tid, "pid": pid, "fds": ours, "cgroups": spare.dirs if spare else None}

    def make_sandbox_cgroups(self, cg: CgroupRequest) -> Dict[str, str]:
        """A persistent sandbox's cgroup per controller, with the limits of the whole sandbox, and its init/ leaf."""
        name = cg["prefix"] + uuid.uuid4().hex
        dirs: Dict[str, str] = {}
        try:
            for controller, parent in cg["parents"].items():
                path = os.path.join(parent, name)
                if path not in dirs.values():  # v2: one directory serves every controller
                    os.mkdir(path)
                dirs[controller] = path
            for limit, value in cg["limits"].items():
                controller = limit.split(".")[0]
                if controller in dirs:
                    try:
                        with open(os.path.join(dirs[controller], limit), "w") as f:
                            f.write(str(value))
                    except OSError:
                        if limit not in cg["optional"]:
                            raise
            # v2 allows processes only in leaves (and v2 limits only reach children from a parent).
            for path in set(dirs.values()):
                os.mkdir(os.path.join(path, "init"))
        except BaseException:
            self.remove_sandbox_cgroups(dirs)
            raise
        return dirs

    def remove_sandbox_cgroups(self, dirs: Dict[str, str]) -> None:
        """Removes a sandbox's (empty) cgroups, leaves first."""
        for path in set(dirs.values()):
            try:
                leaves = [e.path for e in os.scandir(path) if e.is_dir(follow_symlinks=False)]
            except OSError:
                leaves = []
            self.remove_dirs({leaf: leaf for leaf in leaves})
        self.remove_dirs(dirs)

    def pin(self, req: Json) -> Json:
        """Checks that req["pid"] is the PID 1 of the persistent sandbox req["task"] and keeps its namespaces.

        A stale pid may name another tenant's sandbox by now: the pid must be a child of that
        sandbox's bwrap, alive from before its namespaces are opened until after (a pidfd pins it),
        and each namespace must have the inode bwrap reported for it."""
        tid, pid = req["task"], req["pid"]
        live = self.live.get(tid)
        if live is None:
            raise RequestError("invalid_request", "no running persistent sandbox has id %d" % tid)
        try:
            pidfd = os.pidfd_open(pid)
        except OSError as e:
            raise RequestError("failed", "sandbox %d: pid %d: %s" % (tid, pid, e.strerror))
        fds: List[Tuple[int, int]] = []
        try:
            with open("/proc/%d/status" % pid) as f:
                found = re.search(r"^PPid:\s+(\d+)", f.read(), re.M)
            ppid = int(found.group(1)) if found else 0
            if ppid != self.running.get(tid):
                raise RequestError("failed", "pid %d is not the init of sandbox %d (its parent is %d)" % (pid, tid, ppid))
            for name, flag in NAMESPACES:
                fd = os.open("/proc/%d/ns/%s" % (pid, name), os.O_RDONLY | os.O_CLOEXEC)
                fds.append((fd, flag))
                want = req["namespaces"].get(name)
                if want is not None and os.fstat(fd).st_ino != want:
                    raise RequestError("failed", "pid %d is not the init of sandbox %d: its %s namespace is %d, bwrap reported %d"
                                       % (pid, tid, name, os.fstat(fd).st_ino, want))
            # Alive after the namespaces were opened, so /proc/<pid> was this process throughout.
            if readable(pidfd, 0):
                raise RequestError("failed", "the init of sandbox %d (pid %d) exited" % (tid, pid))
            if live.pidfd >= 0:  # checked last, so a wrong pid or inode is reported as such
                raise RequestError("invalid_request", "sandbox %d is already pinned" % tid)
            live.pidfd, live.init_pid, live.ns_fds = pidfd, pid, fds
            prepare = req.get("prepare")
            if prepare is not None:
                live.prepared = Prepared(prepare["uid"], prepare["gid"], [tuple(r) for r in prepare["rlimits"]])  # type: ignore[misc]
            self.after_reply = lambda: self.top_up_enter(tid)
        except BaseException as e:
            close_quietly([pidfd] + [fd for fd, _ in fds])
            if isinstance(e, OSError):
                raise RequestError("failed", "sandbox %d: pid %d: %s" % (tid, pid, e))
            raise
        return {"type": "ok", "id": req["id"]}

    def enter(self, req: EnterRequest) -> Json:
        """Runs a command inside a pinned persistent sandbox (enter_child does the entering)."""
        tid = req["id"]
        if tid in self.running or tid in self.held:
            raise RequestError("invalid_request", "id %d is already in use by a running process" % tid)
        live = self.live.get(req["sandbox"])
        if live is None or live.pidfd < 0:
            raise RequestError("invalid_request", "no running, pinned persistent sandbox has id %d" % req["sandbox"])
        if not live.init_alive():
            raise RequestError("failed", "the init of sandbox %d (pid %d) has exited: nothing to enter" % (req["sandbox"], live.init_pid))
        pty = req.get("pty")
        if pty is not None and not req["stdin"]:
            raise RequestError("invalid_request", "enter.pty: a terminal needs stdin (its keystrokes): set stdin")
        made: List[int] = []
        leaf: Dict[str, str] = {}
        pid = 0
        resize_r = resize_w = -1
        try:
            pipes, theirs = child_pipes(bool(req["stdin"]), made)
            if pty is not None:
                resize_r, resize_w = os.pipe()
                made += [resize_r, resize_w]
                os.set_blocking(resize_w, False)  # a stuck relay never blocks the launcher
            # The sandbox's spare has its leaf joined already (the slow part): the command gets that
            # leaf, named by the launcher (v2 cannot rename a cgroup), and the reply says which.
            spare = self.enter_spares.pop(req["sandbox"], None) if req["cgroup"] is not None else None
            if spare is not None and spare.prepared is not None and spare.prepared != prepared_for(req):
                self.kill_spare(spare)  # other ids or rlimits than it became: it cannot serve this one
                spare = None
            live.prepared = prepared_for(req)
            if spare is not None:
                pid = self.hand_to_spare(spare, req, theirs + ([resize_r] if pty is not None else []) + [fd for fd, _ in live.ns_fds])
                leaf = dict(spare.dirs) if pid else {}
            if not pid:
                if req["cgroup"] is not None:
                    for controller, parent in live.dirs.items():
                        path = os.path.join(parent, req["cgroup"]["name"])
                        if path not in leaf.values():
                            os.mkdir(path)  # EEXIST: a leaf of another command is never shared
                        leaf[controller] = path
                procs = sorted({os.path.join(d, "cgroup.procs") for d in leaf.values()})
                pid = os.fork()
                if pid == 0:
                    enter_child(req, live.ns_fds, procs, resize_r, *theirs)
            close_quietly(theirs + [resize_r])
            made = [fd for fd in made if fd not in theirs and fd != resize_r]
            ours = {name: pipes[name][0] for name in ("stdout", "stderr", "status")}
            if pipes["stdin"][1] >= 0:
                ours["stdin"] = pipes["stdin"][1]
            pidfd = os.pidfd_open(pid)
            self.sel.register(pidfd, selectors.EVENT_READ, ("exit", tid, pid))
        except BaseException as e:
            close_quietly(made)
            if pid:
                self.abandon(pid, {})
                self.kill_cgroup(leaf)
            self.remove_dirs(leaf)
            if isinstance(e, OSError):
                raise RequestError("failed", "cannot enter sandbox %d: %s" % (req["sandbox"], e))
            raise
        self.held[tid] = list(ours.values())
        self.running[tid] = pid
        self.commands[tid] = leaf
        if req["cgroup"] is not None:
            self.entered[tid] = req["sandbox"]
        if resize_w >= 0:
            self.terminals[tid] = resize_w
        return {"type": "started", "id": tid, "pid": pid, "fds": ours, "cgroups": leaf or None}

    def hand_to_spare(self, spare: Spare, req: EnterRequest, fds: List[int]) -> int:
        """Gives a command to a sandbox's spare (its fds: stdio, status, the resize pipe of a
        terminal, the namespaces) and returns the spare's pid, now the command's helper; or, if the
        spare is gone or could not join its leaf, ends it and returns 0 (the caller forks one)."""
        try:
            # Made when the last command ended, it has joined by now; one stuck in the attach does
            # not hold up the launcher for longer than a fork of our own would take.
            if not readable(spare.sock.fileno(), SPARE_JOIN_WAIT_S) or spare.sock.recv(1) != b"J":
                raise OSError("the spare could not get ready")
            socket.send_fds(spare.sock, [b"R"], fds)
            spare.sock.sendall(json.dumps(req).encode())
        except OSError:
            self.kill_spare(spare)
            return 0
        spare.sock.close()
        self.sel.unregister(spare.pidfd)
        os.close(spare.pidfd)
        return spare.pid

    def top_up_enter(self, sandbox: int) -> None:
        """Forks the spare helper of a live, pinned sandbox if it has none: a fresh cmd- leaf under
        the sandbox's cgroup that the spare joins while idle (enter_spare_main)."""
        live = self.live.get(sandbox)
        if sandbox in self.enter_spares or live is None or not live.init_alive():
            return
        name = "cmd-" + uuid.uuid4().hex
        dirs: Dict[str, str] = {}
        try:
            for controller, parent in live.dirs.items():
                path = os.path.join(parent, name)
                if path not in dirs.values():
                    os.mkdir(path)
                dirs[controller] = path
            ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        except OSError:
            self.remove_dirs(dirs)
            return  # the next command forks its own helper
        pid = os.fork()
        if pid == 0:
            ours.close()
            enter_spare_main(theirs, sorted({os.path.join(d, "cgroup.procs") for d in dirs.values()}), live.ns_fds, live.prepared)
        theirs.close()
        pidfd = os.pidfd_open(pid)
        spare = Spare(pid, ours, dirs, pidfd, live.prepared)
        self.enter_spares[sandbox] = spare
        self.sel.register(pidfd, selectors.EVENT_READ, ("spare", spare))

    def resize(self, req: Json) -> Json:
        """Tells the relay of terminal req["task"] its new size (it does TIOCSWINSZ, the kernel SIGWINCH)."""
        fd = self.terminals.get(req["task"])
        if fd is None:
            raise RequestError("invalid_request", "%d is not a running command with a terminal (enter with pty)" % req["task"])
        try:
            os.write(fd, RESIZE.pack(req["rows"], req["cols"]))
        except BlockingIOError:
            raise RequestError("failed", "the terminal of %d takes no resizes now (its relay is stuck)" % req["task"])
        except OSError:
            raise RequestError("failed", "the terminal of %d has ended" % req["task"])
        return {"type": "ok", "id": req["id"]}

    def kill_cgroup(self, dirs: Dict[str, str]) -> None:
        """One pass of SIGKILL over a command's leaf (v2: cgroup.kill); the worker repeats it until the leaf is empty."""
        for path in set(dirs.values()):
            try:
                with open(os.path.join(path, "cgroup.kill"), "w") as f:
                    f.write("1")
            except OSError:
                pass  # v1, or a kernel before 5.14
            try:
                with open(os.path.join(path, "cgroup.procs")) as f:
                    pids = [int(p) for p in f.read().split()]
            except OSError:
                pids = []
            for p in pids:
                try:
                    os.kill(p, signal.SIGKILL)
                except OSError:
                    pass

    def abandon(self, pid: int, dirs: Dict[str, str]) -> None:
        """Ends a child whose start failed after the fork, and removes its cgroups."""
        kill_tree(pid)
        try:
            os.waitpid(pid, 0)
        except ChildProcessError:
            pass
        self.remove_dirs(dirs)

    def layout(self, cg: CgroupRequest) -> str:
        return json.dumps([cg["parents"], cg["sparePrefix"]], sort_keys=True)

    def make_spare(self, cg: CgroupRequest) -> Spare:
        name = cg["sparePrefix"] + uuid.uuid4().hex
        dirs: Dict[str, str] = {}
        try:
            for controller, parent in cg["parents"].items():
                path = os.path.join(parent, name)
                if path not in dirs.values():  # v2: one directory serves every controller
                    os.mkdir(path)
                dirs[controller] = path
            ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        except OSError:
            for path in set(dirs.values()):
                os.rmdir(path)
            raise
        pid = os.fork()
        if pid == 0:
            ours.close()
            spare_main(theirs, [os.path.join(d, "cgroup.procs") for d in dirs.values()])
        theirs.close()
        pidfd = os.pidfd_open(pid)
        spare = Spare(pid, ours, dirs, pidfd)
        self.sel.register(pidfd, selectors.EVENT_READ, ("spare", spare))
        return spare

    def take_spare(self, cg: CgroupRequest) -> Spare:
        """A spare, its v1 cgroups renamed from the spare prefix to the task prefix (v2 cannot rename)."""
        ready = self.spares.setdefault(self.layout(cg), [])
        spare = ready.pop(0) if ready else self.make_spare(cg)
        try:
            if spare.sock.recv(1) != b"J":
                raise OSError("a spare could not join its cgroups")
            for controller, path in list(spare.dirs.items()) if cg["rename"] else []:
                renamed = os.path.join(os.path.dirname(path), cg["prefix"] + os.path.basename(path)[len(cg["sparePrefix"]):])
                os.rename(path, renamed)
                spare.dirs[controller] = renamed
        except BaseException:
            self.kill_spare(spare)
            raise
        return spare

    def top_up(self, cg: CgroupRequest) -> None:
        ready = self.spares.setdefault(self.layout(cg), [])
        try:
            while len(ready) < SPARES:
                ready.append(self.make_spare(cg))
        except OSError:
            pass  # the next start makes its own and reports why

    def kill_spare(self, spare: Spare) -> None:
        """Ends a spare that never ran a task and removes its (then empty) cgroups."""
        for ready in self.spares.values():
            if spare in ready:
                ready.remove(spare)
        for sandbox, its in list(self.enter_spares.items()):
            if its is spare:
                del self.enter_spares[sandbox]
        try:
            self.sel.unregister(spare.pidfd)
        except (KeyError, ValueError):
            pass
        if spare.prepared is not None:
            # Told to go (EOF), it ends and reaps its waiting process itself (enter_spare_main).
            spare.sock.close()
            readable(spare.pidfd, SPARE_END_WAIT_S)
        try:
            os.kill(spare.pid, signal.SIGKILL)
        except OSError:
            pass
        try:
            os.waitpid(spare.pid, 0)
        except ChildProcessError:
            pass
        if spare.prepared is not None:
            self.kill_cgroup(spare.dirs)  # its waiting process, if it outlived the spare
        close_quietly([spare.pidfd])
        spare.sock.close()
        self.remove_dirs(spare.dirs)

    def remove_dirs(self, dirs: Dict[str, str]) -> None:
        for path in set(dirs.values()):
            for _ in range(100):
                try:
                    os.rmdir(path)
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    time.sleep(0.001)

    def mount(self, req: Json) -> Json:
        """A tmpfs (nosuid, nodev) with the given options (size, mode, uid, gid) on target."""
        ok = libc.mount(b"cogo-workspace", req["target"].encode(), b"tmpfs", MS_NOSUID | MS_NODEV, req["options"].encode()) == 0
        return self.done(req, ok)

    def umount(self, req: Json) -> Json:
        """Unmounts target; if it is busy, detaches it (freed once the last user goes)."""
        target = req["target"].encode()
        ok = libc.umount2(target, 0) == 0 or (ctypes.get_errno() == errno.EBUSY and libc.umount2(target, MNT_DETACH) == 0)
        return self.done(req, ok)

    def done(self, req: Json, ok: bool) -> Json:
        if not ok:
            e = ctypes.get_errno()
            raise RequestError("failed", "%s %s: %s: %s" % (req["op"], req["target"], errno.errorcode.get(e, str(e)), os.strerror(e)))
        return {"type": "ok", "id": req["id"]}

    def opened(self, req: Json) -> Json:
        close_quietly(self.held.pop(req["task"], []))
        return {"type": "ok", "id": req["id"]}

    def kill(self, req: Json) -> Json:
        pid = self.running.get(req["task"])
        leaf = self.commands.get(req["task"])
        if leaf is not None:
            # A command: its cgroup leaf only, never the sandbox (inner is inside it, and the leaf
            # holds every process the command started).
            self.kill_cgroup(leaf)
        spare = self.enter_spares.get(req["task"])
        if spare is not None:  # a sandbox: its spare goes first, so no command enters it any more
            self.kill_spare(spare)
        if pid is not None:  # else already reaped: the pid may belong to someone else now
            if req.get("inner"):
                try:
                    os.kill(req["inner"], signal.SIGKILL)
                except OSError:
                    pass
            kill_tree(pid)
        return {"type": "ok", "id": req["id"]}

    def filter(self, req: Json) -> Json:
        return {"type": "filter", "id": req["id"], "filter": {**FILTER_INFO, "programs": [base64.b64encode(p).decode() for p in FILTERS]}}

    def reap(self, pidfd: int, tid: int, pid: int) -> None:
        self.sel.unregister(pidfd)
        os.close(pidfd)
        self.running.pop(tid, None)
        self.commands.pop(tid, None)
        close_quietly([self.terminals.pop(tid, -1)])
        live = self.live.pop(tid, None)
        if live:
            live.release()
        spare = self.enter_spares.get(tid)
        if spare:  # never outlives its sandbox: gone, with its leaf, before the exit is reported
            self.kill_spare(spare)
        status: Optional[int] = None
        try:
            _, status = os.waitpid(pid, 0)
        except ChildProcessError:  # reaped elsewhere: the exit status is lost
            pass
        if status is None:
            send({"type": "exit", "task": tid, "exit": None, "signal": signal.SIGKILL})
        elif os.WIFSIGNALED(status):
            send({"type": "exit", "task": tid, "exit": None, "signal": os.WTERMSIG(status)})
        else:
            send({"type": "exit", "task": tid, "exit": os.WEXITSTATUS(status), "signal": None})
        sandbox = self.entered.pop(tid, None)
        if sandbox is not None:
            # The next command's helper, made once this one is over: a cgroup v1 attach takes a
            # lock that every fork waits for, so a spare joining while a command starts slows it.
            self.top_up_enter(sandbox)

    def shutdown(self) -> NoReturn:
        for tid in list(self.running):
            self.kill({"id": 0, "task": tid, "inner": None})
        for ready in list(self.spares.values()):
            for spare in list(ready):
                self.kill_spare(spare)
        for spare in list(self.enter_spares.values()):
            self.kill_spare(spare)
        sys.exit(0)

    def run(self) -> NoReturn:
        self.sel.register(0, selectors.EVENT_READ, ("control",))
        try:
            send(self.hello())
            while True:
                for key, _ in self.sel.select():
                    try:
                        self.event(key)
                    except ChannelClosed:
                        raise
                    except Exception:  # a bug in handling one event: say so, keep serving
                        traceback.print_exc(file=sys.stderr)
        except ChannelClosed:
            self.shutdown()

    def event(self, key: selectors.SelectorKey) -> None:
        kind = key.data[0]
        if kind == "exit":
            self.reap(key.fd, key.data[1], key.data[2])
        elif kind == "spare":  # died unused (killed from outside)
            self.kill_spare(key.data[1])
        else:
            chunk = os.read(0, 1 << 16)
            if not chunk:
                self.shutdown()
            for too_large, frame in self.frames.feed(chunk):
                if too_large or frame.strip():
                    self.handle(frame, too_large)


def main() -> None:
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    # The worker may have died before the prctl: then nobody would ever kill us.
    if os.getppid() != int(sys.argv[1]):
        sys.exit(0)
    # Signals sent to the worker's process group (Ctrl-C, kill -TERM -pgid, systemd) are the
    # worker's to handle: it drains its tasks, then ends us. Forked sandboxes reset these.
    for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT):
        signal.signal(s, signal.SIG_IGN)
    global FILTERS, FILTER_INFO
    try:
        FILTERS, FILTER_INFO = syscall_filter.build(deny_userns="--deny-userns" in sys.argv[2:])
    except Exception as e:  # no filter, no sandboxes
        sys.stderr.write("cogo launcher: cannot build the seccomp filter: %s\n" % e)
        sys.exit(3)
    try:
        server = Server(Protocol(PROTOCOL_FILE))
    except (OSError, ValueError, KeyError) as e:
        sys.stderr.write("cogo launcher: cannot read the protocol (%s): %s\n" % (PROTOCOL_FILE, e))
        sys.exit(4)
    server.run()


if __name__ == "__main__":
    main()
