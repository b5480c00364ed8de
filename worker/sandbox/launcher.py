"""Fork server between the worker and bwrap (see launcher.ts for the protocol).

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

Commands arrive as JSON lines on stdin, replies leave as JSON lines on stdout. EOF on stdin (the
worker died or stopped) kills every sandbox still running and exits; so does the worker's death
(PR_SET_PDEATHSIG), and bwrap's --die-with-parent takes the sandboxes down with us.
"""
import base64
import ctypes
import errno
import fcntl
import json
import os
import resource
import selectors
import signal
import socket
import uuid
import sys
import time

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

PR_SET_PDEATHSIG = 1
MS_NOSUID, MS_NODEV = 2, 4
MNT_DETACH = 2
libc = ctypes.CDLL(None, use_errno=True)
libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p]
libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]
# Fds a child juggles through before landing on 0..3 (never below, so dup2 cannot collide).
HIGH_FD = 64
# Spares kept ready per cgroup layout.
SPARES = 2
# The seccomp programs of every sandbox and what they deny (main() builds them).
FILTERS, FILTER_INFO = [], {}


def reply(msg):
    os.write(1, (json.dumps(msg) + "\n").encode())


def join_cgroups(procs_files):
    for procs in sorted(set(procs_files)):
        with open(procs, "w") as f:
            f.write(str(os.getpid()))


def child(req, stdin_r, out_w, err_w, status_w):
    """Runs in the forked child (already in its cgroups); never returns."""
    try:
        signal.pthread_sigmask(signal.SIG_SETMASK, [])
        # Python ignores SIGPIPE and SIGXFSZ; ignored signals survive exec, so reset every one.
        for s in range(1, signal.NSIG):
            try:
                signal.signal(s, signal.SIG_DFL)
            except (OSError, ValueError):
                pass
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
        for name, soft, hard in req["rlimits"]:
            which = getattr(resource, name)
            cap = resource.getrlimit(which)[1]
            if cap != resource.RLIM_INFINITY:
                soft, hard = min(soft, cap), min(hard, cap)
            resource.setrlimit(which, (soft, hard))
        if req.get("gid") is not None:
            os.setgroups([])
            os.setresgid(req["gid"], req["gid"], req["gid"])
        if req.get("uid") is not None:
            os.setresuid(req["uid"], req["uid"], req["uid"])
        os.chdir("/")
        os.execve(req["path"], req["argv"], req["env"])
    except BaseException as e:  # noqa: BLE001 - anything here means the sandbox cannot start
        try:
            os.write(2, ("cogo launcher: %s\n" % e).encode())
        finally:
            os._exit(125)


def place_data(entries):
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


def spare_main(sock, procs_files):
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
        req = json.loads(b"".join(chunks))
    except BaseException:  # noqa: BLE001
        os._exit(125)
    child(req, *fds)


class Spare:
    def __init__(self, pid, sock, dirs, pidfd):
        self.pid, self.sock, self.dirs, self.pidfd = pid, sock, dirs, pidfd


