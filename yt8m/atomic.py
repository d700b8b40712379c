"""Whole-file writes that a reader or a crash never sees half done, and the checks an
output folder gets before a job writes into it (writable; one writer at a time)."""
from __future__ import annotations


import datetime
import errno
import glob
import json
import os
import re
import socket
import tempfile
from contextlib import contextmanager
from typing import IO, Any, Iterator

from .errors import UsageError


def _partial_name(path: str, pid: int) -> str:
    return os.path.join(os.path.dirname(path) or ".", f".{os.path.basename(path)}.{pid}.partial")


@contextmanager
def replacing(path: str, mode: str = "w") -> Iterator[IO]:
    """A file to write that replaces `path` only when the block succeeds: written under a
    hidden temporary name beside it (per process, so concurrent writers do not collide),
    fsynced, then renamed over `path`. On an error the temporary file is removed."""
    tmp = _partial_name(path, os.getpid())
    try:
        with open(tmp, mode, encoding=None if "b" in mode else "utf-8") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def write_json(path: str, data: Any, **dump_options: Any) -> None:
    """`data` as JSON at `path`, atomically (see `replacing`)."""
    with replacing(path) as f:
        json.dump(data, f, **dump_options)
        f.write("\n")


def process_alive(pid: int) -> bool:
    """Whether a process with this id runs on this machine (another user's counts)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_partials(folder: str) -> list[str]:
    """Remove the temporary files `replacing` left in `folder` when its process was killed
    (kill -9, power loss): those named for a process that no longer runs. Returns them."""
    removed = []
    for path in glob.glob(os.path.join(glob.escape(folder), ".*.partial")):
        m = re.fullmatch(r"\..+\.(\d+)\.partial", os.path.basename(path))
        if m and not process_alive(int(m.group(1))):
            try:
                os.remove(path)
            except FileNotFoundError:  # another process swept it first
                continue
            removed.append(path)
    return removed


_WHY = {errno.EROFS: "it is on a read-only file system",
        errno.EACCES: "permission denied: this user cannot create files there",
        errno.EPERM: "the operating system does not allow creating files there",
        errno.ENOTDIR: "a part of that path is a file, not a folder",
        errno.EEXIST: "it is a file, not a folder",
        errno.ENOSPC: "the disk is full",
        errno.EDQUOT: "the disk quota is used up"}


def writable_folder(path: str, flag: str = "--out") -> None:
    """Create `path` if needed and prove that a file can be made in it, by making one.
    Called before a job starts its work, so that an output folder it cannot use costs
    nothing; a UsageError (exit 2) naming the folder and the reason otherwise."""
    try:
        os.makedirs(path, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".write-test.", dir=path)
        os.close(fd)
        os.remove(probe)
    except OSError as e:
        why = _WHY.get(e.errno, e.strerror or str(e))
        raise UsageError(
            f"{flag} {path}: cannot write there: {why}. Nothing was done. Pass as {flag} a "
            "folder this user can create files in (or a path where one can be made), and "
            "run again.") from None


@contextmanager
def exclusive(folder: str, job: str, flag: str = "--out") -> Iterator[None]:
    """Hold `folder/.<job>.lock` for the block: one `job` at a time writes into `folder`.
    A second one gets a UsageError naming the process that holds it, at once (waiting
    would only let it replace the first one's files afterwards). The lock is the
    kernel's (flock): it goes with its holder, however that ends, so none is ever stale."""
    try:
        import fcntl
    except ImportError:  # not POSIX: no cross-process lock
        yield
        return
    with open(os.path.join(folder, f".{job}.lock"), "a+") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            holder = f.read().strip() or "a process that has just started"
            raise UsageError(
                f"{flag} {folder} is being written by another `{job}` ({holder}); two runs "
                "into one folder would replace each other's files. Wait for that one to "
                f"finish, or pass another {flag}.") from None
        f.seek(0)
        f.truncate()
        started = datetime.datetime.now().astimezone().isoformat(timespec="seconds")
        f.write(f"pid {os.getpid()} on {socket.gethostname()}, started {started}\n")
        f.flush()
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)
