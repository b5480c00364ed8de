"""One file operation inside a live sandbox (docs/design/persistent-sandboxes.md §3.6).

The worker runs this as a command of the sandbox (`python3 -I -S -c <this file> <request>`), so
it has the sandbox's uid, seccomp filter, cgroup and mount namespace: it can only ever touch what
the sandbox's own code could. On top of that it never follows a symlink: every path is walked
down from /workspace one component at a time with openat(O_NOFOLLOW | O_DIRECTORY), the rule of
collectFile (worker/sandbox/artifacts.ts), so a symlink a command left (to /etc, or to a
directory outside the workspace) is refused, not followed.

Protocol: argv[1] is the request as JSON, {"op", "path", "recursive", "maxBytes"}; stdin carries
the bytes of a write or of a tar upload; stdout carries the bytes of a read or of a tar download;
the last line on stderr is the outcome, {"ok": true, ...} or {"ok": false, "code", "message"}.
Paths are checked as validateWorkspacePath (functions/_shared/paths.ts) does, again here.
"""
import errno
import json
import os
import stat
import sys
import time
from typing import Any, NoReturn

# subprocess and shutil are imported by the ops that need them: every op pays Python's start-up,
# and on a busy host each import is milliseconds more.

WORKSPACE = '/workspace'
TAR = '/usr/bin/tar'
CHUNK = 1 << 20
PATH_MAX = 4095
NAME_MAX = 255
MAX_DEPTH = 64
MAX_ENTRIES = 10_000
DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


class OpError(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def finish(outcome: dict[str, Any]) -> NoReturn:
    sys.stdout.flush()
    os.write(2, (json.dumps(outcome) + '\n').encode())
    os._exit(0)


def split_path(path: str, allow_root: bool) -> list[str]:
    """validateWorkspacePath's rules; '' or '.' names the workspace itself where allow_root."""
    shown = json.dumps(path[:200])
    if '\0' in path or any(ord(c) < 0x20 or ord(c) == 0x7f for c in path):
        raise OpError('invalid_path', f'workspace path {shown}: contains a control character')
    if '\\' in path:
        raise OpError('invalid_path', f'workspace path {shown}: contains a backslash')
    if path.startswith('/'):
        raise OpError('invalid_path', f'workspace path {shown}: is absolute')
    if len(path.encode()) > PATH_MAX:
        raise OpError('invalid_path', f'workspace path {shown}: is longer than {PATH_MAX} bytes')
    parts = [p for p in path.split('/') if p not in ('', '.')]
    if '..' in parts:
        raise OpError('invalid_path', f"workspace path {shown}: contains '..'")
    if len(parts) > MAX_DEPTH:
        raise OpError('invalid_path', f'workspace path {shown}: is deeper than {MAX_DEPTH} components')
    if any(len(p.encode()) > NAME_MAX for p in parts):
        raise OpError('invalid_path', f'workspace path {shown}: has a component longer than {NAME_MAX} bytes')
    if not parts and not allow_root:
        raise OpError('invalid_path', f'workspace path {shown}: is empty')
    return parts


def os_error(err: OSError, where: str) -> OpError:
    if err.errno in (errno.ENOSPC, errno.EDQUOT):
        return OpError('disk_full', f"{where}: the sandbox's disk is full")
    if err.errno == errno.ENOENT:
        return OpError('not_found', f'{where}: no such file or directory')
    if err.errno in (errno.ELOOP, errno.EMLINK):
        return OpError('symlink', f'{where}: is a symlink (never followed)')
    if err.errno == errno.ENOTDIR:
        return OpError('not_a_directory', f'{where}: a component is not a directory (or is a symlink, never followed)')
    if err.errno == errno.EISDIR:
        return OpError('is_directory', f'{where}: is a directory')
    if err.errno == errno.ENOTEMPTY:
        return OpError('not_empty', f'{where}: directory not empty')
    if err.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return OpError('permission_denied', f'{where}: permission denied')
    if err.errno == errno.EFBIG:
        return OpError('too_large', f"{where}: over the sandbox's file size limit")
    return OpError('io_error', f'{where}: {os.strerror(err.errno or 0)}')


def open_dir(parts: list[str], create: bool) -> int:
    """An fd of /workspace/<parts>, walked without following a symlink; missing ones made if create."""
    fd = os.open(WORKSPACE, DIR_FLAGS)
    for i, part in enumerate(parts):
        where = '/'.join(parts[:i + 1])
        try:
            try:
                child = os.open(part, DIR_FLAGS, dir_fd=fd)
            except FileNotFoundError:
                if not create:
                    raise
                try:
                    os.mkdir(part, 0o755, dir_fd=fd)
                except FileExistsError:
                    pass
                child = os.open(part, DIR_FLAGS, dir_fd=fd)
        except OSError as err:
            raise os_error(err, where) from None
        finally:
            os.close(fd)
        fd = child
    return fd


def iso(ts: float) -> str:
    return time.strftime('%Y-%m-%dT%H:%M:%S', time.gmtime(ts)) + f'.{int(ts * 1000) % 1000:03d}Z'


def entry_type(mode: int) -> str:
    if stat.S_ISLNK(mode):
        return 'symlink'
    if stat.S_ISDIR(mode):
        return 'dir'
    return 'file' if stat.S_ISREG(mode) else 'other'


def op_list(parts: list[str]) -> None:
    fd = open_dir(parts, False)
    entries: list[dict[str, Any]] = []
    truncated = False
    with os.scandir(fd) as it:
        for e in it:
            if len(entries) >= MAX_ENTRIES:
                truncated = True
                break
            try:
                st = e.stat(follow_symlinks=False)
            except OSError:
                continue
            kind = entry_type(st.st_mode)
            info: dict[str, Any] = {
                'name': e.name,
                'path': '/'.join([*parts, e.name]),
                'type': kind,
                'size': st.st_size,
                'mode': stat.S_IMODE(st.st_mode),
                'permissions': stat.filemode(st.st_mode),
                'modifiedTime': iso(st.st_mtime),
            }
            if kind == 'symlink':
                try:
                    info['symlinkTarget'] = os.readlink(e.name, dir_fd=fd)
                except OSError:
                    pass
            entries.append(info)
    entries.sort(key=lambda x: str(x['name']))
    finish({'ok': True, 'entries': entries, 'truncated': truncated})


def op_read(parts: list[str], max_bytes: int) -> None:
    where = '/'.join(parts)
    d = open_dir(parts[:-1], False)
    try:
        # O_NONBLOCK: a FIFO left in the workspace must not hang the read.
        fd = os.open(parts[-1], os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=d)
    except OSError as err:
        raise os_error(err, where) from None
    st = os.fstat(fd)
    if stat.S_ISDIR(st.st_mode):
        raise OpError('is_directory', f'{where}: is a directory (list it, or download it as tar)')
    if not stat.S_ISREG(st.st_mode):
        raise OpError('not_regular', f'{where}: not a regular file')
    if st.st_size > max_bytes:
        raise OpError('too_large', f'{where}: {st.st_size} bytes, over the {max_bytes}-byte cap of one read')
    left = st.st_size
    out = sys.stdout.buffer
    while left > 0:
        chunk = os.read(fd, min(CHUNK, left))
        if not chunk:
            break
        out.write(chunk)
        left -= len(chunk)
    finish({'ok': True, 'size': st.st_size - left})


def op_write(parts: list[str]) -> None:
    where = '/'.join(parts)
    d = open_dir(parts[:-1], True)
    name = parts[-1]
    try:
        existed = True
        if stat.S_ISDIR(os.stat(name, dir_fd=d, follow_symlinks=False).st_mode):
            raise OpError('is_directory', f'{where}: is a directory')
    except FileNotFoundError:
        existed = False
    tmp = f'.cogo-write-{os.getpid()}-{name}'[:NAME_MAX]
    size = 0
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644, dir_fd=d)
        try:
            while True:
                chunk = os.read(0, CHUNK)
                if not chunk:
                    break
                view = memoryview(chunk)
                while view:
                    view = view[os.write(fd, view):]
                size += len(chunk)
        finally:
            os.close(fd)
        # Replaces a file or a symlink itself (rename never follows the target).
        os.rename(tmp, name, src_dir_fd=d, dst_dir_fd=d)
    except OSError as err:
        try:
            os.unlink(tmp, dir_fd=d)
        except OSError:
            pass
        raise os_error(err, where) from None
    finish({'ok': True, 'path': where, 'size': size, 'created': not existed})


