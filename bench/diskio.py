"""Disk helpers the benchmarks share: read files through, and evict them from the page cache."""
from __future__ import annotations

import os


def read_through(paths: list[str]) -> None:
    """Read every byte in 1 MB blocks, unbuffered: the raw-read baseline the loaders are held to."""
    for path in paths:
        with open(path, "rb", buffering=0) as f:
            while f.read(1 << 20):
                pass


def drop_cache(paths: list[str]) -> None:
    """Evict the files from the page cache (no root needed), so the next read hits the disk."""
    for path in paths:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)
