"""The official YouTube-8M TFRecords as a data source, read directly (no conversion).

`--data`/`--val` of train, evaluate and predict may name a folder of `*.tfrecord`
files or a glob instead of a shard folder. The records give the model the same
tensors as imported shards would (the same bytes, dequantized and padded by the
same code), and carry the official representation and vocabulary, so a model
trained on one evaluates on the other and the compatibility refusals still apply.

Evaluation and prediction read the files in order. Training streams them
(`StreamingRecords`, in `streaming.py`: torch, which only training loads): each epoch
reshuffles the order of the files, splits them over torchrun ranks and DataLoader
workers, and shuffles records through a bounded buffer, so memory is the buffer's, not
a file's. The stream is deterministic in (seed, epoch, rank, worker): `--resume` replays
it from the epoch's start and drops what was already trained on, so the next batches
are those of an uninterrupted run. Every record's CRCs are checked; a corrupt record or
a truncated file is skipped and reported (file, byte offset) in the run's report, and
training goes on.
"""
from __future__ import annotations

import os
import struct
from typing import Iterator

from yt8m import official
from yt8m.errors import DAMAGED, NoUsableData, Problem, UsageError
from yt8m.iterate import batched
from yt8m.representation import OFFICIAL
from yt8m.store import ShardMeta, VideoRecord
from yt8m.tfrecord import FOOTER_BYTES, HEADER_BYTES, TFRecordReader, record_where
from yt8m.vocabulary import Vocabulary

from ..data import Batch, collate, video_item
from .base import DataSource, SourceVideo, Storage, StreamPlan, TrainingFeed


class RecordSource(DataSource):
    """Official TFRecord files as one data set: the files of a folder or glob, their kind
    (frame- or video-level, from the first readable records) and their video count."""

    def __init__(self, pattern: str):
        files = official.find_tfrecords(pattern)
        kind = next((k for k in map(official.peek_kind, files) if k is not None), None)
        if kind is None:  # listed like any damage (every record read, for the report)
            raise NoUsableData(f"{pattern} ({len(files)} TFRecord file(s))",
                               _problems(files))
        self.data_dir, self.files = pattern, files
        self._vocabulary = Vocabulary.official()
        self.meta = ShardMeta(kind, OFFICIAL, self._vocabulary.ref, extra={"source": "tfrecords"})
        self.count = sum(map(count_records, files))  # from the framing alone
        self.refused: list[Problem] = []  # damage is met, and reported, while reading

    @property
    def vocabulary(self) -> Vocabulary:
        return self._vocabulary

    @property
    def storage(self) -> Storage:
        return Storage(len(self.files), "TFRecord file")  # every record carries its CRCs

    def __len__(self) -> int:
        return self.count

    def read(self) -> Iterator[SourceVideo | Problem]:
        """File by file, record by record; a damaged record or file part in its place."""
        for path in self.files:
            reader, seen = TFRecordReader(path), 0
            for offset, data in reader:
                seen = yield from _errors_since(reader, seen)
                video = self.parse(path, offset, data)
                yield video if isinstance(video, Problem) else SourceVideo(self.data_dir, video)
            yield from _errors_since(reader, seen)

    def batches(self, batch_size: int, max_frames: int, workers: int = 0) -> Iterator[Batch]:
        """In order, in this process (`workers` is for shards: a file is read sequentially)."""
        num_classes = self.meta.vocabulary.num_classes
        items = (got if isinstance(got, Problem) else video_item(got.video, num_classes, max_frames)
                 for got in self.read())
        return map(collate, batched(items, batch_size))

    def training_feed(self, plan: StreamPlan, damaged: set[Problem] | None = None
                      ) -> "RecordFeed":
        return RecordFeed(self, plan, damaged)

    def close(self) -> None:
        """Nothing held open: every read opens its files."""

    def parse(self, path: str, offset: int, data: bytes) -> VideoRecord | Problem:
        """One record's video, or what is wrong with it (file, byte offset)."""
        try:
            return official.parse_record(data, self.meta.kind, self.meta.vocabulary.num_classes)
        except official.InvalidRecord as e:
            return Problem(record_where(path, offset), str(e), DAMAGED)


def _errors_since(reader: TFRecordReader, seen: int) -> Iterator[Problem]:
    """The framing errors the reader met after the first `seen`; returns the count."""
    for e in reader.errors[seen:]:
        yield e.problem
    return len(reader.errors)


def _problems(files: list[str]) -> list[Problem]:
    """What is wrong with every record of files in which none could be read."""
    problems = []
    for path in files:
        reader = TFRecordReader(path)
        for offset, data in reader:
            try:
                official.record_kind(data)
            except official.InvalidRecord as e:
                problems.append(Problem(record_where(path, offset), str(e), DAMAGED))
        problems += [e.problem for e in reader.errors]
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


class RecordFeed(TrainingFeed):
    """This rank's endless stream (`StreamingRecords`), from the step the run is at. It has
    no epochs to count usable batches in: too long a stretch of unusable inputs ends it."""

    def __init__(self, source: RecordSource, plan: StreamPlan,
                 damaged: set[Problem] | None = None):
        super().__init__(source, plan, damaged)
        if len(source.files) < plan.world_size:
            raise UsageError(f"{source.data_dir} holds {len(source.files)} TFRecord file(s), fewer "
                             f"than the {plan.world_size} training processes: each process "
                             "reads whole files. Start fewer processes.")
        from torch.utils.data import DataLoader

        from .streaming import StreamingRecords

        # Two passes' worth for every loader process: each has then read a whole share
        # of an epoch (every file gives at least one input) without a usable video.
        self.limit = 2 * max(1, plan.workers) * (len(source) + len(source.files))
        dataset = StreamingRecords(source, plan.max_frames, plan.seed, plan.rank, plan.world_size,
                                   buffer=plan.shuffle_buffer, skip_batches=plan.step,
                                   batch_size=plan.local_batch)
        self.batches = iter(DataLoader(
            dataset, batch_size=plan.local_batch, collate_fn=collate, num_workers=plan.workers,
            pin_memory=plan.device.type == "cuda", prefetch_factor=4 if plan.workers else None))

    def next_pass(self) -> None:
        raise self.stop()  # no process has any file left to read

    def check_progress(self) -> None:
        if self.unusable >= self.limit:
            raise self.stop()
