"""What a shard file must be before anything in it is read (docs/reference.md, "Shards").

A shard can come from anywhere (a copy, a download, someone else's disk), and HDF5
lets a dataset read from outside its file: external raw storage (any path, even a
FIFO that blocks forever), virtual datasets mapping other files, soft and external
links. A dataset can also declare far more data than its file holds (storage never
written reads back as fill values) or unpack a gigabyte from a kilobyte through a
compression filter. So a shard is accepted only in the layout ShardWriter makes:
every dataset a hard link in the root group, stored contiguously inside the file,
unfiltered, of the type and shape the format gives it, its bytes lying within the
file, and the offsets agreeing with the data they index. All of it is checked from
HDF5's metadata before any data is read; then the small index is read and checked.
"""
from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from typing import Any

import h5py
import numpy as np

from .errors import ShardError
from .representation import AUDIO_DIM, FORMAT_VERSION, RGB_DIM

FORMAT = "yt8m-toolkit-shard"
READABLE_VERSIONS = (1, FORMAT_VERSION)
FRAME, VIDEO = "frame", "video"
STRING = "utf-8 string"

# name -> (dtype, shape); a shape's names are lengths known from the index: n (videos),
# n+1 (offsets), and the totals the offsets end at (labels, segments, frames).
_COMMON: dict[str, tuple[Any, tuple]] = {
    "ids": (STRING, ("n",)), "has_audio": (np.bool_, ("n",)),
    "source": (np.int64, ("n", 2)), "crc32c": (np.uint32, ("n",)),
    "labels_offsets": (np.int64, ("n+1",)), "labels": (np.int32, ("labels",)),
    "segments_offsets": (np.int64, ("n+1",)), "segment_start_times": (np.int32, ("segments",)),
    "segment_labels": (np.int32, ("segments",)), "segment_scores": (np.float32, ("segments",)),
}
_BY_KIND = {
    FRAME: {"frame_offsets": (np.int64, ("n+1",)), "rgb": (np.uint8, ("frames", RGB_DIM)),
            "audio": (np.uint8, ("frames", AUDIO_DIM))},
    VIDEO: {"mean_rgb": (np.float32, ("n", RGB_DIM)), "mean_audio": (np.float32, ("n", AUDIO_DIM))},
}
_OPTIONAL = {"crc32c", "source"}  # format 1 has no checksums; early shards no source
_TOTALS = {"labels": "labels_offsets", "segments": "segments_offsets", "frames": "frame_offsets"}


@dataclass(frozen=True)
class FileIdentity:
    """Which file, in which state: a reader reopening a shard must find the same one."""

    device: int
    inode: int
    size: int
    mtime_ns: int

    @classmethod
    def of(cls, st: os.stat_result) -> "FileIdentity":
        return cls(st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)

    def change(self, now: "FileIdentity") -> str | None:
        """How the file at the same path differs now, or None."""
        if (now.device, now.inode) != (self.device, self.inode):
            return "replaced by another file since it was opened"
        if now.size < self.size:
            return f"truncated since it was opened ({now.size} bytes, was {self.size})"
        if now != self:
            return "rewritten since it was opened"
        return None


@dataclass
class ShardIndex:
    """A shard's index, read and checked; frames stay on disk."""

    kind: str
    ids: list[str]
    has_audio: np.ndarray
    checksums: np.ndarray | None
    sources: np.ndarray
    labels: tuple[np.ndarray, np.ndarray]  # offsets, values
    segments: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]  # offsets, starts, labels, scores
    frame_offsets: np.ndarray
    raw: dict[str, tuple[int, int] | None]  # rgb/audio -> (file offset, bytes per row)


