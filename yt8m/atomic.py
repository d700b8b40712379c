"""Whole-file writes that a reader or a crash never sees half done."""
from __future__ import annotations

import glob
import json
import os
import re
from contextlib import contextmanager
from typing import IO, Any, Iterator


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
