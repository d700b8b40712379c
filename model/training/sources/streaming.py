"""Training's stream of official TFRecords (see `tfrecords.py`): a torch IterableDataset,
in its own module so that reading records (evaluate, predict, verify) does not load torch.
DataLoader worker processes import it by this module's path. It reads a `RecordSource`'s
`files` and `parse` without importing `tfrecords.py`, which imports this module when
training starts: the modules import each other in one direction only."""
from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import IterableDataset

from yt8m.errors import Problem
from yt8m.tfrecord import TFRecordReader

from ..data import VideoItem, video_item
from .base import DataSource

SHUFFLE_BUFFER = 1024  # records held for shuffling, per DataLoader worker


class StreamingRecords(IterableDataset):
    """One rank's endless, deterministic stream of VideoItems (and Problems for damage).

    Epoch e: the files in the order of a permutation seeded by (seed, e); rank r of W
    takes files r, r + W, ...; DataLoader worker k of K takes every K-th of those.
    Records pass through a shuffle buffer seeded by (seed, e, r, k). A resumed run
    passes the batches (of `batch_size`) already trained on, `skip_batches`: each
    worker drops its share of them unparsed. `source` is a RecordSource.
    """

    def __init__(self, source: DataSource, max_frames: int, seed: int, rank: int = 0,
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
            yield from (e.problem for e in reader.errors)
        while held:
            yield _take(held, rng)

    def _item(self, record: tuple[str, int, bytes] | Problem) -> VideoItem | Problem:
        if isinstance(record, Problem):
            return record
        video = self.source.parse(*record)
        return video if isinstance(video, Problem) else \
            video_item(video, self.source.meta.vocabulary.num_classes, self.max_frames)


def _take(held: list, rng: np.random.Generator) -> tuple[str, int, bytes]:
    """A random record out of the shuffle buffer."""
    i = int(rng.integers(len(held)))
    held[i], held[-1] = held[-1], held[i]
    return held.pop()