class Server:
    def __init__(self):
        self.sel = selectors.DefaultSelector()
        self.running = {}  # id -> pid (until reaped)
        self.held = {}  # id -> our copies of the worker's pipe ends (until "opened")
        self.buf = b""
        self.spares = {}  # cgroup layout -> [Spare]

    def start(self, req):
        tid = req["id"]
        pipes = {"stdout": os.pipe(), "stderr": os.pipe(), "status": os.pipe()}
        if req.get("stdin"):
            pipes["stdin"] = os.pipe()
        else:
            fd = os.open("/dev/null", os.O_RDONLY | os.O_CLOEXEC)
            pipes["stdin"] = (fd, -1)
        theirs = [pipes["stdin"][0], pipes["stdout"][1], pipes["stderr"][1], pipes["status"][1]]
        cg = req.get("cgroup")
        dirs = None
        try:
            if cg:
                spare = self.take_spare(cg)
                dirs = spare.dirs
                for name, value in cg["limits"].items():
                    controller = name.split(".")[0]
                    if controller in dirs:
                        try:
                            with open(os.path.join(dirs[controller], name), "w") as f:
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
        except OSError as e:
            for r, w in pipes.values():
                for fd in (r, w):
                    if fd >= 0:
                        os.close(fd)
            if dirs:
                self.kill_spare(spare)
            reply({"id": tid, "error": "cannot start: %s" % e})
            return
        # The child's ends; ours stay until the worker has opened its own copies.
        os.close(pipes["stdin"][0])
        for name in ("stdout", "stderr", "status"):
            os.close(pipes[name][1])
        ours = {name: pipes[name][0] for name in ("stdout", "stderr", "status")}
        if pipes["stdin"][1] >= 0:
            ours["stdin"] = pipes["stdin"][1]
        self.held[tid] = list(ours.values())
        self.running[tid] = pid
        pidfd = os.pidfd_open(pid)
        self.sel.register(pidfd, selectors.EVENT_READ, ("exit", tid, pid))
        reply({"id": tid, "pid": pid, "fds": ours, "cgroups": dirs})
        if cg:
            self.top_up(cg)

    def layout(self, cg):
        return json.dumps([cg["parents"], cg["sparePrefix"]], sort_keys=True)

    def make_spare(self, cg):
        name = cg["sparePrefix"] + uuid.uuid4().hex
        dirs = {}
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

    def take_spare(self, cg):
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
        except OSError:
            self.kill_spare(spare)
            raise
        return spare

    def top_up(self, cg):
        ready = self.spares.setdefault(self.layout(cg), [])
        try:
            while len(ready) < SPARES:
                ready.append(self.make_spare(cg))
        except OSError:
            pass  # the next start makes its own and reports why

    def kill_spare(self, spare):
        """Ends a spare that never ran a task and removes its (then empty) cgroups."""
        for ready in self.spares.values():
            if spare in ready:
                ready.remove(spare)
        try:
            self.sel.unregister(spare.pidfd)
        except (KeyError, ValueError):
            pass
        try:
            os.kill(spare.pid, signal.SIGKILL)
        except OSError:
            pass
        os.waitpid(spare.pid, 0)
        os.close(spare.pidfd)
        spare.sock.close()
        for path in set(spare.dirs.values()):
            for _ in range(100):
                try:
                    os.rmdir(path)
                    break
                except OSError:
                    time.sleep(0.001)

    def mount(self, req):
        """A tmpfs (nosuid, nodev) with the given options (size, mode, uid, gid) on target."""
        ok = libc.mount(b"cogo-workspace", req["target"].encode(), b"tmpfs", MS_NOSUID | MS_NODEV, req["options"].encode()) == 0
        self.done(req, ok)

    def umount(self, req):
        """Unmounts target; if it is busy, detaches it (freed once the last user goes)."""
        target = req["target"].encode()
        ok = libc.umount2(target, 0) == 0 or (ctypes.get_errno() == errno.EBUSY and libc.umount2(target, MNT_DETACH) == 0)
        self.done(req, ok)

    def done(self, req, ok):
        if ok:
            reply({"id": req["id"]})
        else:
            e = ctypes.get_errno()
            reply({"id": req["id"], "error": "%s: %s" % (errno.errorcode.get(e, e), os.strerror(e))})

    def opened(self, req):
        for fd in self.held.pop(req["id"], []):
            os.close(fd)

    def kill(self, req):
        pid = self.running.get(req["id"])
        if pid is None:
            return  # already reaped: the pid may belong to someone else now
        if req.get("inner"):
            try:
                os.kill(req["inner"], signal.SIGKILL)
            except OSError:
                pass
        for target in (lambda: os.killpg(pid, signal.SIGKILL), lambda: os.kill(pid, signal.SIGKILL)):
            try:
                target()
            except OSError:
                pass

    def reap(self, key, tid, pid):
        self.sel.unregister(key.fd)
        os.close(key.fd)
        _, status = os.waitpid(pid, 0)
        del self.running[tid]
        if os.WIFSIGNALED(status):
            reply({"id": tid, "exit": None, "signal": os.WTERMSIG(status)})
        else:
            reply({"id": tid, "exit": os.WEXITSTATUS(status), "signal": None})

    def command(self, line):
        req = json.loads(line)
        op = req.get("op")
        if op == "start":
            self.start(req)
        elif op == "opened":
            self.opened(req)
        elif op == "kill":
            self.kill(req)
        elif op == "mount":
            self.mount(req)
        elif op == "umount":
            self.umount(req)
        elif op == "filter":
            reply({"id": req["id"], "filter": {**FILTER_INFO, "programs": [base64.b64encode(p).decode() for p in FILTERS]}})

    def shutdown(self):
        for tid in list(self.running):
            self.kill({"id": tid})
        for ready in list(self.spares.values()):
            for spare in list(ready):
                self.kill_spare(spare)
        sys.exit(0)

    def run(self):
        self.sel.register(0, selectors.EVENT_READ, ("control",))
        while True:
            for key, _ in self.sel.select():
                if key.data[0] == "exit":
                    self.reap(key, key.data[1], key.data[2])
                    continue
                if key.data[0] == "spare":  # died unused (killed from outside)
                    self.kill_spare(key.data[1])
                    continue
                chunk = os.read(0, 1 << 16)
                if not chunk:
                    self.shutdown()
                self.buf += chunk
                *lines, self.buf = self.buf.split(b"\n")
                for line in lines:
                    if line:
                        self.command(line)


def main():
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
    except Exception as e:  # noqa: BLE001 - no filter, no sandboxes
        sys.stderr.write("cogo launcher: cannot build the seccomp filter: %s\n" % e)
        sys.exit(3)
    Server().run()


if __name__ == "__main__":
    main()
