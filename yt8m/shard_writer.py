"""Writing shards: many videos per HDF5 file, ragged, published whole (docs/reference.md, "Shards").

One shard file holds a few hundred videos. Frame-level shards keep every frame of
every video back to back in two contiguous uint8 datasets (`rgb` [F, 1024] and
`audio` [F, 128]) with `frame_offsets` [n + 1] marking where each video starts, so
nothing is padded on disk and a sequential read is one large contiguous read.
Labels and segment labels are ragged the same way (`*_offsets` + values).
Video-level shards hold `mean_rgb` / `mean_audio` float32 rows instead.

A writer fills a shard in memory, writes it in one go under a hidden temporary
name, fsyncs it and publishes it under its final name (yt8m/atomic.py): a killed
writer leaves only a `.partial` file that no reader opens, and a rerun asks
`done_ids` what is already stored. The final name is taken with a hard link, which
never replaces an existing file, so writers sharing a folder (two jobs, or many
machines) cannot overwrite each other's shards: a writer that finds its next number
taken takes the one after.

Every video's stored bytes carry a CRC32C (as TFRecord does), written with them and
checked on every read (yt8m/shard_reader.py).
"""
from __future__ import annotations

import errno
import os
import re
from typing import Any

import h5py
import numpy as np

from .atomic import publish, remove_stale_partials, staged
from .errors import DiskFull, UsageError
from .record import VideoRecord, _empty, stored_checksum
from .representation import AUDIO_DIM, RGB_DIM
from .shard_check import FRAME
from .shard_meta import ShardMeta

SUFFIX = ".h5"


class ShardWriter:
    """Collects videos and writes them as complete shards `<prefix>-<seq>.h5`.

    Each process writing into one folder needs its own `prefix` (for example
    `shard-r0of4`), because a new writer removes the temporary files its prefix
    left behind and numbers its shards after those already there.
    """

    def __init__(self, out_dir: str, meta: ShardMeta, prefix: str = "shard",
                 videos_per_shard: int = 256, max_bytes: int = 256 << 20):
        if not re.fullmatch(r"[A-Za-z0-9_.-]+", prefix):
            raise ValueError(f"bad shard prefix {prefix!r}")
        self.out_dir, self.meta, self.prefix = out_dir, meta, prefix
        self.videos_per_shard, self.max_bytes = videos_per_shard, max_bytes
        os.makedirs(out_dir, exist_ok=True)
        remove_stale_partials(out_dir)  # left by crashed writers on this machine
        self._seq = self._next_free(0)
        self._pending: list[VideoRecord] = []
        self._pending_bytes = 0
        self.written: list[str] = []

    def _next_free(self, seq: int) -> int:
        taken = prefixed_shards(self.out_dir, self.prefix)
        while seq in taken:
            seq += 1
        return seq

    def add(self, video: VideoRecord) -> None:
        _check_record(video, self.meta.kind)
        self._pending.append(video)
        self._pending_bytes += (video.rgb.nbytes + video.audio.nbytes) if self.meta.kind == FRAME \
            else 4 * (RGB_DIM + AUDIO_DIM)
        if len(self._pending) >= self.videos_per_shard or self._pending_bytes >= self.max_bytes:
            self.flush()

    def flush(self) -> str | None:
        """Write what is pending as one complete shard now; returns its path."""
        if not self._pending:
            return None
        needed = shard_bytes_needed(self._pending_bytes, len(self._pending))
        if free_bytes(self.out_dir) < needed:  # never start a write that cannot finish
            raise DiskFull(self.out_dir, free_bytes(self.out_dir), needed)
        with staged(os.path.join(self.out_dir, self.prefix)) as tmp:
            try:
                write_shard(tmp, self._pending, self.meta)
            except OSError as e:
                if free_bytes(self.out_dir) < needed or e.errno in (errno.ENOSPC, errno.EDQUOT):
                    raise DiskFull(self.out_dir, free_bytes(self.out_dir), needed) from None
                raise UsageError(f"{self.out_dir}: cannot write a shard ({e})") from None
            # A name another writer took is skipped, never replaced.
            while not publish(tmp, path := self._path(self._seq), replace=False):
                self._seq = self._next_free(self._seq + 1)
        self._seq += 1
        self._pending, self._pending_bytes = [], 0
        self.written.append(path)
        return path

    def _path(self, seq: int) -> str:
        return os.path.join(self.out_dir, f"{self.prefix}-{seq:05d}{SUFFIX}")

    def close(self) -> None:
        self.flush()

    def __enter__(self) -> "ShardWriter":
        return self

    def __exit__(self, exc_type: Any, *_: Any) -> None:
        # Videos finished before an error are kept; an interrupt (Ctrl-C) too. After a
        # failed write there is nothing to retry.
        if exc_type is None or not issubclass(exc_type, UsageError):
            self.flush()


def prefixed_shards(out_dir: str, prefix: str) -> dict[int, str]:
    """The shards named `<prefix>-NNNNN.h5` in a folder, by number."""
    pattern = re.compile(re.escape(prefix) + r"-(\d+)" + re.escape(SUFFIX))
    return {int(m.group(1)): os.path.join(out_dir, name) for name in os.listdir(out_dir)
            if (m := pattern.fullmatch(name))}


def free_bytes(folder: str) -> int:
    st = os.statvfs(folder)
    return st.f_bavail * st.f_frsize


