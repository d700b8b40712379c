"""The shard store: many videos per HDF5 file, ragged, written atomically (docs/reference.md, "Shards").

One shard file holds a few hundred videos. Frame-level shards keep every frame of
every video back to back in two contiguous uint8 datasets (`rgb` [F, 1024] and
`audio` [F, 128]) with `frame_offsets` [n + 1] marking where each video starts, so
nothing is padded on disk and a sequential read is one large contiguous read.
Labels and segment labels are ragged the same way (`*_offsets` + values).
Video-level shards hold `mean_rgb` / `mean_audio` float32 rows instead.

A writer fills a shard in memory and writes it in one go to a hidden temporary
name, flushes, fsyncs and links it under its final name: a killed writer leaves
only a `.partial` file that no reader opens, and a rerun asks `done_ids` what is
already stored. The final name is taken with a hard link, which never replaces an
existing file, so writers sharing a folder (two jobs, or many machines) cannot
overwrite each other's shards: a writer that finds its next number taken takes
the one after.

Every video's stored bytes carry a CRC32C (as TFRecord does), written with them
and checked on every read: a damaged video raises DamagedVideo naming the shard
and the video instead of being read silently.
"""
from __future__ import annotations

import errno
import glob
import json
import os
import re
from dataclasses import dataclass, field
from typing import Any, Iterator

import h5py
import numpy as np
from crc32c import crc32c as _crc32c

from .errors import DamagedVideo, DiskFull, ShardError, UnreadableVideo, UsageError
from .representation import AUDIO_DIM, FORMAT_VERSION, RGB_DIM, Representation
from .shard_check import FORMAT, FRAME, VIDEO, FileIdentity, open_shard_file, read_index
from .vocabulary import FILENAME as VOCABULARY_FILENAME
from .vocabulary import Vocabulary, VocabularyRef

SUFFIX = ".h5"


def _empty(dtype: Any) -> np.ndarray:
    return np.zeros(0, dtype=dtype)


@dataclass
class VideoRecord:
    """One video as stored: quantized frames (frame-level) or mean features (video-level)."""

    id: str
    labels: np.ndarray = field(default_factory=lambda: _empty(np.int32))
    rgb: np.ndarray | None = None  # uint8 [T, 1024]
    audio: np.ndarray | None = None  # uint8 [T, 128]
    has_audio: bool = True
    segment_start_times: np.ndarray = field(default_factory=lambda: _empty(np.int32))
    segment_labels: np.ndarray = field(default_factory=lambda: _empty(np.int32))
    segment_scores: np.ndarray = field(default_factory=lambda: _empty(np.float32))
    mean_rgb: np.ndarray | None = None  # float32 [1024]
    mean_audio: np.ndarray | None = None  # float32 [128]
    source: tuple[int, int] = (-1, -1)  # the source file's (size, mtime ns) when extracted

    @property
    def n_frames(self) -> int:
        return 0 if self.rgb is None else int(self.rgb.shape[0])


@dataclass(frozen=True)
class ShardMeta:
    """What every shard of one data set records, and what readers compare."""

    kind: str  # FRAME or VIDEO
    representation: Representation
    vocabulary: VocabularyRef
    extra: dict = field(default_factory=dict, hash=False, compare=False)

    def to_attrs(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "kind": self.kind,
            "representation": self.representation.to_json(),
            "vocabulary_name": self.vocabulary.name,
            "vocabulary_sha256": self.vocabulary.fingerprint,
            "num_classes": self.vocabulary.num_classes,
            "extra": json.dumps(self.extra, sort_keys=True),
        }

    @classmethod
    def from_attrs(cls, attrs: Any) -> "ShardMeta":
        return cls(
            kind=str(attrs["kind"]),
            representation=Representation.from_json(str(attrs["representation"])),
            vocabulary=VocabularyRef(str(attrs["vocabulary_name"]),
                                     str(attrs["vocabulary_sha256"]),
                                     int(attrs["num_classes"])),
            extra=json.loads(str(attrs.get("extra", "{}"))),
        )

    def mismatch(self, other: "ShardMeta") -> list[str]:
        """Why data described by `other` cannot be mixed with or fed to this one."""
        problems = []
        if self.kind != other.kind:
            problems.append(f"kind: {self.kind}-level vs {other.kind}-level")
        problems += self.representation.differences(other.representation)
        if self.vocabulary.fingerprint != other.vocabulary.fingerprint:
            problems.append(f"vocabulary: {self.vocabulary.name} ({self.vocabulary.num_classes} "
                            f"classes, {self.vocabulary.fingerprint[:12]}) vs {other.vocabulary.name} "
                            f"({other.vocabulary.num_classes} classes, "
                            f"{other.vocabulary.fingerprint[:12]})")
        return problems


