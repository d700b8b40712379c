"""Videos -> batches: the model's view of a video, padding collate and a resumable shuffling
batch sampler. An input that could not be read is a `yt8m.errors.Problem` (kind
DAMAGED), named where it was met and never trained on.

Frames stay uint8 all the way to the device (a quarter of float32's bytes through
worker pipes and host-to-device copies); `to_device` dequantizes them there.
Batches are padded to their longest video (at most max_frames) with a mask.

Torch is imported only by the functions that build tensors, so reading and checking data
(`verify`, a source's `read`) does not load it.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Iterator

import numpy as np

from yt8m.errors import Problem
from yt8m.representation import dequantize
from yt8m.store import VideoRecord

if TYPE_CHECKING:
    import torch


@dataclass
class Batch:
    """Frame-level: rgb/audio uint8 [B, T, D] and mask [B, T]; video-level: float [B, D], mask None."""

    rgb: torch.Tensor
    audio: torch.Tensor
    mask: torch.Tensor | None
    labels: torch.Tensor  # float multi-hot [B, C]
    index: torch.Tensor  # positions in the data set (shards; -1 for TFRecords)
    damaged: tuple[Problem, ...] = ()  # the inputs left out of the batch

    def __len__(self) -> int:
        return self.rgb.shape[0]

    def pin_memory(self) -> "Batch":
        return Batch(*(t.pin_memory() if t is not None else None for t in
                       (self.rgb, self.audio, self.mask, self.labels, self.index)), self.damaged)


def multi_hot(label_ids: np.ndarray, num_classes: int) -> np.ndarray:
    out = np.zeros(num_classes, dtype=np.float32)
    ids = np.asarray(label_ids, dtype=np.int64)
    out[ids[(ids >= 0) & (ids < num_classes)]] = 1.0
    return out


@dataclass
class VideoItem:
    """One video as a model reads it. Frame-level: uint8 rgb [T, 1024], audio [T, 128];
    video-level: float mean_rgb [1024], mean_audio [128]. labels: multi-hot [C] (empty
    when there are none, at inference)."""

    index: int
    rgb: np.ndarray
    audio: np.ndarray
    labels: np.ndarray


def video_item(video: VideoRecord, num_classes: int, max_frames: int, index: int = -1) -> VideoItem:
    """A stored video as the model reads it: its first max_frames frames (or its mean
    features) and its labels as a multi-hot vector."""
    labels = multi_hot(video.labels, num_classes)
    if video.rgb is None:  # video-level
        return VideoItem(index, video.mean_rgb, video.mean_audio, labels)
    return VideoItem(index, video.rgb[:max_frames], video.audio[:max_frames], labels)


def pad_frames(rgb: list[np.ndarray], audio: list[np.ndarray]
               ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Videos of different lengths -> uint8 rgb [B, T, 1024], audio [B, T, 128] padded with
    zeros to the longest, and mask [B, T] (1 for real frames)."""
    import torch

    t = max(1, max(len(r) for r in rgb))
    # Uninitialised, then only the padding zeroed: a batch is ~20 MB, filling it twice costs.
    out_rgb = np.empty((len(rgb), t, rgb[0].shape[1]), dtype=np.uint8)
    out_audio = np.empty((len(rgb), t, audio[0].shape[1]), dtype=np.uint8)
    mask = np.zeros((len(rgb), t), dtype=np.float32)
    for j, (r, a) in enumerate(zip(rgb, audio)):
        n = len(r)
        out_rgb[j, :n], out_audio[j, :n], mask[j, :n] = r, a, 1.0
        out_rgb[j, n:], out_audio[j, n:] = 0, 0
    return torch.from_numpy(out_rgb), torch.from_numpy(out_audio), torch.from_numpy(mask)


def collate(items: list) -> Batch:
    """Pad frame-level videos to the longest in the batch; stack video-level ones.
    Damaged inputs (their Problem) are left out and named in `Batch.damaged`."""
    import torch

    damaged = tuple(it for it in items if isinstance(it, Problem))
    items = [it for it in items if isinstance(it, VideoItem)]
    if not items:
        empty = torch.zeros(0)
        return Batch(empty, empty, None, empty, torch.zeros(0, dtype=torch.int64), damaged)
    index = torch.tensor([it.index for it in items], dtype=torch.int64)
    labels = torch.from_numpy(np.stack([it.labels for it in items]))
    if items[0].rgb.ndim == 1:  # video-level mean features
        return Batch(torch.from_numpy(np.stack([it.rgb for it in items]).astype(np.float32)),
                     torch.from_numpy(np.stack([it.audio for it in items]).astype(np.float32)),
                     None, labels, index, damaged)
    rgb, audio, mask = pad_frames([it.rgb for it in items], [it.audio for it in items])
    return Batch(rgb, audio, mask, labels, index, damaged)


def to_device(batch: Batch, device: torch.device) -> Batch:
    """Copy to the device; uint8 frames are dequantized only there."""
    import torch

    def move(t: torch.Tensor | None) -> torch.Tensor | None:
        return None if t is None else t.to(device, non_blocking=True)
    rgb, audio = move(batch.rgb), move(batch.audio)
    if rgb.dtype == torch.uint8:
        rgb, audio = dequantize(rgb), dequantize(audio)
    return Batch(rgb, audio, move(batch.mask), move(batch.labels), batch.index, batch.damaged)


class EpochBatchSampler:
    """Batches of one epoch: a seeded permutation of every video of every shard.

    Global batch b is permutation[b*B:(b+1)*B] for every world size; rank r takes
    its contiguous share of it, so N processes with batch B/N each see exactly
    what one process with batch B sees. Epochs drop the last incomplete global
    batch (so all ranks take the same number of steps). `start` skips batches
    already trained on (resume). DataLoader workers receive whole batches. A DataLoader
    takes any iterable of index lists as its batch_sampler: no torch base class needed.
    """

    def __init__(self, num_videos: int, global_batch: int, seed: int, epoch: int,
                 rank: int = 0, world_size: int = 1, start: int = 0, shuffle: bool = True):
        if global_batch % world_size:
            raise ValueError(f"batch size {global_batch} is not divisible by {world_size} processes")
        self.num_videos, self.global_batch = num_videos, global_batch
        self.seed, self.epoch, self.rank, self.world_size = seed, epoch, rank, world_size
        self.start, self.shuffle = start, shuffle

    @staticmethod
    def batches_per_epoch(num_videos: int, global_batch: int) -> int:
        return num_videos // global_batch

    def __len__(self) -> int:
        return max(0, self.batches_per_epoch(self.num_videos, self.global_batch) - self.start)

    def __iter__(self) -> Iterator[list[int]]:
        if self.shuffle:
            order = np.random.default_rng([self.seed, self.epoch]).permutation(self.num_videos)
        else:
            order = np.arange(self.num_videos)
        local = self.global_batch // self.world_size
        for b in range(self.start, self.batches_per_epoch(self.num_videos, self.global_batch)):
            lo = b * self.global_batch + self.rank * local
            yield order[lo:lo + local].tolist()


def step_seed(seed: int, rank: int, step: int) -> int:
    """The seed of one step's randomness (dropout; a shard epoch's loader order)."""
    return (seed * 1_000_003 + rank * 7919 + step) % (2 ** 63)
