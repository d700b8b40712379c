"""One video as the pipeline passes it around: extracted, imported, stored and read back."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from crc32c import crc32c as _crc32c

from .shard_check import FRAME


def _empty(dtype: Any) -> np.ndarray:
    return np.zeros(0, dtype=dtype)


@dataclass
class VideoRecord:
    """One video as stored: quantized frames (frame-level) or mean features (video-level)."""

    id: str
    labels: np.ndarray = field(default_factory=lambda: _empty(np.int32))
    rgb: np.ndarray | None = None  # uint8 [T, 1024]
    audio: np.ndarray | None = None  # uint8 [T, 128]
    has_audio: bool = True
    segment_start_times: np.ndarray = field(default_factory=lambda: _empty(np.int32))
    segment_labels: np.ndarray = field(default_factory=lambda: _empty(np.int32))
    segment_scores: np.ndarray = field(default_factory=lambda: _empty(np.float32))
    mean_rgb: np.ndarray | None = None  # float32 [1024]
    mean_audio: np.ndarray | None = None  # float32 [128]
    source: tuple[int, int] = (-1, -1)  # the source file's (size, mtime ns) when extracted

    @property
    def n_frames(self) -> int:
        return 0 if self.rgb is None else int(self.rgb.shape[0])


def video_checksum(rgb: np.ndarray, audio: np.ndarray) -> int:
    """CRC32C of a video's stored bytes: its rgb, then its audio (or its mean features)."""
    c = _crc32c(memoryview(np.ascontiguousarray(rgb)).cast("B"))
    return _crc32c(memoryview(np.ascontiguousarray(audio)).cast("B"), c)


def stored_checksum(kind: str, rgb: Any, audio: Any) -> int:
    """The checksum a shard of `kind` stores with a video: over its uint8 frames
    (frame-level), or over its mean features as float32 (video-level)."""
    if kind == FRAME:
        return video_checksum(rgb, audio)
    return video_checksum(np.asarray(rgb, np.float32), np.asarray(audio, np.float32))
