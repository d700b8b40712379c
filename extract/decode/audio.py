"""The audio track, decoded by PyAV as a stream, only as far as needed.

The stream FFmpeg picks as the default (`av_find_best_stream`), or if that one is silent
the first stream with sound, is decoded packet by packet: the first `max_seconds` plus a
margin that covers the resampling filter, whatever the track's length or channel count.
Channels are averaged to mono and resampled to 16 kHz as resampy's `kaiser_best` does
(extract/resample.py), what the VGGish reference calls; the margin makes the kept
samples equal to resampling the whole track. Sample 0 is t = 0 of the video.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from yt8m.errors import RejectedInput

from ..resample import TARGET_RATE, resample_to_16k
from .container import av_lib, open_container
from .reader import short_reason

# Audio decoded past `max_seconds`: resampy's kaiser_best reaches 64 zero crossings
# (<= 4 ms at 8-48 kHz) to either side, so 0.25 s leaves the kept samples untouched.
RESAMPLE_MARGIN_S = 0.25


@dataclass
class AudioTrack:
    """The sound of a video's first seconds, as VGGish wants it, and what decoding cost."""

    samples: np.ndarray  # float32 mono at 16 kHz
    native_rate: int
    channels: int
    decoded_seconds: float  # how much of the track was decoded (bounded by max_seconds)


def decode_audio(path: str, max_seconds: float | None = None, name: str | None = None
                 ) -> AudioTrack | None:
    """The first `max_seconds` of the sound as 16 kHz mono: from the audio stream FFmpeg
    picks as the default, or when that one is silent the first stream with sound. None
    when there is no audio stream, or only silent ones."""
    name = name or path
    with open_container(path, name) as container:
        for stream in _audio_candidates(container):
            track = _decode_stream(container, stream, max_seconds, name)
            if track is not None:
                return track
            container.seek(0)
    return None


def _audio_candidates(container) -> list:
    """The default audio stream (av_find_best_stream) first, then the others in order."""
    streams = list(container.streams.audio)
    if not streams:
        return []
    try:
        best = container.streams.best("audio")
    except Exception:  # noqa: BLE001 - older PyAV without best(): the first
        best = streams[0]
    return [best] + [s for s in streams if s.index != best.index]


def _decode_stream(container, stream, max_seconds: float | None, name: str) -> AudioTrack | None:
    """One stream's first seconds; None when they are silence (all zero)."""
    av = av_lib()
    rate = int(stream.codec_context.sample_rate or stream.rate or 0)
    if rate <= 0:
        raise RejectedInput(name, "the audio track declares no sample rate")
    limit = None if max_seconds is None else int(math.ceil((max_seconds + RESAMPLE_MARGIN_S) * rate))
    buffer = _MonoBuffer(limit)
    channels = 0
    resampler = av.AudioResampler(format="fltp")  # planar float, same rate and layout
    try:
        for frame in container.decode(stream):
            for out in resampler.resample(frame):
                planes = out.to_ndarray()  # [channels, n] float32
                channels = planes.shape[0]
                buffer.add(planes.mean(axis=0, dtype=np.float32))
            if buffer.full:
                break
    except av.error.FFmpegError as e:
        if buffer.size == 0:
            raise RejectedInput(name, f"corrupt audio track ({short_reason(e)})") from None
    mono = buffer.samples()
    if not mono.size or not np.any(mono):
        return None
    samples = resample_to_16k(mono, rate)
    if max_seconds is not None:
        samples = samples[:int(math.ceil(max_seconds * TARGET_RATE))]
    return AudioTrack(samples.astype(np.float32, copy=False), rate, channels, buffer.decoded / rate)


class _MonoBuffer:
    """Mono float32 samples up to `limit` (None: unbounded), preallocated when bounded."""

    def __init__(self, limit: int | None):
        self.limit, self.size, self.decoded = limit, 0, 0
        self._data = np.empty(limit if limit is not None else 1 << 16, np.float32)

    @property
    def full(self) -> bool:
        return self.limit is not None and self.size >= self.limit

    def add(self, mono: np.ndarray) -> None:
        self.decoded += len(mono)
        if self.limit is not None:
            mono = mono[:self.limit - self.size]
        elif self.size + len(mono) > len(self._data):
            self._data = np.resize(self._data, max(2 * len(self._data), self.size + len(mono)))
        self._data[self.size:self.size + len(mono)] = mono
        self.size += len(mono)

    def samples(self) -> np.ndarray:
        return self._data[:self.size]


def read_audio(path: str, max_seconds: float | None = None, name: str | None = None
               ) -> np.ndarray | None:
    """The first `max_seconds` of the audio track as float32 mono 16 kHz, or None if the
    file has no audio stream (or only silent ones)."""
    track = decode_audio(path, max_seconds, name)
    return None if track is None else track.samples
