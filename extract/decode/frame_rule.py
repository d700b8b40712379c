"""The frame rule: which stream frame is taken for each second, and how frames are chunked.

The frame of second k is the one *shown* at t = k s: the frame with the largest
presentation time <= t, times taken from the stream's own timestamps (so variable
frame rate and 29.97 fps land on the right frame). Times count from the first shown
frame's presentation time, so a stream that starts at 0.021 s (common in Matroska)
still has a frame at t = 0, and frames an edit list hides are not counted. A video of
duration D (end of its last frame minus start of its first) has one frame for every
whole second t with t < D, at most `max_frames`: 5.28 s -> 6 frames, 10.0 s -> 10,
4.004 s -> 5. Timestamps are compared with a 0.1 ms tolerance (decord reports float32
seconds).

Frames are decoded at the stored resolution (the TF1 resize that follows must see the
original pixels) and handed out in chunks of at most `chunk_bytes`, so memory does not
grow with the video's length or resolution. Both readers apply this rule.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterator

import numpy as np

from yt8m.representation import DEFAULT_MAX_FRAMES

TIME_TOLERANCE_S = 1e-4  # float32 seconds resolve ~3e-5 s at 360 s; 29.97 fps is 1 ms off
CHUNK_FRAMES = 8  # and at most this many
FIRST_CHUNK_FRAMES = 2  # chunks grow 2, 4, 8: the first frames reach inference early


@dataclass(frozen=True)
class VideoInfo:
    """What probing a video found, and which stream frames the extraction takes."""

    path: str
    width: int
    height: int
    stream_frames: int  # frames in the stream
    duration: float  # seconds, end of last frame - start of first
    indices: np.ndarray  # int64 [T]: stream frame shown at t = 0, 1, ..., T - 1 s

    @property
    def n_frames(self) -> int:
        return len(self.indices)


def frame_count(duration: float, max_frames: int = DEFAULT_MAX_FRAMES) -> int:
    """Whole seconds t = 0, 1, ... with t < duration, at most max_frames."""
    if duration <= TIME_TOLERANCE_S:
        return 0
    return min(max_frames, math.ceil(duration - TIME_TOLERANCE_S))


def frame_indices(starts: np.ndarray, ends: np.ndarray,
                  max_frames: int = DEFAULT_MAX_FRAMES) -> tuple[np.ndarray, float]:
    """Stream frames shown at t = 0, 1, 2, ... s, and the duration.

    starts/ends: presentation interval (s) of each stream frame, in stream order.
    Returns (indices [T], duration); T = frame_count(duration, max_frames).
    """
    starts = np.asarray(starts, dtype=np.float64)
    ends = np.asarray(ends, dtype=np.float64)
    t0 = starts.min()
    duration = float(max(ends.max(), starts.max()) - t0)
    n = frame_count(duration, max_frames)
    order = np.argsort(starts, kind="stable")
    sorted_starts = starts[order] - t0
    wanted = np.arange(n, dtype=np.float64) + TIME_TOLERANCE_S
    # Largest start <= t; t = 0 always has the first frame.
    pos = np.searchsorted(sorted_starts, wanted, side="right") - 1
    return order[np.maximum(pos, 0)].astype(np.int64), duration


def chunk_lengths(info: VideoInfo, chunk_bytes: int, chunk_frames: int) -> Iterator[int]:
    """Frames per chunk: FIRST_CHUNK_FRAMES, doubling up to the most that fit chunk_bytes
    (and chunk_frames), so inference starts while the rest decodes (at 720p, 8 frames are
    200 decoded frames: ~0.3 s)."""
    frame_bytes = max(1, info.width * info.height * 3)
    per_chunk = max(1, min(chunk_frames, chunk_bytes // frame_bytes))
    size = min(FIRST_CHUNK_FRAMES, per_chunk)
    while True:
        yield size
        size = min(2 * size, per_chunk)