def op_remove(parts: list[str], recursive: bool) -> None:
    where = '/'.join(parts)
    d = open_dir(parts[:-1], False)
    name = parts[-1]
    try:
        st = os.stat(name, dir_fd=d, follow_symlinks=False)
        if stat.S_ISDIR(st.st_mode):
            if not recursive:
                raise OpError('is_directory', f'{where}: is a directory; remove it with recursive=true')
            import shutil
            # With dir_fd, rmtree walks by fd and never follows a symlink (Python ≥ 3.11).
            shutil.rmtree(name, dir_fd=d)
        else:
            os.unlink(name, dir_fd=d)
    except OSError as err:
        raise os_error(err, where) from None
    finish({'ok': True, 'path': where})


def tar_failed(rc: int, stderr: bytes, where: str) -> OpError:
    text = stderr.decode(errors='replace').strip()
    if 'No space left' in text or 'Disk quota' in text:
        return OpError('disk_full', f"{where}: the sandbox's disk is full")
    return OpError('tar_failed', f'tar exited with {rc}: {text[-1000:]}')


def op_tar(parts: list[str], upload: bool) -> None:
    import subprocess
    where = '/'.join(parts) or '.'
    os.fchdir(open_dir(parts, upload))
    if upload:
        argv = [TAR, '-x', '--no-same-owner', '--no-same-permissions', '-f', '-']
        r = subprocess.run(argv, stdin=0, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    else:
        r = subprocess.run([TAR, '-c', '-f', '-', '.'], stdin=subprocess.DEVNULL, stdout=1, stderr=subprocess.PIPE)
    if r.returncode != 0:
        raise tar_failed(r.returncode, r.stderr, where)
    finish({'ok': True, 'path': '/'.join(parts)})


def main() -> None:
    path = ''
    try:
        req = json.loads(sys.argv[1])
        op = req['op']
        path = req.get('path', '')
        if not isinstance(path, str):
            raise OpError('invalid_path', 'path must be a string')
        os.umask(0o022)
        if op == 'list':
            op_list(split_path(path, True))
        elif op == 'read':
            op_read(split_path(path, False), int(req['maxBytes']))
        elif op == 'write':
            op_write(split_path(path, False))
        elif op == 'remove':
            op_remove(split_path(path, False), bool(req.get('recursive')))
        elif op in ('tar_get', 'tar_put'):
            op_tar(split_path(path, True), op == 'tar_put')
        else:
            raise OpError('invalid_op', f'unknown op {op!r}')
    except OpError as err:
        finish({'ok': False, 'code': err.code, 'message': err.message})
    except OSError as err:
        e = os_error(err, path)
        finish({'ok': False, 'code': e.code, 'message': e.message})


if __name__ == '__main__':
    main()
