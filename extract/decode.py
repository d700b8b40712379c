"""Decoding: one frame per second and the audio track (docs/reference.md, "Representation").

Frames. The frame of second k is the one *shown* at t = k s: the frame with the
largest presentation time <= t, times taken from the stream's own timestamps
(so variable frame rate and 29.97 fps land on the right frame). Times count
from the first shown frame's presentation time, so a stream that starts at 0.021 s
(common in Matroska) still has a frame at t = 0, and frames an edit list hides
are not counted. A video of duration D (end of
its last frame minus start of its first) has one frame for every whole second
t with t < D, at most `max_frames`: 5.28 s -> 6 frames, 10.0 s -> 10, 4.004 s -> 5.
Timestamps are compared with a 0.1 ms tolerance (decord reports float32 seconds).

Frames are decoded at the stored resolution (the TF1 resize that follows must
see the original pixels) and handed out in chunks of at most `chunk_bytes`, so
memory does not grow with the video's length or resolution. (decord's reader,
the second path below, seeks between chunks to empty its internal frame queue:
left alone, its decoder thread runs ahead without bound while the consumer is
busy. That seek is also its known risk, described next.)

Two decoders. PyAV (extract/decode_av.py, FFmpeg's own decoders) decodes the
frames: it applies display rotations, decodes only what the kept frames need,
and gives exactly the frames ffmpeg shows. decord, below, is the second path for
a file PyAV cannot open or decode. (decord was the first choice, but with decord
3.4 a reader that seeks between chunks returns wrong frames on ordinary clips,
and one that does not seek decodes ahead without bound: 13.7 GB in 18 s on a
1080p clip. It also ignores display rotations and fails on some sizes.) Only
what neither can decode is rejected. Both apply the same frame rule.

Audio is decoded as a stream by PyAV, only as far as needed (extract/decode_av.py).

Inputs that are not decodable videos raise RejectedInput with a reason that
says what the file is (empty, truncated, an image, text, audio only, ...).
"""
from __future__ import annotations

import math
import os
import re
import stat
import threading
from dataclasses import dataclass, field
from typing import Iterator

import numpy as np

from yt8m.errors import RejectedInput
from yt8m.representation import DEFAULT_MAX_FRAMES

from .config import CHUNK_BYTES

VIDEO_EXTENSIONS = frozenset({
    ".mp4", ".m4v", ".mov", ".qt", ".webm", ".mkv", ".avi", ".mpg", ".mpeg", ".m2v",
    ".flv", ".f4v", ".wmv", ".asf", ".3gp", ".3g2", ".ts", ".mts", ".m2ts", ".vob", ".ogv",
    ".divx", ".dv", ".mxf",
})
TIME_TOLERANCE_S = 1e-4  # float32 seconds resolve ~3e-5 s at 360 s; 29.97 fps is 1 ms off
CHUNK_FRAMES = 8  # and at most this many
FIRST_CHUNK_FRAMES = 2  # chunks grow 2, 4, 8: the first frames reach inference early
DECODE_THREADS = 2  # per video; 0 (decord's "auto") fails on VP9 with decord 3.4
_MAX_SANE_TIME_S = 1e7  # beyond this a timestamp is "no timestamp" (AV_NOPTS_VALUE)

_decord_lock = threading.Lock()
_decord_quiet = False


def _decord():
    """Import decord once and silence FFmpeg's own log lines (we report reasons instead)."""
    global _decord_quiet
    # torch must be loaded before decord: with decord (and its bundled FFmpeg) loaded
    # first, torch.fft.rfft (the log-mel frontend) segfaults later in the process.
    import torch  # noqa: F401
    import decord
    if not _decord_quiet:
        decord.logging.set_level(decord.logging.QUIET)
        _decord_quiet = True
    return decord


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


# --------------------------------------------------------------------------- checks

_MAGIC = [  # (offset, bytes, what) of formats that are not video containers
    (0, b"\x89PNG\r\n\x1a\n", "a PNG image"),
    (0, b"\xff\xd8\xff", "a JPEG image"),
    (0, b"GIF8", "a GIF image"),
    (0, b"BM", "a BMP image"),
    (0, b"%PDF", "a PDF document"),
    (0, b"PK\x03\x04", "a ZIP archive"),
    (0, b"\x1f\x8b", "a gzip archive"),
    (0, b"ID3", "an MP3 audio file"),
    (0, b"fLaC", "a FLAC audio file"),
]
_CONTAINERS = [  # (offset, bytes, name) of video containers, to say "truncated <name>"
    (4, b"ftyp", "MP4/MOV"), (4, b"moov", "MOV"), (4, b"mdat", "MOV"), (4, b"free", "MOV"),
    (4, b"wide", "MOV"), (0, b"\x1a\x45\xdf\xa3", "Matroska/WebM"), (0, b"RIFF", "RIFF/AVI"),
    (0, b"FLV", "FLV"), (0, b"\x30\x26\xb2\x75", "ASF/WMV"), (0, b"\x00\x00\x01\xba", "MPEG-PS"),
    (0, b"\x47", "MPEG-TS"), (0, b"OggS", "Ogg"),
]


def _looks_like_text(head: bytes) -> bool:
    if not head or b"\x00" in head:
        return False
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        # A multi-byte character cut at the end of the sample is still text.
        try:
            text = head[:-3].decode("utf-8")
        except UnicodeDecodeError:
            return False
    printable = sum(c.isprintable() or c in "\r\n\t" for c in text)
    return printable >= 0.98 * len(text)


