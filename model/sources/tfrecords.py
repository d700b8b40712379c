"""The official YouTube-8M TFRecords as a data source, read directly (no conversion).

`--data`/`--val` of train, evaluate and predict may name a folder of `*.tfrecord`
files or a glob instead of a shard folder. The records give the model the same
tensors as imported shards would (the same bytes, dequantized and padded by the
same code), and carry the official representation and vocabulary, so a model
trained on one evaluates on the other and the compatibility refusals still apply.

Evaluation and prediction read the files in order. Training streams them
(`StreamingRecords`): each epoch reshuffles the order of the files, splits them
over torchrun ranks and DataLoader workers, and shuffles records through a
bounded buffer, so memory is the buffer's, not a file's. The stream is
deterministic in (seed, epoch, rank, worker): `--resume` replays it from the
epoch's start and drops what was already trained on, so the next batches are
those of an uninterrupted run. Every record's CRCs are checked; a corrupt record
or a truncated file is skipped and reported (file, byte offset) in the run's
report, and training goes on.
"""
from __future__ import annotations

import glob
import os
import struct
from dataclasses import dataclass
from typing import Iterator

import numpy as np
import torch

from yt8m import official
from yt8m.representation import OFFICIAL
from yt8m.store import ShardMeta, VideoRecord
from yt8m.tfrecord import FOOTER_BYTES, HEADER_BYTES, TFRecordReader
from yt8m.vocabulary import Vocabulary

from .data import NoUsableData, VideoItem, multi_hot

SHUFFLE_BUFFER = 1024  # records held for shuffling, per DataLoader worker


def is_records(path: str) -> bool:
    """A folder holding *.tfrecord files, or a glob / file naming TFRecords."""
    if os.path.isdir(path):
        return bool(glob.glob(os.path.join(glob.escape(path), "*.tfrecord")))
    return ".tfrecord" in path or any(ch in path for ch in "*?[")


@dataclass(frozen=True)
class RecordProblem:
    """A damaged record or file met while reading: reported, never trained on."""

    where: str  # "file (byte N)"
    reason: str


@dataclass
class RecordSource:
    """Official TFRecord files as one data set: what a model checks, and how many videos."""

    data_dir: str  # the --data argument, for messages
    files: list[str]
    meta: ShardMeta
    vocabulary: Vocabulary
    count: int  # videos (records) in all files, counted from the framing

    def __len__(self) -> int:
        return self.count


def open_records(pattern: str) -> RecordSource:
    """The files of a folder or glob, their kind (frame- or video-level) and video count."""
    from yt8m.importer import find_inputs, peek_kind

    files = find_inputs(pattern)
    kind = next((k for k in map(peek_kind, files) if k is not None), None)
    if kind is None:  # listed like any damage (every record read, for the report)
        raise NoUsableData(f"{pattern} ({len(files)} TFRecord file(s))",
                           [(p.where, p.reason) for p in _problems(files)])
    vocabulary = Vocabulary.official()
    meta = ShardMeta(kind, OFFICIAL, vocabulary.ref, extra={"source": "tfrecords"})
    return RecordSource(pattern, files, meta, vocabulary, sum(map(count_records, files)))


def _problems(files: list[str]) -> list[RecordProblem]:
    """What is wrong with every record of files in which none could be read."""
    problems = []
    for path in files:
        reader = TFRecordReader(path)
        for offset, data in reader:
            try:
                official.record_kind(data)
            except official.InvalidRecord as e:
                problems.append(RecordProblem(f"{path} (byte {offset})", str(e)))
        problems += [RecordProblem(f"{path} (byte {e.offset})", e.reason) for e in reader.errors]
    return problems


def count_records(path: str) -> int:
    """Records in a file, from the length fields alone (the data is skipped, not read)."""
    n, size = 0, os.path.getsize(path)
    with open(path, "rb") as f:
        pos = 0
        while pos + HEADER_BYTES <= size:
            length = struct.unpack("<Q", f.read(8))[0]
            pos += HEADER_BYTES + length + FOOTER_BYTES
            if pos > size:
                break
            n += 1
            f.seek(pos)
    return n


def _video(source: RecordSource, path: str, offset: int, data: bytes) -> VideoRecord | RecordProblem:
    """One record's video, or what is wrong with it (file, byte offset)."""
    try:
        return official.parse_record(data, source.meta.kind, source.meta.vocabulary.num_classes)
    except official.InvalidRecord as e:
        return RecordProblem(f"{path} (byte {offset})", str(e))


