"""Whole-file writes that a reader or a crash never sees half done."""
from __future__ import annotations

import json
import os
from contextlib import contextmanager
from typing import IO, Any, Iterator


@contextmanager
def replacing(path: str, mode: str = "w") -> Iterator[IO]:
    """A file to write that replaces `path` only when the block succeeds: written under a
    hidden temporary name beside it (per process, so concurrent writers do not collide),
    fsynced, then renamed over `path`. On an error the temporary file is removed."""
    tmp = os.path.join(os.path.dirname(path) or ".", f".{os.path.basename(path)}.{os.getpid()}.partial")
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