def check_file(path: str, name: str | None = None) -> bytes:
    """Reject what is not a readable, non-empty regular file; returns its first 4 KB."""
    name = name or path
    try:
        st = os.stat(path)
    except FileNotFoundError:
        if os.path.islink(path):
            raise RejectedInput(name, f"broken symbolic link (points to "
                                      f"{os.readlink(path)!r}, which does not exist)") from None
        raise RejectedInput(name, "file not found (deleted while the job ran?)") from None
    except OSError as e:
        raise RejectedInput(name, f"cannot access: {e.strerror}") from None
    if not stat.S_ISREG(st.st_mode):
        kind = ("a directory" if stat.S_ISDIR(st.st_mode) else "a named pipe (FIFO)"
                if stat.S_ISFIFO(st.st_mode) else "a device or socket")
        raise RejectedInput(name, f"not a regular file: {kind}")
    if st.st_size == 0:
        raise RejectedInput(name, "empty file (0 bytes)")
    try:
        with open(path, "rb") as f:
            head = f.read(4096)
    except PermissionError:
        raise RejectedInput(name, "permission denied: the file is not readable by this user "
                                  "(check its mode and owner)") from None
    except OSError as e:
        raise RejectedInput(name, f"cannot read: {e.strerror}") from None
    for offset, magic, what in _MAGIC:
        if head[offset:offset + len(magic)] == magic:
            raise RejectedInput(name, f"not a video: {what} with a video file extension")
    if _looks_like_text(head):
        raise RejectedInput(name, "not a video: a text file with a video file extension")
    return head


def _container(head: bytes) -> str | None:
    for offset, magic, what in _CONTAINERS:
        if head[offset:offset + len(magic)] == magic:
            if what == "MPEG-TS" and head[188:189] != b"\x47":
                continue  # one sync byte is not enough to call it a transport stream
            return what
    return None


def _has_audio_stream(path: str) -> bool:
    decord = _decord()
    try:
        decord.AudioReader(path, sample_rate=-1, mono=True)
        return True
    except Exception:  # noqa: BLE001 - decord raises plain errors for every failure
        return False


def _open_failed(path: str, name: str, head: bytes, error: Exception) -> RejectedInput:
    text = str(error)
    if "cannot find video stream" in text:
        if _has_audio_stream(path):
            return RejectedInput(name, "no video stream: an audio-only file")
        return RejectedInput(name, "no video stream (the file holds no video frames)")
    container = _container(head)
    if "broken metadata" in text or "Invalid frame count" in text:
        return RejectedInput(name, "no video frames could be counted: damaged metadata or a "
                                   "still image in a video container")
    if container:
        return RejectedInput(name, f"truncated or corrupt {container} file: its header is "
                                   "there but the decoder cannot read the video (an interrupted "
                                   "download or copy?)")
    return RejectedInput(name, "not a video: unrecognised format (neither a known container "
                               "nor a stream FFmpeg can open)")


# --------------------------------------------------------------------------- video

class DecoderFailed(RejectedInput):
    """decord could not decode what may still be a good video: the other decoder tries.
    (A plain RejectedInput is a verdict on the file itself: zero duration, no video.)"""


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
        decord = _decord()
        try:
            reader = decord.VideoReader(path, num_threads=num_threads)
        except Exception as e:  # noqa: BLE001 - decord raises RuntimeError/DECORDError/Assertion
            verdict = _open_failed(path, name, head, e)
            if "no video stream" in verdict.reason or "not a video" in verdict.reason:
                raise verdict from None
            raise DecoderFailed(name, verdict.reason) from None
        n = len(reader)
        if n <= 0:
            raise DecoderFailed(name, "no video frames in the video stream")
        pts = np.asarray(reader.get_frame_timestamp(np.arange(n)), dtype=np.float64)
        if not (np.isfinite(pts).all() and np.abs(pts).max() < _MAX_SANE_TIME_S):
            if n == 1:
                raise RejectedInput(name, "zero duration: a single frame without a duration "
                                          "(a still image, not a video)")
            fps = reader.get_avg_fps() or 25.0  # no timestamps at all: assume a constant rate
            pts = np.stack([np.arange(n), np.arange(1, n + 1)], axis=1) / fps
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


def open_video(path: str, max_frames: int = DEFAULT_MAX_FRAMES, name: str | None = None,
               num_threads: int = DECODE_THREADS, frame_threads: bool = False,
               accept_truncated: bool = False, max_pixels: int | None = None):
    """An AvVideo, or a DecordVideo when PyAV cannot decode the file; RejectedInput, with
    both decoders' reasons, when neither can. `frame_threads`: decode with several
    threads (worth it when the CPU's cores are otherwise idle). `max_pixels`: frames
    larger than this are refused by FFmpeg before they are allocated (decord, which has
    no such limit, is then not tried)."""
    from .decode_av import AvVideo

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


def short_reason(error: Exception) -> str:
    """A decoder's error as one short line."""
    text = str(error).strip().splitlines()
    text = text[-1] if text else type(error).__name__
    return re.sub(r"^\[[0-9:]+\] \S+: ", "", text)[:200]


def read_frames(path: str, max_frames: int = DEFAULT_MAX_FRAMES) -> np.ndarray:
    """All sampled frames at once, uint8 [T, H, W, 3] (short clips, tests)."""
    return np.concatenate(list(open_video(path, max_frames).chunks()))


def read_audio(path: str, max_seconds: float | None = None, name: str | None = None
               ) -> np.ndarray | None:
    """The first `max_seconds` of the audio track as float32 mono 16 kHz, or None if the
    file has no audio stream (decoded as a stream: extract/decode_av.py)."""
    from .decode_av import decode_audio

    track = decode_audio(path, max_seconds, name)
    return None if track is None else track.samples
