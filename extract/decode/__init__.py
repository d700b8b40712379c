"""Decoding: one frame per second and the audio track (docs/reference.md, "Representation").

The modules, each importing only those above it in this list:

  frame_rule     which stream frame is shown at t = 0, 1, 2, ... s, and chunk sizes
  reader         the VideoReader interface both readers implement, DecoderFailed
  probe          what is not a video, told from the file before any decoder opens it
  container      opening a file with PyAV
  packets        the video packets read without decoding, and the packet plan
  pyav           AvVideo: PyAV (FFmpeg's own decoders), the reader tried first
  decord_reader  DecordVideo: decord, for a file PyAV cannot open or decode
  audio          the audio track, decoded as a stream by PyAV

Two readers. PyAV decodes the frames: it applies display rotations, decodes only what
the kept frames need, and gives exactly the frames ffmpeg shows. decord is the second
path for a file PyAV cannot open or decode. Only what neither can decode is rejected.
Both apply the same frame rule. Inputs that are not decodable videos raise
RejectedInput with a reason that says what the file is (empty, truncated, an image,
text, audio only, ...).
"""
from __future__ import annotations

import numpy as np

from yt8m.errors import RejectedInput
from yt8m.representation import DEFAULT_MAX_FRAMES

from .audio import AudioTrack, decode_audio, read_audio
from .decord_reader import DECODE_THREADS, DecordVideo
from .frame_rule import CHUNK_FRAMES, TIME_TOLERANCE_S, VideoInfo, chunk_lengths, frame_count, frame_indices
from .probe import VIDEO_EXTENSIONS, check_file
from .pyav import AvVideo
from .reader import DecoderFailed, VideoReader, short_reason

__all__ = [
    "AudioTrack", "AvVideo", "CHUNK_FRAMES", "DECODE_THREADS", "DecoderFailed", "DecordVideo",
    "TIME_TOLERANCE_S", "VIDEO_EXTENSIONS", "VideoInfo", "VideoReader", "check_file",
    "chunk_lengths", "decode_audio", "frame_count", "frame_indices", "open_video", "read_audio",
    "read_frames", "short_reason",
]


def open_video(path: str, max_frames: int = DEFAULT_MAX_FRAMES, name: str | None = None,
               num_threads: int = DECODE_THREADS, frame_threads: bool = False,
               accept_truncated: bool = False, max_pixels: int | None = None) -> VideoReader:
    """An AvVideo, or a DecordVideo when PyAV cannot decode the file; RejectedInput, with
    both decoders' reasons, when neither can. `frame_threads`: decode with several
    threads (worth it when the CPU's cores are otherwise idle). `max_pixels`: frames
    larger than this are refused by FFmpeg before they are allocated (decord, which has
    no such limit, is then not tried)."""
    name = name or path
    head = check_file(path, name)
    try:
        return AvVideo.open(path, max_frames, name, frame_threads, accept_truncated, max_pixels)
    except DecoderFailed as e:
        av_error = e
    if max_pixels is not None:
        raise RejectedInput(name, av_error.reason)
    try:
        return DecordVideo.open(path, max_frames, name, head, num_threads)
    except DecoderFailed as e:
        if e.reason == av_error.reason:
            raise e from None
        raise RejectedInput(name, f"{e.reason} (and PyAV: {av_error.reason})") from None


def read_frames(path: str, max_frames: int = DEFAULT_MAX_FRAMES) -> np.ndarray:
    """All sampled frames at once, uint8 [T, H, W, 3] (short clips, tests)."""
    return np.concatenate(list(open_video(path, max_frames).chunks()))
