"""Publishing files that a reader or a crash never sees half done.

Every file the project writes for others to read (shards, reports, vocabularies,
TFRecords, JSON records) is written under a hidden temporary name beside its final
one, `.<name>.<pid>.<host>.partial`, then published: renamed over the final name, or
hard-linked to a name no one holds yet (a link never replaces, so writers sharing a
folder cannot overwrite each other). No reader lists a `.partial` file, and the pid and
host in the name tell a later run whether its writer still runs, so the leftovers of a
killed writer are swept while a live writer's file is kept.

Also the checks an output folder gets before a job writes into it: writable, and one
writer at a time where a job's files are one set.
"""
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
from typing import IO, Any, Callable, Iterator

from .errors import UsageError

# The host part never holds only digits, so a name also reads unambiguously without it
# (temporary names written before the host was recorded: `.<name>.<pid>.partial`).
_PARTIAL = re.compile(r"\.(?P<name>.+)\.(?P<pid>\d+)(?:\.(?P<host>[A-Za-z0-9_-]*[A-Za-z_-][A-Za-z0-9_-]*))?"
                      r"\.partial")


def host() -> str:
    """This machine's name as it appears in temporary file names."""
    name = re.sub(r"[^A-Za-z0-9_-]", "_", os.uname().nodename)[:32] or "host"
    return name if not name.isdigit() else f"h{name}"[:32]


def partial_name(path: str) -> str:
    """The hidden temporary name this process writes `path` under before publishing it."""
    folder, base = os.path.dirname(path) or ".", os.path.basename(path)
    return os.path.join(folder, f".{base}.{os.getpid()}.{host()}.partial")


@contextmanager
def staged(path: str) -> Iterator[str]:
    """A temporary path (`partial_name(path)`) to write a file under; once the block ends,
    successfully or not, it is gone: published with `publish`, or removed."""
    tmp = partial_name(path)
    try:
        yield tmp
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def publish(tmp: str, path: str, replace: bool = True) -> bool:
    """Give the complete, fsynced file `tmp` its final name `path`, durably (the folder is
    fsynced). replace=True renames it over whatever `path` holds; replace=False hard-links
    it only when `path` is free and returns False, changing nothing, when it is taken."""
    if replace:
        os.replace(tmp, path)
    else:
        try:
            os.link(tmp, path)
        except FileExistsError:
            return False
    fsync_dir(os.path.dirname(path) or ".")
    return True


@contextmanager
def replacing(path: str, mode: str = "w") -> Iterator[IO]:
    """A file to write that replaces `path` only when the block succeeds (see `staged` and
    `publish`). On an error the temporary file is removed and `path` is untouched."""
    with staged(path) as tmp:
        with open(tmp, mode, encoding=None if "b" in mode else "utf-8") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        publish(tmp, path)


def write_json(path: str, data: Any, **dump_options: Any) -> None:
    """`data` as JSON at `path`, atomically (see `replacing`)."""
    with replacing(path) as f:
        json.dump(data, f, **dump_options)
        f.write("\n")


def fsync_dir(path: str) -> None:
    """Make the names created or removed in a folder durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


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
    """Remove the temporary files left in `folder` by writers on this machine that no
    longer run (kill -9, power loss); another machine's are left alone, since its
    processes cannot be checked from here. Returns the files removed."""
    removed = []
    for path in glob.glob(os.path.join(glob.escape(folder), ".*.partial")):
        m = _PARTIAL.fullmatch(os.path.basename(path))
        if m is None or m["host"] not in (None, host()) or process_alive(int(m["pid"])):
            continue
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
def file_lock(path: str, busy: Callable[[IO], None] | None = None) -> Iterator[IO | None]:
    """Hold an advisory lock on `path` (created if needed) for the block, and yield the
    file. When another process holds it, `busy(file)` is called first (it may raise, to
    refuse rather than wait), then this waits. The lock is the kernel's (flock): it goes
    with its holder however that ends, so none is ever stale. Without POSIX there is no
    cross-process lock (None is yielded)."""
    try:
        import fcntl
    except ImportError:
        yield None
        return
    with open(path, "a+") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if busy is not None:
                busy(f)
            fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield f
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


@contextmanager
def exclusive(folder: str, job: str, flag: str = "--out") -> Iterator[None]:
    """Hold `folder/.<job>.lock` for the block: one `job` at a time writes into `folder`.
    A second one gets a UsageError naming the process that holds it, at once (waiting
    would only let it replace the first one's files afterwards)."""
    def refuse(f: IO) -> None:
        f.seek(0)
        holder = f.read().strip() or "a process that has just started"
        raise UsageError(
            f"{flag} {folder} is being written by another `{job}` ({holder}); two runs "
            "into one folder would replace each other's files. Wait for that one to "
            f"finish, or pass another {flag}.")

    with file_lock(os.path.join(folder, f".{job}.lock"), refuse) as f:
        if f is not None:  # say who holds it, for the run refused next
            f.seek(0)
            f.truncate()
            started = datetime.datetime.now().astimezone().isoformat(timespec="seconds")
            f.write(f"pid {os.getpid()} on {socket.gethostname()}, started {started}\n")
            f.flush()
        yield