def to_item(video: VideoRecord, num_classes: int, max_frames: int, index: int = -1) -> VideoItem:
    """A record as the model reads it: what ShardDataset gives for the same video."""
    labels = multi_hot(video.labels, num_classes)
    if video.rgb is None:
        return VideoItem(index, video.mean_rgb, video.mean_audio, labels)
    return VideoItem(index, video.rgb[:max_frames], video.audio[:max_frames], labels)


def read_in_order(source: RecordSource, max_frames: int
                  ) -> Iterator[tuple[VideoRecord, VideoItem] | RecordProblem]:
    """Every record of every file, in order (evaluation, prediction)."""
    for path in source.files:
        reader = TFRecordReader(path)
        for offset, data in reader:
            video = _video(source, path, offset, data)
            yield video if isinstance(video, RecordProblem) else \
                (video, to_item(video, source.meta.vocabulary.num_classes, max_frames))
        for e in reader.errors:
            yield RecordProblem(f"{path} (byte {e.offset})", e.reason)


class StreamingRecords(torch.utils.data.IterableDataset):
    """One rank's endless, deterministic stream of VideoItems (and RecordProblems).

    Epoch e: the files in the order of a permutation seeded by (seed, e); rank r of W
    takes files r, r + W, ...; DataLoader worker k of K takes every K-th of those.
    Records pass through a shuffle buffer seeded by (seed, e, r, k). A resumed run
    passes the batches (of `batch_size`) already trained on, `skip_batches`: each
    worker drops its share of them unparsed.
    """

    def __init__(self, source: RecordSource, max_frames: int, seed: int, rank: int = 0,
                 world_size: int = 1, buffer: int = SHUFFLE_BUFFER, skip_batches: int = 0,
                 batch_size: int = 1):
        self.source, self.max_frames, self.seed = source, max_frames, seed
        self.rank, self.world_size, self.buffer = rank, world_size, buffer
        self.skip_batches, self.batch_size = skip_batches, batch_size

    def _files(self, epoch: int, worker: int, workers: int) -> list[str]:
        order = np.random.default_rng([self.seed, epoch]).permutation(len(self.source.files))
        mine = [self.source.files[i] for i in order][self.rank::self.world_size]
        return mine[worker::workers]

    def __iter__(self):
        info = torch.utils.data.get_worker_info()
        worker, workers = (info.id, info.num_workers) if info else (0, 1)
        # Workers beyond this rank's file count have nothing to read in any epoch (each
        # epoch only reorders the files): they end at once rather than loop over nothing,
        # and the DataLoader takes batches round-robin from the `live` others.
        live = min(workers, len(self.source.files[self.rank::self.world_size]))
        if worker >= live:
            return
        # Batch b of the stream is worker b % live's. A DataLoader starts at worker 0, so
        # after `skip_batches` this worker plays the part of worker `role`, whose batches
        # role, role + live, ... before that point were already trained on.
        role = (worker + self.skip_batches) % live
        skip = max(0, -(-(self.skip_batches - role) // live)) * self.batch_size
        epoch = 0
        while True:
            for record in self._records(epoch, role, workers):
                if skip:
                    skip -= 1
                    continue
                yield self._item(record)
            epoch += 1

    def _epoch(self, epoch: int, worker: int, workers: int):
        """One worker's share of one epoch, parsed."""
        return map(self._item, self._records(epoch, worker, workers))

    def _records(self, epoch: int, worker: int, workers: int):
        """Raw records (path, offset, bytes) through the shuffle buffer, and problems."""
        rng = np.random.default_rng([self.seed, epoch, self.rank, worker])
        held: list[tuple[str, int, bytes]] = []
        for path in self._files(epoch, worker, workers):
            reader = TFRecordReader(path)
            for offset, data in reader:
                held.append((path, offset, data))
                if len(held) >= self.buffer:
                    yield _take(held, rng)
            for e in reader.errors:
                yield RecordProblem(f"{path} (byte {e.offset})", e.reason)
        while held:
            yield _take(held, rng)

    def _item(self, record) -> VideoItem | RecordProblem:
        if isinstance(record, RecordProblem):
            return record
        video = _video(self.source, *record)
        return video if isinstance(video, RecordProblem) else \
            to_item(video, self.source.meta.vocabulary.num_classes, self.max_frames)


def _take(held: list, rng: np.random.Generator) -> tuple[str, int, bytes]:
    """A random record out of the shuffle buffer."""
    i = int(rng.integers(len(held)))
    held[i], held[-1] = held[-1], held[i]
    return held.pop()