def open_shard_file(path: str) -> tuple[h5py.File, FileIdentity]:
    """The HDF5 file of a shard whose layout passed `check_layout`, and its identity."""
    try:
        st = os.stat(path)
    except OSError as e:
        raise ShardError(path, f"cannot read: {e.strerror}") from None
    if not stat.S_ISREG(st.st_mode):
        raise ShardError(path, "not a regular file: not a shard")
    if st.st_size == 0:
        raise ShardError(path, "empty file (0 bytes): not a shard")
    f = _open_h5(path)
    try:
        identity = FileIdentity.of(os.fstat(f.id.get_vfd_handle()))
        _check_format(f, path)
        check_layout(f, path, identity.size)
    except BaseException:
        f.close()
        raise
    return f, identity


def _open_h5(path: str) -> h5py.File:
    try:
        return h5py.File(path, "r")
    except PermissionError:
        raise ShardError(path, "permission denied") from None
    except OSError as e:
        text = str(e)
        if "signature" in text:
            reason = "not an HDF5 file"
        elif "truncated" in text or "eof" in text.lower():
            reason = "truncated HDF5 file (an interrupted copy or download?)"
        else:
            reason = f"unreadable HDF5 file ({text})"
        raise ShardError(path, reason) from None


def _check_format(f: h5py.File, path: str) -> None:
    if f.attrs.get("format") != FORMAT:
        raise ShardError(path, f"an HDF5 file, but not a {FORMAT} (no 'format' attribute)")
    try:
        version = int(f.attrs.get("format_version", -1))
    except (TypeError, ValueError):
        version = -1
    if version not in READABLE_VERSIONS:
        raise ShardError(path, f"shard format version {version}; this toolkit reads "
                               f"versions {', '.join(map(str, READABLE_VERSIONS))}")


def expected_datasets(kind: str) -> dict[str, tuple[Any, tuple]]:
    if kind not in _BY_KIND:
        raise KeyError(f"kind {kind!r}")
    return {**_COMMON, **_BY_KIND[kind]}


def check_layout(f: h5py.File, path: str, file_size: int) -> None:
    """ShardError unless every link is a hard link and every dataset of the format is
    present (optional ones may be absent) with its type, rank and storage as written.

    Reads metadata only: no dataset's data, no link target, no other file."""
    for name in f:
        link = f.get(name, getlink=True)
        if isinstance(link, h5py.ExternalLink):
            raise ShardError(path, f"{name!r} is an external link (to {link.filename}:"
                                   f"{link.path}); a shard keeps all its data inside its file")
        if not isinstance(link, h5py.HardLink):
            raise ShardError(path, f"{name!r} is a soft link; a shard has no links")
    try:
        kind = str(f.attrs["kind"])
        n = int(f.attrs["num_videos"])
        wanted = expected_datasets(kind)
    except (KeyError, TypeError, ValueError) as e:
        raise ShardError(path, f"damaged or incomplete shard ({e})") from None
    for name, (dtype, shape) in wanted.items():
        if name not in f:
            if name in _OPTIONAL:
                continue
            raise ShardError(path, f"damaged or incomplete shard (no {name!r} dataset)")
        ds = f[name]
        problem = None if isinstance(ds, h5py.Dataset) else "not a dataset"
        problem = problem or _storage_problem(ds, file_size) or _type_problem(ds, dtype, shape, n)
        if problem:
            raise ShardError(path, f"dataset {name!r}: {problem}")


def _storage_problem(ds: h5py.Dataset, file_size: int) -> str | None:
    """Why a dataset's data is not plain bytes inside this file, or None."""
    dcpl = ds.id.get_create_plist()
    layout = dcpl.get_layout()
    if layout == h5py.h5d.VIRTUAL:
        return "a virtual dataset (its data would come from other files); not a shard's layout"
    if dcpl.get_external_count():
        where = dcpl.get_external(0)[0].decode(errors="replace")
        return f"stored in an external file ({where}); a shard keeps its data inside its file"
    if dcpl.get_nfilters():
        names = ", ".join(dcpl.get_filter(i)[3].decode(errors="replace") or "unknown"
                          for i in range(dcpl.get_nfilters()))
        return f"passes through filters ({names}); shards are written unfiltered"
    if layout != h5py.h5d.CONTIGUOUS:
        what = {h5py.h5d.CHUNKED: "chunked", h5py.h5d.COMPACT: "compact"}.get(layout, str(layout))
        return f"{what} storage; shards are written contiguous"
    nbytes = int(np.prod(ds.shape, dtype=object)) * ds.id.get_type().get_size()
    if nbytes == 0:
        return None
    offset = ds.id.get_offset()
    if offset is None:
        return f"declares {nbytes} bytes but stores none of them in the file"
    if int(offset) + nbytes > file_size:
        return (f"declares {nbytes} bytes at byte {offset}, past the end of the "
                f"{file_size}-byte file")
    return None


