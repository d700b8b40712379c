"""What a video reader is: the interface both decoders implement, and how they fail.

A reader is opened on one file (which fixes `info`, the frame rule's result) and then
hands out the kept frames with `chunks()`. A reader that cannot decode what may still be
a good video raises DecoderFailed, so that the other one can try; a plain RejectedInput
is a verdict on the file itself (zero duration, no video).
"""
from __future__ import annotations

import re
from typing import Iterator, Protocol, runtime_checkable

import numpy as np

from yt8m.errors import RejectedInput

from .frame_rule import VideoInfo


class DecoderFailed(RejectedInput):
    """This decoder could not decode what may still be a good video: the other one tries."""


@runtime_checkable
class VideoReader(Protocol):
    """One opened video: what the frame rule takes from it, and those frames in order."""

    info: VideoInfo
    name: str  # how the input is named in rejection reasons
    decoder: str  # "pyav" or "decord"

    def chunks(self, chunk_bytes: int = ..., chunk_frames: int = ...) -> Iterator[np.ndarray]:
        """uint8 RGB chunks [k, H, W, 3] of the frames at t = 0, 1, ... s, in order, each of
        at most `chunk_bytes` and `chunk_frames`; RejectedInput when the stream breaks off."""
        ...


def short_reason(error: Exception) -> str:
    """A decoder's error as one short line."""
    text = str(error).strip().splitlines()
    text = text[-1] if text else type(error).__name__
    return re.sub(r"^\[[0-9:]+\] \S+: ", "", text)[:200]
