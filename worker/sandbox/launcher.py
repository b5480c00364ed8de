"""Fork server between the worker and bwrap (see launcher.ts for the protocol).

A worker that has grown to hundreds of MiB pays for every fork() it does (page tables are
copied), so it starts this small process once and asks it to start each sandbox. Per request it
creates the pipes, forks, and in the child: new session, joins the task's cgroups, stdio on the
pipes with the status pipe as fd 3 and nothing else open, rlimits, drops to the slot uid/gid,
resets signals, then execs bwrap with only the environment it was given. The worker opens the
read ends through /proc/<this pid>/fd/<n> (the same pipe), then tells us to close ours.

Commands arrive as JSON lines on stdin, replies leave as JSON lines on stdout. EOF on stdin (the
worker died or stopped) kills every sandbox still running and exits; so does the worker's death
(PR_SET_PDEATHSIG), and bwrap's --die-with-parent takes the sandboxes down with us.
"""
import ctypes
import fcntl
import json
import os
import resource
import selectors
import signal
import sys

PR_SET_PDEATHSIG = 1
# Fds a child juggles through before landing on 0..3 (never below, so dup2 cannot collide).
HIGH_FD = 64


def reply(msg):
    os.write(1, (json.dumps(msg) + "\n").encode())


def child(req, stdin_r, out_w, err_w, status_w):
    """Runs in the forked child; never returns."""
    try:
        signal.pthread_sigmask(signal.SIG_SETMASK, [])
        # Python ignores SIGPIPE and SIGXFSZ; ignored signals survive exec, so reset every one.
        for s in range(1, signal.NSIG):
            try:
                signal.signal(s, signal.SIG_DFL)
            except (OSError, ValueError):
                pass
        os.setsid()
        for procs in req["cgroups"]:
            with open(procs, "w") as f:
                f.write(str(os.getpid()))
        high = [fcntl.fcntl(fd, fcntl.F_DUPFD, HIGH_FD) for fd in (stdin_r, out_w, err_w, status_w)]
        for target, fd in enumerate(high):
            os.dup2(fd, target)
        # Everything else, including fds the worker inherited without CLOEXEC (close_range(2)).
        os.closerange(4, 1 << 30)
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


class Server:
    def __init__(self):
        self.sel = selectors.DefaultSelector()
        self.running = {}  # id -> pid (until reaped)
        self.held = {}  # id -> our copies of the worker's pipe ends (until "opened")
        self.buf = b""

    def start(self, req):
        tid = req["id"]
        pipes = {"stdout": os.pipe(), "stderr": os.pipe(), "status": os.pipe()}
        if req.get("stdin"):
            pipes["stdin"] = os.pipe()
        else:
            fd = os.open("/dev/null", os.O_RDONLY | os.O_CLOEXEC)
            pipes["stdin"] = (fd, -1)
        try:
            pid = os.fork()
        except OSError as e:
            for r, w in pipes.values():
                for fd in (r, w):
                    if fd >= 0:
                        os.close(fd)
            reply({"id": tid, "error": "fork failed: %s" % e})
            return
        if pid == 0:
            child(req, pipes["stdin"][0], pipes["stdout"][1], pipes["stderr"][1], pipes["status"][1])
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
        reply({"id": tid, "pid": pid, "fds": ours})

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

    def shutdown(self):
        for tid in list(self.running):
            self.kill({"id": tid})
        sys.exit(0)

    def run(self):
        self.sel.register(0, selectors.EVENT_READ, ("control",))
        while True:
            for key, _ in self.sel.select():
                if key.data[0] == "exit":
                    self.reap(key, key.data[1], key.data[2])
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
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    # The worker may have died before the prctl: then nobody would ever kill us.
    if os.getppid() != int(sys.argv[1]):
        sys.exit(0)
    Server().run()


if __name__ == "__main__":
    main()