def _type_problem(ds: h5py.Dataset, dtype: Any, shape: tuple, n: int) -> str | None:
    if dtype == STRING:
        info = h5py.check_string_dtype(ds.dtype)
        ok = info is not None and info.length is None
    else:
        ok = ds.dtype == np.dtype(dtype)
    if not ok:
        return f"type {ds.dtype}, expected {dtype if dtype == STRING else np.dtype(dtype)}"
    if len(ds.shape) != len(shape):
        return f"shape {ds.shape}, expected {len(shape)} dimension(s)"
    known = {"n": n, "n+1": n + 1}
    for got, want in zip(ds.shape, shape):
        want = known.get(want, want)
        if isinstance(want, int) and got != want:
            return f"shape {ds.shape} does not match the shard's {n} video(s)"
    return None


def read_index(f: h5py.File, path: str) -> ShardIndex:
    """The index of a shard that passed `check_layout`, with its offsets checked against
    the data they index. ShardError when they disagree."""
    kind = str(f.attrs["kind"])
    n = int(f.attrs["num_videos"])
    offsets = {name: f[name][()] for name in set(_TOTALS.values()) if name in f}
    for total, name in _TOTALS.items():
        if name in offsets:
            _check_offsets(path, name, offsets[name], _length_of(f, kind, total))
    ids = [s.decode("utf-8") if isinstance(s, bytes) else str(s) for s in f["ids"][()]]
    raw = {name: _raw_layout(f[name]) for name in ("rgb", "audio") if kind == FRAME}
    return ShardIndex(
        kind=kind, ids=ids, has_audio=f["has_audio"][()].astype(bool),
        checksums=f["crc32c"][()] if "crc32c" in f else None,
        sources=f["source"][()] if "source" in f else np.full((n, 2), -1, dtype=np.int64),
        labels=(offsets["labels_offsets"], f["labels"][()]),
        segments=(offsets["segments_offsets"], f["segment_start_times"][()],
                  f["segment_labels"][()], f["segment_scores"][()]),
        frame_offsets=offsets.get("frame_offsets", np.zeros(n + 1, dtype=np.int64)), raw=raw)


def _length_of(f: h5py.File, kind: str, total: str) -> int:
    """The first-axis length of every dataset that `total` (labels, segments, frames) sizes."""
    lengths = {f[name].shape[0] for name, (_, shape) in expected_datasets(kind).items()
               if shape[0] == total}
    return lengths.pop() if len(lengths) == 1 else -1


def _check_offsets(path: str, name: str, offsets: np.ndarray, length: int) -> None:
    if length < 0:
        raise ShardError(path, f"damaged shard: the datasets {name} indexes differ in length")
    if offsets[0] != 0 or np.any(np.diff(offsets) < 0) or offsets[-1] != length:
        raise ShardError(path, f"damaged shard: {name!r} does not index its {length} entries "
                               "(its index does not match its data)")


def _raw_layout(ds: h5py.Dataset) -> tuple[int, int] | None:
    """(file offset, bytes per row) of the contiguous frames, None when there are none."""
    offset = ds.id.get_offset()
    return None if offset is None else (int(offset), int(np.prod(ds.shape[1:])))
