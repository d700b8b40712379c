"""Reading shards: the index in memory, frames read lazily and checked (docs/reference.md, "Shards").

Every video's stored bytes carry a CRC32C written with them (yt8m/shard_writer.py)
and checked on every read: a damaged video raises DamagedVideo naming the shard and
the video instead of being read silently.
"""
from __future__ import annotations

import os
from typing import Iterator

import h5py
import numpy as np

from .errors import DamagedVideo, ShardError, UnreadableVideo
from .record import VideoRecord, stored_checksum
from .representation import AUDIO_DIM, RGB_DIM
from .shard_check import FRAME, VIDEO, FileIdentity, open_shard_file, read_index
from .shard_meta import ShardMeta


class ShardReader:
    """One shard: index in memory, frames read lazily from disk.

    The file's layout and index are checked before anything else is read
    (yt8m/shard_check.py). Safe to hand to DataLoader workers: the HDF5 handle is
    not pickled; each process reopens the file on first use and refuses a file
    that is no longer the one first opened (replaced, truncated, deleted): its
    videos are then reported as unreadable (UnreadableVideo), never misread.
    """

    def __init__(self, path: str):
        self.path = path
        self._h5: h5py.File | None = None
        self._pid = -1
        self.damaged: list[DamagedVideo] = []  # found while iterating
        self._h5, self.identity = open_shard_file(path)
        self._pid = os.getpid()
        try:
            self.meta = ShardMeta.from_attrs(self._h5.attrs)
            index = read_index(self._h5, path)
        except (KeyError, ValueError, TypeError, OSError) as e:
            self.close()
            raise ShardError(path, f"damaged or incomplete shard ({e})") from None
        except ShardError:
            self.close()
            raise
        self.ids, self.has_audio, self.checksums = index.ids, index.has_audio, index.checksums
        self.sources, self.frame_offsets = index.sources, index.frame_offsets
        self._labels, self._segments, self._raw = index.labels, index.segments, index.raw

    def _file(self) -> h5py.File:
        if self._h5 is None or self._pid != os.getpid():
            self._h5, self._pid = None, os.getpid()
            try:
                f, identity = open_shard_file(self.path)
            except ShardError as e:
                raise ShardError(self.path, f"unreadable since it was opened ({e.reason})") from None
            change = self.identity.change(identity)
            if change:
                f.close()
                raise ShardError(self.path, change)
            self._h5 = f
        return self._h5

    def _changed(self) -> str | None:
        """How the file being read differs from when it was opened (rewritten in place,
        truncated), or None."""
        try:
            return self.identity.change(FileIdentity.of(os.fstat(self._file().id.get_vfd_handle())))
        except (OSError, ShardError):
            return None

    def close(self) -> None:
        if self._pid == os.getpid() and self._h5 is not None:
            self._h5.close()
        self._h5 = None

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_h5"], state["_pid"] = None, -1
        return state

    def _rows(self, name: str, a: int, b: int) -> np.ndarray:
        """Frames a..b of `rgb` or `audio`, read with pread from the file opened (the
        same file even if its name now points elsewhere)."""
        layout = self._raw.get(name)
        row_bytes = RGB_DIM if name == "rgb" else AUDIO_DIM
        out = np.empty((b - a, row_bytes), dtype=np.uint8)
        if b == a or layout is None:
            return out[:0]
        fd = self._file().id.get_vfd_handle()
        view, pos = memoryview(out).cast("B"), layout[0] + a * row_bytes
        while len(view):  # pread may return less than asked
            k = os.preadv(fd, [view], pos)
            if k <= 0:
                size = os.fstat(fd).st_size
                raise ShardError(self.path, f"truncated since it was opened ({size} bytes, "
                                            f"was {self.identity.size})")
            view, pos = view[k:], pos + k
        return out

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def n_frames(self) -> np.ndarray:
        return np.diff(self.frame_offsets)

    def labels(self, i: int) -> np.ndarray:
        off, values = self._labels
        return values[off[i]:off[i + 1]]

    def _record(self, i: int, rgb: np.ndarray | None = None, audio: np.ndarray | None = None,
                mean_rgb: np.ndarray | None = None,
                mean_audio: np.ndarray | None = None) -> VideoRecord:
        if self.checksums is not None:
            got = stored_checksum(self.meta.kind, *((rgb, audio) if self.meta.kind == FRAME
                                                    else (mean_rgb, mean_audio)))
            if got != int(self.checksums[i]):
                change = self._changed()  # a file rewritten in place is not disk damage
                raise UnreadableVideo(self.path, self.ids[i], change) if change else \
                    DamagedVideo(self.path, self.ids[i])
        off, starts, seg_labels, scores = self._segments
        s = slice(off[i], off[i + 1])
        return VideoRecord(self.ids[i], self.labels(i), rgb, audio, bool(self.has_audio[i]),
                           starts[s], seg_labels[s], scores[s], mean_rgb, mean_audio,
                           tuple(int(x) for x in self.sources[i]))

    def __getitem__(self, i: int) -> VideoRecord:
        if not -len(self) <= i < len(self):
            raise IndexError(i)
        i %= len(self)
        try:
            if self.meta.kind == VIDEO:
                f = self._file()
                return self._record(i, mean_rgb=f["mean_rgb"][i], mean_audio=f["mean_audio"][i])
            a, b = int(self.frame_offsets[i]), int(self.frame_offsets[i + 1])
            return self._record(i, self._rows("rgb", a, b), self._rows("audio", a, b))
        except DamagedVideo:
            raise
        except (ShardError, OSError) as e:
            raise UnreadableVideo(self.path, self.ids[i], _reason(e)) from None

    def iter_videos(self, block_frames: int = 2048) -> Iterator[VideoRecord]:
        """Sequential iteration reading many videos per disk read.

        Blocks of ~2 MB measured fastest: big enough to amortise the calls, small
        enough that malloc reuses warm memory instead of faulting in new pages.
        Damaged videos are skipped and listed in `self.damaged` (DamagedVideo); when
        the file itself fails (truncated or replaced under the reader), every video
        not yet read is listed as an UnreadableVideo.
        """
        i = 0
        try:
            for step in self._blocks(block_frames):
                i, record = step  # i: the next video to read, should the file fail
                if record is not None:
                    yield record
        except DamagedVideo:
            raise
        except (ShardError, OSError) as e:
            why = _reason(e)
            self.damaged += [UnreadableVideo(self.path, self.ids[k], why)
                             for k in range(i, len(self))]

    def _blocks(self, block_frames: int) -> Iterator[tuple[int, VideoRecord | None]]:
        """(i, video i or None when damaged) in order; i is the next video to read
        while a block is being read."""
        if self.meta.kind == VIDEO:
            f = self._file()
            mean_rgb, mean_audio = f["mean_rgb"][()], f["mean_audio"][()]
            for i in range(len(self)):
                yield i + 1, self._checked(self._record, i, mean_rgb=mean_rgb[i],
                                       mean_audio=mean_audio[i])
            return
        i, n = 0, len(self)
        while i < n:
            j = i + 1  # at least one video per block, however long
            while j < n and self.frame_offsets[j + 1] - self.frame_offsets[i] <= block_frames:
                j += 1
            a, b = int(self.frame_offsets[i]), int(self.frame_offsets[j])
            rgb, audio = self._rows("rgb", a, b), self._rows("audio", a, b)
            for k in range(i, j):
                lo, hi = int(self.frame_offsets[k]) - a, int(self.frame_offsets[k + 1]) - a
                yield k + 1, self._checked(self._record, k, rgb[lo:hi], audio[lo:hi])
            i = j

    def _checked(self, read, *args, **kwargs) -> VideoRecord | None:
        """A record, or None after noting a damaged one in `self.damaged`."""
        try:
            return read(*args, **kwargs)
        except DamagedVideo as e:
            self.damaged.append(e)
            return None


def _reason(e: Exception) -> str:
    return e.reason if isinstance(e, ShardError) else f"read error ({e})"