# --------------------------------------------------------------------------- writing

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
        _remove_orphans(out_dir)
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
        tmp = os.path.join(self.out_dir, f".{self.prefix}.{os.getpid()}.{_host()}.partial")
        needed = shard_bytes_needed(self._pending_bytes, len(self._pending))
        if free_bytes(self.out_dir) < needed:  # never start a write that cannot finish
            raise DiskFull(self.out_dir, free_bytes(self.out_dir), needed)
        try:
            try:
                _write_shard(tmp, self._pending, self.meta)
            except OSError as e:
                if free_bytes(self.out_dir) < needed or e.errno in (errno.ENOSPC, errno.EDQUOT):
                    raise DiskFull(self.out_dir, free_bytes(self.out_dir), needed) from None
                raise UsageError(f"{self.out_dir}: cannot write a shard ({e})") from None
            while True:  # link never replaces: a name another writer took is skipped
                path = os.path.join(self.out_dir, f"{self.prefix}-{self._seq:05d}{SUFFIX}")
                try:
                    os.link(tmp, path)
                    break
                except FileExistsError:
                    self._seq = self._next_free(self._seq + 1)
        finally:
            if os.path.exists(tmp):
                os.remove(tmp)
        _fsync_dir(self.out_dir)
        self._seq += 1
        self._pending, self._pending_bytes = [], 0
        self.written.append(path)
        return path

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


def _host() -> str:
    return re.sub(r"[^A-Za-z0-9_-]", "_", os.uname().nodename)[:32] or "host"


def _remove_orphans(out_dir: str) -> None:
    """Temporary files of writers on this machine that are no longer running (a crash)."""
    for path in glob.glob(os.path.join(glob.escape(out_dir), ".*.partial")):
        m = re.fullmatch(r"\..+\.(\d+)\.(.+)\.partial", os.path.basename(path))
        if m is None or m.group(2) != _host():
            continue  # another machine's, or not ours
        try:
            os.kill(int(m.group(1)), 0)
        except ProcessLookupError:
            os.remove(path)
        except PermissionError:
            pass  # alive, another user's


def video_checksum(rgb: np.ndarray, audio: np.ndarray) -> int:
    """CRC32C of a video's stored bytes: its rgb, then its audio (or its mean features)."""
    c = _crc32c(memoryview(np.ascontiguousarray(rgb)).cast("B"))
    return _crc32c(memoryview(np.ascontiguousarray(audio)).cast("B"), c)


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


def _offsets(parts: list[np.ndarray]) -> np.ndarray:
    offsets = np.zeros(len(parts) + 1, dtype=np.int64)
    np.cumsum([len(p) for p in parts], out=offsets[1:])
    return offsets


def _values(parts: list[np.ndarray], dtype: Any) -> np.ndarray:
    return np.concatenate(parts).astype(dtype) if parts else _empty(dtype)


def _write_shard(path: str, videos: list[VideoRecord], meta: ShardMeta) -> None:
    frames: dict[str, int] = {}  # frame dataset -> file offset, filled after the index
    with h5py.File(path, "w", libver="latest") as f:
        f.attrs.update(meta.to_attrs())
        f.attrs["num_videos"] = len(videos)
        f.create_dataset("ids", data=np.array([v.id for v in videos], dtype=object),
                         dtype=h5py.string_dtype("utf-8"))
        f.create_dataset("has_audio", data=np.array([v.has_audio for v in videos], dtype=bool))
        f.create_dataset("source", data=np.array([v.source for v in videos], dtype=np.int64))
        f.create_dataset("crc32c", data=np.array(
            [video_checksum(v.rgb, v.audio) if meta.kind == FRAME else
             video_checksum(np.asarray(v.mean_rgb, np.float32), np.asarray(v.mean_audio, np.float32))
             for v in videos], dtype=np.uint32))
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


def _fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# --------------------------------------------------------------------------- reading

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
            got = video_checksum(rgb, audio) if self.meta.kind == FRAME else \
                video_checksum(np.asarray(mean_rgb, np.float32), np.asarray(mean_audio, np.float32))
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


def shard_paths(data_dir: str) -> list[str]:
    """Complete shards of a folder (temporary `.partial` files are never listed)."""
    return sorted(p for p in glob.glob(os.path.join(glob.escape(data_dir), "*" + SUFFIX))
                  if not os.path.basename(p).startswith("."))


