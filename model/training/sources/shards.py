"""HDF5 shards (yt8m.store) as a data source: random access, so every epoch is a seeded
permutation of all videos (`EpochBatchSampler`) read by DataLoader processes. Torch is
imported where batches are built, so reading the videos (`read`, verify) does not load it."""
from __future__ import annotations

from typing import Iterator

from yt8m.errors import DamagedVideo, Problem
from yt8m.iterate import batched
from yt8m.representation import DEFAULT_MAX_FRAMES
from yt8m.store import ShardReader, ShardSet
from yt8m.vocabulary import Vocabulary

from ..data import Batch, EpochBatchSampler, VideoItem, collate, step_seed, video_item
from .base import DataSource, SourceVideo, Storage, StreamPlan, TrainingFeed


class ShardDataset:
    """Video i of a ShardSet -> a VideoItem, or the Problem that it could not be read. A
    map-style dataset for a DataLoader: `__getitem__` and `__len__` are all it asks for."""

    def __init__(self, shards: ShardSet, max_frames: int = DEFAULT_MAX_FRAMES):
        self.shards, self.max_frames = shards, max_frames
        self.num_classes = shards.meta.vocabulary.num_classes

    def __len__(self) -> int:
        return len(self.shards)

    def __getitem__(self, i: int) -> VideoItem | Problem:
        try:
            video = self.shards[i]
        except DamagedVideo as e:  # left out of its batch, counted by the caller
            return e.problem
        return video_item(video, self.num_classes, self.max_frames, i)


class ShardSource(DataSource):
    """The shards of a folder. strict: a damaged shard file refuses the folder (UsageError);
    otherwise it is left out and listed in `refused`."""

    def __init__(self, data_dir: str, strict: bool = True):
        self.shard_set = ShardSet(data_dir, strict=strict)
        self.data_dir, self.meta = data_dir, self.shard_set.meta
        self.refused = [e.problem for e in self.shard_set.errors]

    @property
    def vocabulary(self) -> Vocabulary:
        return self.shard_set.vocabulary

    @property
    def storage(self) -> Storage:
        shards = self.shard_set.shards
        return Storage(len(shards), "shard", sum(len(r) for r in shards if r.checksums is None))

    def __len__(self) -> int:
        return len(self.shard_set)

    def read(self) -> Iterator[SourceVideo | Problem]:
        """Shard by shard, many videos per disk read; a damaged video in its place."""
        for shard in self.shard_set.shards:
            seen = len(shard.damaged)
            for video in shard.iter_videos():
                seen = yield from _damage_since(shard, seen)
                yield SourceVideo(shard.path, video)
            yield from _damage_since(shard, seen)

    def batches(self, batch_size: int, max_frames: int, workers: int = 0) -> Iterator[Batch]:
        from torch.utils.data import DataLoader

        return iter(DataLoader(ShardDataset(self.shard_set, max_frames), collate_fn=collate,
                               batch_sampler=list(batched(range(len(self)), batch_size)),
                               num_workers=workers))

    def training_feed(self, plan: StreamPlan, damaged: set[Problem] | None = None
                      ) -> "ShardFeed":
        return ShardFeed(self, plan, damaged)

    def close(self) -> None:
        self.shard_set.close()


def _damage_since(shard: ShardReader, seen: int) -> Iterator[Problem]:
    """The damaged videos the shard's reader noted after the first `seen`; returns the count."""
    for e in shard.damaged[seen:]:
        yield e.problem
    return len(shard.damaged)


class ShardFeed(TrainingFeed):
    """Epoch after epoch of seeded permutations; a resumed run starts inside its epoch.
    An epoch begun whole in which no process read a usable batch ends the run."""

    def __init__(self, source: ShardSource, plan: StreamPlan,
                 damaged: set[Problem] | None = None):
        super().__init__(source, plan, damaged)
        self.epoch, start = divmod(plan.step, plan.per_epoch)
        self.whole_epoch = start == 0  # a resumed run's first epoch is only its rest
        self.batches = self._epoch(start)

    def next_pass(self) -> None:
        usable = self.usable
        if self.plan.world_size > 1:  # every rank stops, or none
            import torch
            import torch.distributed as dist

            total = torch.tensor([usable], device=self.plan.device)
            dist.all_reduce(total)
            usable = int(total.item())
        if usable == 0 and self.whole_epoch:
            raise self.stop(f" (epoch {self.epoch})")
        self.epoch, self.usable, self.whole_epoch = self.epoch + 1, 0, True
        self.batches = self._epoch(0)

    def check_progress(self) -> None:
        """Nothing to decide before the epoch's end (`next_pass`)."""

    def _epoch(self, start: int) -> Iterator[Batch]:
        """The batches of the current epoch from its `start`-th on."""
        import torch
        from torch.utils.data import DataLoader

        p = self.plan
        sampler = EpochBatchSampler(len(self.source), p.batch_size, p.seed, self.epoch,
                                    p.rank, p.world_size, start)
        return iter(DataLoader(
            ShardDataset(self.source.shard_set, p.max_frames), batch_sampler=sampler,
            collate_fn=collate, num_workers=p.workers, pin_memory=p.device.type == "cuda",
            prefetch_factor=4 if p.workers else None,
            generator=torch.Generator().manual_seed(step_seed(p.seed, 0, self.epoch))))
