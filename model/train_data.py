"""What `train` reads: its data sets, checked at start, and the batches of the loop.

Every loop over the data ends. At start, a data set (`--data` or `--val`) in which
no video can be read is refused at once (`check_usable`), without an epoch of
empty batches. During the run, `Feed` hands out only batches with videos in them:
an epoch of shards that yields none, or, from TFRecords (one endless stream), a
stretch of unusable inputs longer than two whole passes over the data, raises
`NoUsableData`, and the run ends with its report (exit 3).
"""
from __future__ import annotations

from typing import Iterator

import torch

from yt8m.errors import DamagedVideo, UsageError
from yt8m.store import VIDEO, ShardSet

from .config import ModelConfig, TrainConfig
from .data import Batch, EpochBatchSampler, NoUsableData, ShardDataset, collate, damage_entry
from .records import (RecordProblem, RecordSource, StreamingRecords, is_records, open_records,
                      read_in_order)

def step_seed(seed: int, rank: int, step: int) -> int:
    return (seed * 1_000_003 + rank * 7919 + step) % (2 ** 63)


def open_training_data(path: str, what: str) -> "ShardSet | RecordSource":
    """Shards, or official TFRecords read directly (a folder of *.tfrecord or a glob)."""
    if is_records(path):
        return open_records(path)
    shards = ShardSet(path)  # UsageError when the folder is missing or holds no shards
    if len(shards) == 0:
        raise UsageError(f"{path}: the shards hold no videos. Run `python pipeline.py extract` "
                         f"or `import-yt8m` first to make {what} data.")
    return shards


def check_model_fits_data(config: ModelConfig, shards: "ShardSet | RecordSource") -> None:
    """UsageError unless the model reads the data's kind (frame- or video-level)."""
    video_data = shards.meta.kind == VIDEO
    if config.video_level != video_data:
        kind = "video-level" if video_data else "frame-level"
        choices = "logistic or moe" if video_data else \
            "nextvlad, mix-nextvlad, netvlad, dbof or mean-logistic"
        raise UsageError(f"--model {config.name} cannot train on {shards.data_dir}, which holds "
                         f"{kind} shards; use --model {choices}.")


def check_labelled(data: "ShardSet | RecordSource") -> None:
    """A vocabulary of no classes (shards extracted without --labels) would make a model
    with no outputs: refused before anything is built."""
    if len(data.vocabulary) == 0:
        raise UsageError(
            f"{data.data_dir}: these shards carry no labels (their vocabulary has no classes), "
            "so there is nothing to train towards. Extract the videos with `--labels CSV` "
            "(header video,labels; see `python pipeline.py extract --help`), or import labelled "
            "YouTube-8M TFRecords; unlabelled shards are input for predict and classify only.")


def open_data(tc: TrainConfig, mc: ModelConfig, resumed=None
              ) -> "tuple[ShardSet | RecordSource, ShardSet | RecordSource | None]":
    """Training (and validation) data, checked against the model and the resumed run
    (a checkpoint.Checkpoint); sets the model's number of classes from the data."""
    shards = open_training_data(tc.data, "training")
    check_model_fits_data(mc, shards)
    check_labelled(shards)
    mc.num_classes = len(shards.vocabulary)
    if resumed is not None:
        problems = resumed.representation.differences(shards.meta.representation)
        if problems or resumed.vocabulary.fingerprint != shards.vocabulary.fingerprint:
            raise UsageError(f"cannot resume on {tc.data}: its shards differ from the run's training "
                             f"data ({'; '.join(problems) or 'vocabulary differs'}).")
    val = open_training_data(tc.val, "validation") if tc.val else None
    if val is not None:
        check_model_fits_data(mc, val)
        if val.meta.mismatch(shards.meta):
            raise UsageError(f"--val {tc.val} was made differently from --data {tc.data}: "
                             + "; ".join(val.meta.mismatch(shards.meta)))
    return shards, val


def check_usable(data: "ShardSet | RecordSource", what: str, max_frames: int) -> None:
    """NoUsableData (listing every damaged input) unless some video of `data` reads; stops
    at the first that does, so a sound data set costs one video."""
    damaged: list[tuple[str, str]] = []
    if isinstance(data, RecordSource):
        for got in read_in_order(data, max_frames):
            if not isinstance(got, RecordProblem):
                return
            damaged.append(damage_entry(got))
    else:
        for i in range(len(data)):
            try:
                data[i]
                return
            except DamagedVideo as e:
                damaged.append(damage_entry(e))
    raise NoUsableData(f"{what} {data.data_dir}", damaged)


