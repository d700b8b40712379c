"""Small synthetic shard sets for the model tests (real HDF5 via synthetic/shards.py).

`write_prototype_task`: labels that a frame-mean cannot see. Every class c has
two random patterns u_c and v_c. A video that has label c contains one frame
holding u_c + v_c; a video without it holds u_c and v_c in two separate frames.
Either way the frames sum to the same thing, so the mean of the frames carries
no information about which labels a video has; a model must look at individual
frames (as NeXtVLAD's soft assignment does) to tell them apart.
"""
from __future__ import annotations

import numpy as np

from synthetic.shards import SYNTHETIC, shard_writer
from yt8m.representation import AUDIO_DIM, RGB_DIM, quantize
from yt8m.store import VIDEO, ShardReader, VideoRecord

DIM = RGB_DIM + AUDIO_DIM


def _record(vid: str, frames: np.ndarray, labels: list[int]) -> VideoRecord:
    q = quantize(frames)
    return VideoRecord(vid, np.asarray(labels, np.int32), q[:, :RGB_DIM].copy(), q[:, RGB_DIM:].copy())


def write_prototype_task(out_dir: str, n_videos: int, num_classes: int = 6, seed: int = 0,
                         pattern_seed: int = 1234, extra_frames: int = 6,
                         relabel: dict[str, list[int]] | None = None) -> None:
    """Videos of 2*num_classes .. 2*num_classes+extra_frames frames; see the module docstring.

    `relabel`: a related task over the same videos (the same seed gives the same frames)
    with its own vocabulary: a video has the label NAME when it has every class of
    relabel[NAME] (a video may then have no label)."""
    names = sorted(relabel) if relabel else None
    patterns = np.random.default_rng(pattern_seed)
    u = patterns.choice([-0.8, 0.8], size=(num_classes, DIM)).astype(np.float32)
    v = patterns.choice([-0.8, 0.8], size=(num_classes, DIM)).astype(np.float32)
    rng = np.random.default_rng(seed)
    with shard_writer(out_dir, num_classes, names=names) as writer:
        for i in range(n_videos):
            labels = [c for c in range(num_classes) if rng.random() < 0.4] or [int(rng.integers(num_classes))]
            frames = []
            for c in range(num_classes):
                frames += [u[c] + v[c]] if c in labels else [u[c], v[c]]
            length = 2 * num_classes + int(rng.integers(0, extra_frames + 1))
            while len(frames) < length:
                frames.append(np.zeros(DIM, np.float32))
            frames = np.stack(frames)[rng.permutation(length)]
            frames += rng.normal(0, 0.3, frames.shape).astype(np.float32)
            if names:
                labels = [k for k, name in enumerate(names) if set(relabel[name]) <= set(labels)]
            writer.add(_record(f"video{i:05d}", frames, labels))


def write_random_frames(out_dir: str, n_videos: int, num_classes: int = 10, seed: int = 0,
                        min_frames: int = 1, max_frames: int = 30, representation=SYNTHETIC,
                        segments: bool = False) -> None:
    """Random uint8 frames and labels (for plumbing tests, not for learning)."""
    rng = np.random.default_rng(seed)
    with shard_writer(out_dir, num_classes, representation=representation, videos_per_shard=16) as writer:
        for i in range(n_videos):
            t = int(rng.integers(min_frames, max_frames + 1))
            labels = sorted(set(rng.integers(0, num_classes, size=int(rng.integers(1, 4))).tolist()))
            rec = VideoRecord(f"v{i:04d}", np.asarray(labels, np.int32),
                              rng.integers(0, 256, (t, RGB_DIM), dtype=np.uint8),
                              rng.integers(0, 256, (t, AUDIO_DIM), dtype=np.uint8))
            if segments:
                starts = np.arange(0, max(t - 4, 1), 5, dtype=np.int32)[:3]
                rec.segment_start_times = starts
                rec.segment_labels = np.full(len(starts), labels[0], np.int32)
                rec.segment_scores = (rng.random(len(starts)) < 0.5).astype(np.float32)
            writer.add(rec)


def write_video_level(out_dir: str, n_videos: int, num_classes: int = 10, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    with shard_writer(out_dir, num_classes, kind=VIDEO) as writer:
        for i in range(n_videos):
            labels = [int(rng.integers(num_classes))]
            writer.add(VideoRecord(f"v{i:04d}", np.asarray(labels, np.int32),
                                   mean_rgb=rng.normal(size=RGB_DIM).astype(np.float32),
                                   mean_audio=rng.normal(size=AUDIO_DIM).astype(np.float32)))


def flip_a_frame_byte(path: str, video: int) -> None:
    """Damage one stored video of a shard on disk: one byte of its frames flipped, so its
    checksum no longer holds (the file stays a valid shard)."""
    reader = ShardReader(path)
    start, row = reader._raw["rgb"]
    offset = start + int(reader.frame_offsets[video]) * row + 7
    reader.close()
    with open(path, "r+b") as f:
        f.seek(offset)
        byte = f.read(1)
        f.seek(offset)
        f.write(bytes([byte[0] ^ 0x40]))
