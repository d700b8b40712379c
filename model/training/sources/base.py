"""The data-source interface: what train, evaluate and predict read, whatever the files.

A `DataSource` is one data set: HDF5 shards (`sources/shards.py`) or the official
YouTube-8M TFRecords read directly (`sources/tfrecords.py`); `open_source` picks
one from the path. Every source says how its features were made (`meta`: kind,
representation, vocabulary, provenance), how many videos it holds in how many files
(`storage`), reads them in order (`read`, `batches`), streams them shuffled for training, resumably
(`training_feed`), and reports what it could not read as a `Problem` (kind DAMAGED),
never by raising: a damaged input is named and the job goes on without it.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Iterator

from yt8m.errors import NoUsableData, Problem
from yt8m.representation import Representation
from yt8m.store import ShardMeta, VideoRecord
from yt8m.vocabulary import Vocabulary

from ..data import Batch

if TYPE_CHECKING:
    import torch


def _cpu() -> torch.device:
    import torch  # only a training feed needs it: reading a source does not load torch
    return torch.device("cpu")


@dataclass(frozen=True)
class SourceVideo:
    """A video read in order, and the file it was read from (for messages)."""

    where: str
    video: VideoRecord


@dataclass(frozen=True)
class Storage:
    """The files a source's videos are stored in, as `verify` sums them up."""

    files: int  # the files read (those refused at open not counted)
    noun: str  # what one is called in messages: "shard", "TFRecord file"
    unchecked: int = 0  # videos stored without a checksum (format-1 shards): read, not verified


@dataclass(frozen=True)
class StreamPlan:
    """How one training process reads its share of the data, from the run's step on."""

    batch_size: int  # the global batch, split over the processes
    seed: int
    step: int  # batches already trained on (a resumed run)
    per_epoch: int  # batches in an epoch
    max_frames: int
    shuffle_buffer: int  # records held for shuffling, per loader process (TFRecords)
    rank: int = 0
    world_size: int = 1
    workers: int = 0  # DataLoader processes
    device: torch.device = field(default_factory=_cpu)

    @property
    def local_batch(self) -> int:
        return self.batch_size // self.world_size


class DataSource(ABC):
    """One data set, as every command reads it (see the module's docstring)."""

    data_dir: str  # the path it was opened from, for messages
    meta: ShardMeta  # kind, representation and vocabulary; `meta.extra`: provenance
    refused: list[Problem]  # inputs refused when the source was opened (damaged shard files)

    @property
    def kind(self) -> str:
        """FRAME or VIDEO (yt8m.store)."""
        return self.meta.kind

    @property
    def representation(self) -> Representation:
        return self.meta.representation

    @property
    @abstractmethod
    def vocabulary(self) -> Vocabulary: ...

    @property
    @abstractmethod
    def storage(self) -> Storage: ...

    @abstractmethod
    def __len__(self) -> int:
        """Videos in the data set (damaged ones included)."""

    @abstractmethod
    def read(self) -> Iterator[SourceVideo | Problem]:
        """Every video in order; a damaged one as its Problem, in its place."""

    @abstractmethod
    def batches(self, batch_size: int, max_frames: int, workers: int = 0) -> Iterator[Batch]:
        """Every video in order as the model reads it, `batch_size` inputs at a time (the
        damaged ones named in `Batch.damaged`)."""

    @abstractmethod
    def training_feed(self, plan: StreamPlan, damaged: set[Problem] | None = None
                      ) -> "TrainingFeed":
        """This process's shuffled batches for training, from `plan.step` on."""

    @abstractmethod
    def close(self) -> None:
        """Release open files (a source reads again after it, reopening them)."""

    def __enter__(self) -> "DataSource":
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


class TrainingFeed(ABC):
    """The batches of a run, from its current step on, pass after pass: only batches with
    videos in them come out; the damaged inputs met are collected in `damaged`. When no
    more can be learned (a whole pass, or too long a stretch, without a usable video),
    NoUsableData names every damaged input met."""

    def __init__(self, source: DataSource, plan: StreamPlan,
                 damaged: set[Problem] | None = None):
        self.source, self.plan = source, plan
        self.damaged = set() if damaged is None else damaged
        self.usable = 0  # batches with videos since the pass began
        self.unusable = 0  # inputs in a row without a usable one
        self.batches: Iterator[Batch] = iter(())

    def __iter__(self) -> "TrainingFeed":
        return self

    def __next__(self) -> Batch:
        while True:
            batch = next(self.batches, None)
            if batch is None:
                self.next_pass()
                continue
            self.damaged.update(batch.damaged)
            if len(batch):
                self.usable, self.unusable = self.usable + 1, 0
                return batch
            self.unusable += len(batch.damaged)
            self.check_progress()

    def stop(self, what: str = "") -> NoUsableData:
        return NoUsableData(f"--data {self.source.data_dir}{what}", sorted(self.damaged))

    @abstractmethod
    def next_pass(self) -> None:
        """The current pass is over: start the next, or raise NoUsableData."""

    @abstractmethod
    def check_progress(self) -> None:
        """After an unusable input: raise NoUsableData when the stretch is too long."""