class Feed:
    """The batches of a run, from its current step on, epoch after epoch; only batches
    with videos in them come out. The damaged inputs met are collected in `damaged`."""

    def __init__(self, data: "ShardSet | RecordSource", tc: TrainConfig, ddp, device: torch.device,
                 step: int, per_epoch: int, damaged: set[tuple[str, str]] | None = None):
        self.data, self.tc, self.ddp, self.device = data, tc, ddp, device
        self.damaged = set() if damaged is None else damaged
        self.usable = 0  # batches with videos since the epoch began (shards)
        self.unusable = 0  # inputs in a row without a usable one (TFRecords)
        if isinstance(data, RecordSource):
            if len(data.files) < ddp.world_size:
                raise UsageError(f"{data.data_dir} holds {len(data.files)} TFRecord file(s), fewer "
                                 f"than the {ddp.world_size} training processes: each process "
                                 "reads whole files. Start fewer processes.")
            # Two passes' worth for every loader process: each has then read a whole share
            # of an epoch (every file gives at least one input) without a usable video.
            self.limit = 2 * max(1, tc.workers) * (len(data) + len(data.files))
            self.batches = self._stream(step)
        else:
            self.epoch, start = divmod(step, per_epoch)
            self.whole_epoch = start == 0  # a resumed run's first epoch is only its rest
            self.batches = self._epoch(start)

    def __next__(self) -> Batch:
        while True:
            batch = next(self.batches, None)
            if batch is None:
                self._next_epoch()
                continue
            self.damaged.update(batch.damaged)
            if len(batch):
                self.usable, self.unusable = self.usable + 1, 0
                return batch
            self.unusable += len(batch.damaged)
            if isinstance(self.data, RecordSource) and self.unusable >= self.limit:
                raise NoUsableData(f"--data {self.data.data_dir}", sorted(self.damaged))

    def _next_epoch(self) -> None:
        if isinstance(self.data, RecordSource):  # no process has any file left to read
            raise NoUsableData(f"--data {self.data.data_dir}", sorted(self.damaged))
        usable = self.usable
        if self.ddp.world_size > 1:  # every rank stops, or none
            import torch.distributed as dist
            total = torch.tensor([usable], device=self.device)
            dist.all_reduce(total)
            usable = int(total.item())
        if usable == 0 and self.whole_epoch:
            raise NoUsableData(f"--data {self.data.data_dir} (epoch {self.epoch})",
                               sorted(self.damaged))
        self.epoch, self.usable, self.whole_epoch = self.epoch + 1, 0, True
        self.batches = self._epoch(0)

    def _epoch(self, start: int) -> Iterator[Batch]:
        """The batches of the current epoch from its `start`-th on."""
        tc = self.tc
        sampler = EpochBatchSampler(len(self.data), tc.batch_size, tc.seed, self.epoch,
                                    self.ddp.rank, self.ddp.world_size, start)
        return iter(torch.utils.data.DataLoader(
            ShardDataset(self.data, tc.max_frames), batch_sampler=sampler, collate_fn=collate,
            num_workers=tc.workers, pin_memory=self.device.type == "cuda",
            prefetch_factor=4 if tc.workers else None,
            generator=torch.Generator().manual_seed(step_seed(tc.seed, 0, self.epoch))))

    def _stream(self, step: int) -> Iterator[Batch]:
        """TFRecords: this rank's stream, from the step the run is at (model/records.py)."""
        tc, local = self.tc, self.tc.batch_size // self.ddp.world_size
        dataset = StreamingRecords(self.data, tc.max_frames, tc.seed, self.ddp.rank,
                                   self.ddp.world_size, buffer=tc.shuffle_buffer,
                                   skip_batches=step, batch_size=local)
        return iter(torch.utils.data.DataLoader(
            dataset, batch_size=local, collate_fn=collate, num_workers=tc.workers,
            pin_memory=self.device.type == "cuda", prefetch_factor=4 if tc.workers else None))
