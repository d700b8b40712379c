"""The second reader: decord, for a file PyAV cannot open or decode.

decord was the first choice, but with decord 3.4 a reader that seeks between chunks
returns wrong frames on ordinary clips, and one that does not seek decodes ahead without
bound (13.7 GB in 18 s on a 1080p clip). It also ignores display rotations and fails on
some sizes. It stays as the fallback, seeking between chunks to empty its internal frame
queue: left alone, its decoder thread runs ahead without bound while the consumer is
busy. decord (and its ~290 MB of libraries) is imported only when this reader is used.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterator

import numpy as np

from yt8m.errors import RejectedInput

from ..config import CHUNK_BYTES
from .frame_rule import CHUNK_FRAMES, VideoInfo, chunk_lengths, frame_indices
from .probe import container_name
from .reader import DecoderFailed, short_reason

DECODE_THREADS = 2  # per video; 0 (decord's "auto") fails on VP9 with decord 3.4
_MAX_SANE_TIME_S = 1e7  # beyond this a timestamp is "no timestamp" (AV_NOPTS_VALUE)

_decord_quiet = False


def _decord():
    """Import decord once and silence FFmpeg's own log lines (we report reasons instead)."""
    global _decord_quiet
    # torch must be loaded before decord: with decord (and its bundled FFmpeg) loaded
    # first, torch.fft.rfft (the log-mel frontend) segfaults later in the process.
    import decord
    import torch  # noqa: F401
    if not _decord_quiet:
        decord.logging.set_level(decord.logging.QUIET)
        _decord_quiet = True
    return decord


def _has_audio_stream(path: str) -> bool:
    decord = _decord()
    try:
        decord.AudioReader(path, sample_rate=-1, mono=True)
        return True
    except Exception:  # noqa: BLE001 - decord raises plain errors for every failure
        return False


def _open_failed(path: str, name: str, head: bytes, error: Exception) -> RejectedInput:
    """decord's error on opening, as a reason that says what the file is."""
    text = str(error)
    if "cannot find video stream" in text:
        if _has_audio_stream(path):
            return RejectedInput(name, "no video stream: an audio-only file")
        return RejectedInput(name, "no video stream (the file holds no video frames)")
    container = container_name(head)
    if "broken metadata" in text or "Invalid frame count" in text:
        return RejectedInput(name, "no video frames could be counted: damaged metadata or a "
                                   "still image in a video container")
    if container:
        return RejectedInput(name, f"truncated or corrupt {container} file: its header is "
                                   "there but the decoder cannot read the video (an interrupted "
                                   "download or copy?)")
    return RejectedInput(name, "not a video: unrecognised format (neither a known container "
                               "nor a stream FFmpeg can open)")


def _open_reader(path: str, name: str, head: bytes, num_threads: int):
    decord = _decord()
    try:
        return decord.VideoReader(path, num_threads=num_threads)
    except Exception as e:  # noqa: BLE001 - decord raises RuntimeError/DECORDError/Assertion
        verdict = _open_failed(path, name, head, e)
        if "no video stream" in verdict.reason or "not a video" in verdict.reason:
            raise verdict from None
        raise DecoderFailed(name, verdict.reason) from None


def _timestamps(reader, n: int, name: str) -> np.ndarray:
    """[n, 2] presentation intervals (s); a constant rate where the stream has none."""
    pts = np.asarray(reader.get_frame_timestamp(np.arange(n)), dtype=np.float64)
    if not (np.isfinite(pts).all() and np.abs(pts).max() < _MAX_SANE_TIME_S):
        if n == 1:
            raise RejectedInput(name, "zero duration: a single frame without a duration "
                                      "(a still image, not a video)")
        fps = reader.get_avg_fps() or 25.0  # no timestamps at all: assume a constant rate
        pts = np.stack([np.arange(n), np.arange(1, n + 1)], axis=1) / fps
    return pts


@dataclass
class DecordVideo:
    """A video decoded by decord: `info` (the frame rule's result) and `chunks()`."""

    reader: object = field(repr=False)
    info: VideoInfo
    name: str
    decoder: str = "decord"

    @classmethod
    def open(cls, path: str, max_frames: int, name: str, head: bytes,
             num_threads: int = DECODE_THREADS) -> "DecordVideo":
        reader = _open_reader(path, name, head, num_threads)
        n = len(reader)
        if n <= 0:
            raise DecoderFailed(name, "no video frames in the video stream")
        pts = _timestamps(reader, n, name)
        indices, duration = frame_indices(pts[:, 0], pts[:, 1], max_frames)
        if len(indices) == 0:
            raise RejectedInput(name, f"zero duration ({duration:.3f} s): shorter than one "
                                      "frame interval")
        try:
            first = reader.get_batch([0]).asnumpy()
            reader.seek(0)  # stop decord decoding ahead until the frames are asked for
        except Exception as e:  # noqa: BLE001
            raise DecoderFailed(name, f"corrupt video stream: the first frame does not decode "
                                      f"({short_reason(e)})") from None
        if first.ndim != 4 or first.shape[0] != 1 or first.shape[3] != 3 or min(first.shape[1:3]) < 1:
            raise DecoderFailed(name, f"decord returned an impossible frame of shape "
                                      f"{tuple(first.shape)}")
        h, w = first.shape[1:3]
        return cls(reader, VideoInfo(path, int(w), int(h), n, duration, indices), name)

    def chunks(self, chunk_bytes: int = CHUNK_BYTES, chunk_frames: int = CHUNK_FRAMES
               ) -> Iterator[np.ndarray]:
        """uint8 RGB chunks [k, H, W, 3] of the frames at t = 0, 1, ... s, in order."""
        info, reader = self.info, self.reader
        keyframes = np.asarray(reader.get_key_indices(), dtype=np.int64)
        a = 0
        for length in chunk_lengths(info, chunk_bytes, chunk_frames):
            if a >= info.n_frames:
                return
            idx = info.indices[a:a + length]
            try:
                chunk = reader.get_batch(idx.tolist()).asnumpy()
                # decord's decoder thread keeps decoding ahead into an unbounded queue
                # while we wait (10 GB in a minute at 1080p); a seek empties it. We seek
                # exactly onto a keyframe (decord's fast seek is only exact there) before
                # the next chunk, and get_batch decodes forward from it.
                nxt = int(info.indices[a + length]) if a + length < info.n_frames else 0
                keys = keyframes[keyframes <= nxt]
                reader.seek(int(keys[-1]) if len(keys) else 0)
            except Exception as e:  # noqa: BLE001
                raise RejectedInput(self.name, f"truncated or corrupt video stream: decoding "
                                               f"failed near t = {a} s ({short_reason(e)})") from None
            if chunk.shape[1:] != (info.height, info.width, 3):
                raise RejectedInput(self.name, f"decord returned frames of shape {chunk.shape[1:]} "
                                               f"after {(info.height, info.width, 3)}")
            a += length
            yield chunk