def shard_bytes_needed(data_bytes: int, videos: int) -> int:
    """Room a shard of `data_bytes` of frames takes, with HDF5's index, ids and labels."""
    return int(data_bytes * 1.05) + 512 * videos + (256 << 10)


def _check_record(v: VideoRecord, kind: str) -> None:
    if kind == FRAME:
        if v.rgb is None or v.audio is None:
            raise ValueError(f"{v.id}: a frame-level record needs rgb and audio")
        if v.rgb.dtype != np.uint8 or v.audio.dtype != np.uint8:
            raise ValueError(f"{v.id}: frames must be uint8 (quantized)")
        if v.rgb.ndim != 2 or v.rgb.shape[1] != RGB_DIM or v.audio.shape != (v.rgb.shape[0], AUDIO_DIM):
            raise ValueError(f"{v.id}: rgb {v.rgb.shape} / audio {v.audio.shape} must be "
                             f"[T, {RGB_DIM}] / [T, {AUDIO_DIM}] with the same T")
    elif v.mean_rgb is None or v.mean_audio is None \
            or np.shape(v.mean_rgb) != (RGB_DIM,) or np.shape(v.mean_audio) != (AUDIO_DIM,):
        raise ValueError(f"{v.id}: a video-level record needs mean_rgb [1024] and mean_audio [128]")


def _stored(v: VideoRecord, kind: str) -> tuple[Any, Any]:
    return (v.rgb, v.audio) if kind == FRAME else (v.mean_rgb, v.mean_audio)


def _offsets(parts: list[np.ndarray]) -> np.ndarray:
    offsets = np.zeros(len(parts) + 1, dtype=np.int64)
    np.cumsum([len(p) for p in parts], out=offsets[1:])
    return offsets


def _values(parts: list[np.ndarray], dtype: Any) -> np.ndarray:
    return np.concatenate(parts).astype(dtype) if parts else _empty(dtype)


def write_shard(path: str, videos: list[VideoRecord], meta: ShardMeta) -> None:
    """Write `videos` as one shard file at `path` (a temporary name: see ShardWriter.flush)
    and fsync it."""
    frames: dict[str, int] = {}  # frame dataset -> file offset, filled after the index
    with h5py.File(path, "w", libver="latest") as f:
        f.attrs.update(meta.to_attrs())
        f.attrs["num_videos"] = len(videos)
        f.create_dataset("ids", data=np.array([v.id for v in videos], dtype=object),
                         dtype=h5py.string_dtype("utf-8"))
        f.create_dataset("has_audio", data=np.array([v.has_audio for v in videos], dtype=bool))
        f.create_dataset("source", data=np.array([v.source for v in videos],
                                                 dtype=np.int64).reshape(-1, 2))
        f.create_dataset("crc32c", data=np.array(
            [stored_checksum(meta.kind, *_stored(v, meta.kind)) for v in videos], dtype=np.uint32))
        labels = [np.asarray(v.labels) for v in videos]
        f.create_dataset("labels_offsets", data=_offsets(labels))
        f.create_dataset("labels", data=_values(labels, np.int32))
        starts = [np.asarray(v.segment_start_times) for v in videos]
        f.create_dataset("segments_offsets", data=_offsets(starts))
        f.create_dataset("segment_start_times", data=_values(starts, np.int32))
        f.create_dataset("segment_labels", data=_values(
            [np.asarray(v.segment_labels) for v in videos], np.int32))
        f.create_dataset("segment_scores", data=_values(
            [np.asarray(v.segment_scores) for v in videos], np.float32))
        if meta.kind == FRAME:
            offsets = _offsets([v.rgb for v in videos])
            f.create_dataset("frame_offsets", data=offsets)
            # Contiguous (unchunked) layout, space allocated now and never
            # filled by HDF5: the frames go in below with plain writes, and a
            # sequential read is one plain read.
            for name, dim in (("rgb", RGB_DIM), ("audio", AUDIO_DIM)):
                dcpl = h5py.h5p.create(h5py.h5p.DATASET_CREATE)
                dcpl.set_alloc_time(h5py.h5d.ALLOC_TIME_EARLY)
                dcpl.set_fill_time(h5py.h5d.FILL_TIME_NEVER)
                ds = f.create_dataset(name, (int(offsets[-1]), dim), np.uint8, dcpl=dcpl)
                frames[name] = ds.id.get_offset() if offsets[-1] else None
        else:
            f.create_dataset("mean_rgb", data=np.stack([v.mean_rgb for v in videos]).astype(np.float32))
            f.create_dataset("mean_audio", data=np.stack([v.mean_audio for v in videos]).astype(np.float32))
    fd = os.open(path, os.O_WRONLY)
    try:
        for name, start in frames.items():
            if start is not None:
                _write_rows(fd, start, [getattr(v, name) for v in videos])
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_rows(fd: int, pos: int, arrays: list[np.ndarray]) -> None:
    """Write arrays back to back at `pos`, many per system call."""
    pending = [memoryview(np.ascontiguousarray(a)).cast("B") for a in arrays if a.size]
    while pending:
        batch = pending[:512]
        k = os.pwritev(fd, batch, pos)
        pos += k
        while k:  # drop what was written, keep the rest of a partly written buffer
            if k >= len(pending[0]):
                k -= len(pending.pop(0))
            else:
                pending[0], k = pending[0][k:], 0
