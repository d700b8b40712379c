"""A folder of shards: listing, opening, resuming, rewriting, and reading it as one data set."""
from __future__ import annotations

import glob
import os
from typing import Iterator

import numpy as np

from .atomic import fsync_dir, publish, staged
from .errors import DamagedVideo, NoUsableData, Problem, ShardError, UsageError
from .record import VideoRecord
from .shard_reader import ShardReader
from .shard_writer import SUFFIX, write_shard
from .vocabulary import FILENAME as VOCABULARY_FILENAME
from .vocabulary import Vocabulary


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


def remove_videos(path: str, ids: set[str]) -> list[Problem]:
    """Rewrite a shard without `ids` (stale copies of changed files), atomically; a shard
    left with no video is removed. A shard with damaged videos is left as it is (rewriting
    it would drop them unreported) and their problems are returned."""
    reader = ShardReader(path)
    try:
        keep = [v for v in reader.iter_videos() if v.id not in ids]
        damaged = [e.problem for e in reader.damaged]
        meta = reader.meta
    finally:
        reader.close()
    if damaged:
        return damaged
    if keep:
        with staged(path) as tmp:
            write_shard(tmp, keep, meta)
            publish(tmp, path)
    else:
        os.remove(path)
        fsync_dir(os.path.dirname(path) or ".")
    return []


class ShardSet:
    """All shards of a folder as one indexable collection of videos.

    Refuses folders whose shards were made differently from each other, and
    (strict=True) folders holding any damaged shard; otherwise the damaged shards are
    left out, listed in `errors` (NoUsableData when no shard is left).
    """

    def __init__(self, data_dir: str, strict: bool = True):
        if not os.path.isdir(data_dir):
            raise UsageError(f"{data_dir}: no such folder. Make shards first with "
                             "`python pipeline.py extract --videos DIR` or `import-yt8m`.")
        self.data_dir = data_dir
        self.shards, self.errors = open_shards(data_dir)
        if self.errors and strict:
            raise self.errors[0]
        if self.errors and not self.shards:  # every file refused: each one named
            raise NoUsableData(f"{data_dir} ({len(self.errors)} shard file(s))",
                               [e.problem for e in self.errors])
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