def open_shards(data_dir: str) -> tuple[list[ShardReader], list[ShardError]]:
    """Every readable shard of a folder, and an error for each file that is not one."""
    readers, errors = [], []
    for path in shard_paths(data_dir):
        try:
            readers.append(ShardReader(path))
        except ShardError as e:
            errors.append(e)
    return readers, errors


def done_ids(out_dir: str) -> set[str]:
    """Ids already stored in complete shards of `out_dir` (for resuming a job)."""
    return set(stored_sources(out_dir))


def stored_sources(out_dir: str) -> dict[str, list[tuple[str, tuple[int, int]]]]:
    """id -> [(shard path, the source's (size, mtime ns) when it was extracted), ...]."""
    if not os.path.isdir(out_dir):
        return {}
    readers, _ = open_shards(out_dir)
    found: dict[str, list[tuple[str, tuple[int, int]]]] = {}
    for r in readers:
        for video_id, source in zip(r.ids, r.sources):
            found.setdefault(video_id, []).append((r.path, (int(source[0]), int(source[1]))))
        r.close()
    return found


def remove_videos(path: str, ids: set[str]) -> None:
    """Rewrite a shard without `ids` (stale copies of changed files), atomically; a shard
    left with no video is removed."""
    reader = ShardReader(path)
    try:
        keep = [v for v in reader.iter_videos() if v.id not in ids]
        meta = reader.meta
    finally:
        reader.close()
    if not keep:
        os.remove(path)
    else:
        name = f".{os.path.basename(path)}.{os.getpid()}.{_host()}.partial"
        tmp = os.path.join(os.path.dirname(path), name)
        _write_shard(tmp, keep, meta)
        os.replace(tmp, path)
    _fsync_dir(os.path.dirname(path) or ".")


class ShardSet:
    """All shards of a folder as one indexable collection of videos.

    Refuses folders whose shards were made differently from each other, and
    (strict=True) folders holding any damaged shard.
    """

    def __init__(self, data_dir: str, strict: bool = True):
        if not os.path.isdir(data_dir):
            raise UsageError(f"{data_dir}: no such folder. Make shards first with "
                             "`python pipeline.py extract --videos DIR` or `import-yt8m`.")
        self.data_dir = data_dir
        self.shards, self.errors = open_shards(data_dir)
        if self.errors and strict:
            raise self.errors[0]
        if not self.shards:
            raise UsageError(f"{data_dir}: no shards (*.h5) here. Make them first with "
                             "`python pipeline.py extract --videos DIR` or `import-yt8m`.")
        self.meta = self.shards[0].meta
        for r in self.shards[1:]:
            problems = self.meta.mismatch(r.meta)
            if problems:
                raise ShardError(r.path, f"made differently from {self.shards[0].path}: "
                                 + "; ".join(problems))
        self._starts = np.cumsum([0] + [len(r) for r in self.shards])

    def __len__(self) -> int:
        return int(self._starts[-1])

    def locate(self, i: int) -> tuple[ShardReader, int]:
        if not 0 <= i < len(self):
            raise IndexError(i)
        s = int(np.searchsorted(self._starts, i, side="right")) - 1
        return self.shards[s], i - int(self._starts[s])

    def __getitem__(self, i: int) -> VideoRecord:
        shard, j = self.locate(i)
        return shard[j]

    def __iter__(self) -> Iterator[VideoRecord]:
        for r in self.shards:
            yield from r.iter_videos()

    @property
    def ids(self) -> list[str]:
        return [v for r in self.shards for v in r.ids]

    @property
    def damaged(self) -> list[DamagedVideo]:
        """Damaged videos met so far while iterating."""
        return [e for r in self.shards for e in r.damaged]

    @property
    def n_frames(self) -> np.ndarray:
        return np.concatenate([r.n_frames for r in self.shards])

    def labels(self, i: int) -> np.ndarray:
        shard, j = self.locate(i)
        return shard.labels(j)

    @property
    def vocabulary(self) -> Vocabulary:
        """The folder's vocabulary.csv, checked against what the shards record."""
        path = os.path.join(self.data_dir, VOCABULARY_FILENAME)
        ref = self.meta.vocabulary
        if not os.path.exists(path):
            # Official data without its vocabulary file still has ids to name.
            return Vocabulary([""] * ref.num_classes, name=ref.name)
        vocab = Vocabulary.load(path, name=ref.name)
        if vocab.fingerprint != ref.fingerprint:
            raise UsageError(f"{path} is not the vocabulary the shards in {self.data_dir} were "
                             f"made with ({ref.name}, {ref.num_classes} classes). Restore it.")
        return vocab

    def close(self) -> None:
        for r in self.shards:
            r.close()
