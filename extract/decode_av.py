"""Decoding through PyAV (FFmpeg's own decoders): the frames, and the audio track.

Video. The frame rule (extract/decode.py: the frame shown at t = 0, 1, 2, ...)
is computed from the packets' timestamps, read without decoding. Frames are then
decoded in one forward pass, and only as far as the kept frames need: groups of
pictures that hold no kept frame, and what follows a group's last kept frame,
are not decoded at all (_GopPlan; with 1-second groups that is one packet per
second), and within what is decoded FFmpeg drops the non-reference frames
nobody keeps (`skip_frame = NONREF`). The kept frames are exactly those of a
full decode. The rotation is applied as
ffmpeg's autorotation does (`np.rot90` by the display matrix's angle, checked
against `ffmpeg` itself), so a phone clip comes out upright.

Audio. The stream FFmpeg picks as the default (`av_find_best_stream`), or if that
one is silent the first stream with sound, is decoded packet by packet and only
as far as needed: the first `max_seconds` plus a margin
that covers the resampling filter, whatever the track's length or channel count.
Channels are averaged to mono and resampled to 16 kHz as resampy's `kaiser_best`
does (extract/resample.py), what the VGGish reference calls; the margin makes the
kept samples equal to resampling the whole track. Sample 0 is t = 0 of the video.
"""
from __future__ import annotations

import enum
import math
import sys
from dataclasses import dataclass, field
from typing import Iterator

import numpy as np

from yt8m.errors import RejectedInput

from .decode import (CHUNK_BYTES, CHUNK_FRAMES, DecoderFailed, VideoInfo, chunk_lengths,
                     frame_indices, short_reason)
from .resample import TARGET_RATE, resample_to_16k

TRUNCATION_TOLERANCE_S = 1.0  # declared minus decodable duration beyond this (and 5 %) is a cut file
# Audio decoded past `max_seconds`: resampy's kaiser_best reaches 64 zero crossings
# (<= 4 ms at 8-48 kHz) to either side, so 0.25 s leaves the kept samples untouched.
RESAMPLE_MARGIN_S = 0.25
# Packets read past the last kept second, for the frame rule: frame reordering (a few
# frames) never spans this, so every frame shown before that second is among them.
READ_AHEAD_S = 10.0


def _av():
    import av
    return av


def _open(path: str, name: str, hwaccel=None, max_pixels: int | None = None):
    """The container; with `max_pixels`, FFmpeg's decoders allocate no larger frame (also
    while the container is probed, which decodes a frame where headers say too little)."""
    av = _av()
    options = {} if max_pixels is None else {"max_pixels": str(max_pixels)}
    try:
        container = av.open(path, hwaccel=hwaccel, options=options)
    except (av.error.FFmpegError, OSError, UnicodeDecodeError) as e:
        raise DecoderFailed(name, f"PyAV cannot open it ({short_reason(e)})") from None
    if max_pixels is not None:
        for stream in container.streams.video:
            stream.codec_context.options = dict(options)
    return container


@dataclass
class AvVideo:
    """A video decoded by PyAV: `info` (the frame rule's result) and `chunks()`."""

    path: str
    name: str
    info: VideoInfo
    rotation: int  # counter-clockwise degrees
    wanted: dict[int, list[int]] = field(repr=False)  # packet key -> output positions
    by_pts: bool = True  # keys are pts; else decode order counters (no timestamps)
    gops: "_GopPlan | None" = field(default=None, repr=False)  # None: decode every packet
    frame_threads: bool = False
    accept_truncated: bool = False
    decoder: str = "pyav"
    # FFmpeg's hardware decoding (av.codec.hwaccel.HWAccel), for trying it on a GPU
    # machine (bench/extract_gpu.py checks its frames against software decoding).
    hwaccel: object = field(default=None, repr=False)
    decoded_packets: int = 0  # packets sent to the decoder by the last chunks()
    max_pixels: int | None = None  # FFmpeg allocates no larger frame (see _open)

    @classmethod
    def open(cls, path: str, max_frames: int, name: str, frame_threads: bool = False,
             accept_truncated: bool = False, max_pixels: int | None = None) -> "AvVideo":
        container = _open(path, name, max_pixels=max_pixels)
        with container:
            if not container.streams.video:
                raise DecoderFailed(name, "no video stream (the file holds no video frames)")
            stream = container.streams.video[0]
            _check_pixels(name, stream, max_pixels)
            declared = _declared_seconds(container, stream)
            packets = _read_packets(container, stream, name, max_frames + READ_AHEAD_S)
            end = None if packets.complete else _tail_end(container, stream, declared)
            if end is None and not packets.complete and declared is not None:
                packets = _read_packets(container, stream, name)  # its end did not read: cut?
            starts, ends, keys, by_pts = _presentation(packets, stream)
            first = _first_frame(container, stream, name)
        if len(starts) == 1:
            raise RejectedInput(name, "zero duration: a single frame (a still image, not a video)")
        indices, duration = frame_indices(starts, ends, max_frames)
        if end is not None:  # the packets read stop early; the file goes on to `end`
            duration = max(duration, end - float(starts.min()))
        _check_truncation(name, declared, duration, accept_truncated)
        if len(indices) == 0:
            raise RejectedInput(name, f"zero duration ({duration:.3f} s): shorter than one "
                                      "frame interval")
        wanted: dict[int, list[int]] = {}
        for position, i in enumerate(indices):
            wanted.setdefault(int(keys[i]), []).append(position)
        rotation = int(round((first.rotation or 0) / 90.0)) * 90 % 360
        h, w = first.height, first.width
        if rotation in (90, 270):
            h, w = w, h
        info = VideoInfo(path, w, h, len(starts), duration, np.asarray(indices, np.int64))
        gops = _GopPlan.make(packets, set(wanted)) if by_pts else None
        return cls(path, name, info, rotation, wanted, by_pts, gops, frame_threads,
                   accept_truncated, max_pixels=max_pixels)

    def chunks(self, chunk_bytes: int = CHUNK_BYTES, chunk_frames: int = CHUNK_FRAMES
               ) -> Iterator[np.ndarray]:
        """uint8 RGB chunks [k, H, W, 3] of the frames at t = 0, 1, ... s, in order."""
        lengths = chunk_lengths(self.info, chunk_bytes, chunk_frames)
        want, buffer = next(lengths), []
        for frame in self._frames_in_order():
            buffer.append(frame)
            if len(buffer) == want:
                yield np.stack(buffer)
                want, buffer = next(lengths), []
        if buffer:
            yield np.stack(buffer)

    def _frames_in_order(self) -> Iterator[np.ndarray]:
        """One frame per output position. Kept frames come out of the decoder in
        presentation order; a position the decoder skipped (a damaged frame) gets the
        frame shown before it, as a player would show it, and so do the positions after
        the end of an accepted cut file."""
        filled, last = 0, None
        for position, frame in self._kept_frames():
            while filled < position:
                yield frame if last is None else last
                filled += 1
            yield frame
            filled, last = filled + 1, frame
        if filled < self.info.n_frames and not (self.accept_truncated and last is not None):
            raise RejectedInput(self.name, f"truncated: decodable frames end before t = {filled} s "
                                           f"of {self.info.duration:.1f} s")
        for _ in range(filled, self.info.n_frames):
            yield last

    def _check_size(self, frame) -> None:
        """Every frame as large as the first: memory was planned (and a server's pixel limit
        checked) on that size, so a stream that grows mid-way is refused."""
        if (frame.width, frame.height) != _stored_size(self.info, self.rotation):
            raise RejectedInput(self.name, f"the frame size changes mid-stream (to {frame.width}x"
                                           f"{frame.height}); such streams are not supported")

    def _kept_frames(self) -> Iterator[tuple[int, np.ndarray]]:
        """(output position, upright RGB frame) for every kept frame, decoding forward once."""
        av = _av()
        remaining = sum(len(p) for p in self.wanted.values())
        counter = 0
        with _open(self.path, self.name, self.hwaccel, self.max_pixels) as container:
            try:
                for frames in self._decoded(container):
                    for frame in frames:
                        self._check_size(frame)
                        positions = self.wanted.get(frame.pts if self.by_pts else counter, ())
                        counter += 1
                        if positions:  # converted once, however many seconds it is shown
                            image = np.rot90(frame.to_ndarray(format="rgb24"), self.rotation // 90)
                        for position in positions:
                            yield position, image
                            remaining -= 1
                    if remaining <= 0:
                        return
            except av.error.FFmpegError as e:
                if not self.accept_truncated:
                    limit = "" if self.max_pixels is None else \
                        f", or frames over the limit of {self.max_pixels} pixels"
                    raise RejectedInput(self.name, f"truncated or corrupt video stream{limit}: "
                                                   f"decoding failed ({short_reason(e)})") from None

    def _decoded(self, container) -> Iterator[list]:
        """The decoder's output, packet by packet, sending only the packets kept frames need."""
        stream = container.streams.video[0]
        # Frame threads only where cores are idle (inference on a GPU); on a CPU they
        # compete with inference. FFmpeg hands skip_frame to each frame thread with its
        # packet, so skipping stays per packet (checked: the same frames either way).
        stream.thread_type = "AUTO" if self.frame_threads else "SLICE"
        context = stream.codec_context
        self.decoded_packets, active = 0, True
        for packet in container.demux(stream):
            if self.gops is not None and packet.size:  # (size 0: the final flush)
                admit, active = self.gops.step(packet.pts, active)
                if admit is _Admit.SKIP:
                    continue
                if admit is _Admit.RESUME:  # as after a seek: out with what the decoder holds
                    yield context.decode(None)
                    context.flush_buffers()
            if self.by_pts and packet.pts is not None:
                context.skip_frame = "DEFAULT" if packet.pts in self.wanted else "NONREF"
            self.decoded_packets += packet.size > 0
            yield packet.decode()


def _declared_seconds(container, stream) -> float | None:
    """The video stream's duration as its index declares it (MP4/MOV do), if any. The
    container's own duration is not used: it also covers a longer audio track."""
    if stream.duration and stream.time_base:
        return float(stream.duration * stream.time_base)
    return None


def _check_truncation(name: str, declared: float | None, decodable: float,
                      accept: bool) -> None:
    """Frames that end well before the declared duration: a cut file, reported as such."""
    if declared is None or declared - decodable <= max(TRUNCATION_TOLERANCE_S, 0.05 * declared):
        return
    what = (f"truncated: the file declares {declared:.1f} s but its decodable frames end at "
            f"{decodable:.1f} s (an interrupted download or copy?)")
    if not accept:
        raise RejectedInput(name, what + "; --accept-truncated keeps what decodes")
    print(f"warning: {name}: {what}; kept (--accept-truncated)", file=sys.stderr)


def _stored_size(info: VideoInfo, rotation: int) -> tuple[int, int]:
    return (info.height, info.width) if rotation in (90, 270) else (info.width, info.height)


@dataclass
class _Packets:
    """The video packets in decode order, as the demuxer gives them (no decoding)."""

    pts: list  # int, or None where the stream has no timestamps
    durations: list[int]
    restarts: list[bool]  # decoding may start afresh here: nothing after it looks back
    shown: list[bool]  # False: decoded only as a reference, never shown (an edit list
    # that starts mid-group, as `ffmpeg -ss T -c copy` writes, marks such packets)
    complete: bool = True  # False: reading stopped past the seconds the frame rule needs


def _read_packets(container, stream, name: str, until_s: float | None = None) -> _Packets:
    """The packets, up to the first one shown `until_s` seconds after the first shown one
    (None: all): a 2-hour film is not read to its end for 300 frames."""
    av = _av()
    packets = _Packets([], [], [], [])
    restart = _restart_test(stream)
    limit = origin = None
    if until_s is not None and stream.time_base:
        limit = int(until_s / float(stream.time_base))
    try:
        for packet in container.demux(stream):
            if packet.size == 0:  # the demuxer's end-of-stream marker
                continue
            packets.pts.append(packet.pts)
            packets.durations.append(packet.duration or 0)
            packets.restarts.append(restart(packet))
            packets.shown.append(not packet.is_discard)
            if origin is None and packets.shown[-1]:
                origin = packet.pts
            if None not in (limit, origin, packet.pts) and packet.pts - origin > limit:
                packets.complete = False
                break
    except av.error.FFmpegError as e:
        if not packets.pts:
            raise DecoderFailed(name, f"unreadable video packets ({short_reason(e)})") from None
    if not packets.pts:
        raise DecoderFailed(name, "no video frames in the video stream")
    container.seek(0)
    return packets


def _tail_end(container, stream, declared: float | None) -> float | None:
    """When the last frame ends (s, on the stream's clock), reading only the file's last
    group of pictures; None when that part does not read (a cut file, or no known end)."""
    av = _av()
    seconds = declared if declared is not None else (
        container.duration / 1e6 if container.duration else None)
    if seconds is None or not stream.time_base:
        return None
    tb, rate = float(stream.time_base), _frame_rate(stream)
    origin = stream.start_time or 0
    end = None
    try:
        container.seek(origin + max(0, int((seconds - 1.0) / tb)), stream=stream, backward=True)
        for packet in container.demux(stream):
            if packet.size and packet.pts is not None:
                stop = packet.pts * tb + (packet.duration * tb if packet.duration else 1.0 / rate)
                end = stop if end is None else max(end, stop)
    except av.error.FFmpegError:
        end = None
    container.seek(0)
    return end


def _frame_rate(stream) -> float:
    """Frames per second, for frames without a duration or timestamp (25 if unknown)."""
    return float(stream.average_rate or stream.guessed_rate or 25)


def _presentation(packets: _Packets, stream):
    """Each frame's presentation interval (s), in presentation order, and the key that
    finds its decoded frame: (starts, ends, keys, by_pts)."""
    pts = packets.pts
    rate = _frame_rate(stream)
    if any(p is None for p in pts):  # no timestamps: a constant rate, frames in order
        starts = np.arange(len(pts)) / rate
        return starts, starts + 1.0 / rate, np.arange(len(pts)), False
    # The frames shown, in presentation order (packets come in decode order), so that
    # indices mean what decord's do: the n-th frame shown. t = 0 is the first one shown.
    shown = np.flatnonzero(packets.shown) if any(packets.shown) else np.arange(len(pts))
    order = shown[np.argsort(np.asarray(pts, np.int64)[shown], kind="stable")]
    keys = np.asarray(pts, np.int64)[order]
    lengths = np.asarray(packets.durations, np.float64)[order]
    tb = float(stream.time_base)
    starts = keys * tb
    ends = starts + np.where(lengths > 0, lengths * tb, 1.0 / rate)
    return starts, ends, keys, True


# Codecs whose keyframes drop every earlier reference (when no leading pictures follow
# them, see _GopPlan): H.264 only at IDR pictures, checked in the packet; HEVC's IRAP
# pictures; the others' key frames by definition.
_RESTART_AT_KEYFRAMES = frozenset({"hevc", "vp8", "vp9", "av1", "mpeg4", "h263", "mpeg1video",
                                   "mpeg2video", "mjpeg", "theora", "prores", "dnxhd"})


def _restart_test(stream):
    """packet -> whether decoding may start afresh there (False for unknown codecs)."""
    codec = stream.codec_context.name
    if codec == "h264":
        extradata = stream.codec_context.extradata
        return lambda packet: packet.is_keyframe and _h264_has_idr(bytes(packet), extradata)
    if codec in _RESTART_AT_KEYFRAMES:
        return lambda packet: packet.is_keyframe
    return lambda packet: False


def _h264_has_idr(data: bytes, extradata: bytes | None) -> bool:
    """Whether an H.264 access unit holds an IDR slice (NAL type 5). A keyframe flag alone
    is not enough: after a recovery-point I picture, P pictures may still refer back."""
    if extradata and extradata[0] == 1:  # avcC: each NAL unit prefixed by its length
        size, at = (extradata[4] & 3) + 1, 0
        while at + size < len(data):
            kind = data[at + size] & 0x1F
            if kind in (1, 5):  # the first slice decides
                return kind == 5
            at += size + int.from_bytes(data[at:at + size], "big")
        return False
    at = data.find(b"\x00\x00\x01")  # Annex B: NAL units after start codes
    while 0 <= at < len(data) - 3:
        kind = data[at + 3] & 0x1F
        if kind in (1, 5):
            return kind == 5
        at = data.find(b"\x00\x00\x01", at + 3)
    return False


class _Admit(enum.Enum):
    """What to do with a packet."""

    SKIP = "skip"  # no kept frame needs it
    DECODE = "decode"
    RESUME = "resume"  # a restart point after skipped packets: empty the decoder, reset it


@dataclass(frozen=True)
class _GopPlan:
    """Which packets the kept frames need.

    A group of pictures runs from one clean restart point to the next: a restart point
    (_restart_test) that no later packet of its group is shown before (no leading
    pictures: an open GOP's keyframe is not clean). Nothing in a group refers to a
    packet before it. So a group with no kept frame is not decoded, nor the packets
    after a group's last kept frame (in decode order: every frame it refers to comes
    before it). Frames the decoder still holds back for reordering come out when it is
    emptied before the next group it decodes, which then starts as after a seek."""

    restarts: frozenset  # pts of the clean restart points
    needed: frozenset  # pts of the clean restart points whose group holds a kept frame
    last: frozenset  # pts of each group's last kept frame, in decode order

    @classmethod
    def make(cls, packets: _Packets, kept: set[int]) -> "_GopPlan | None":
        pts = np.asarray(packets.pts, np.int64)
        starts = np.flatnonzero(packets.restarts)
        if len(np.unique(pts)) != len(pts) or len(starts) == 0 or starts[0] != 0:
            return None
        ends = list(starts[1:]) + [len(pts)]
        clean = [int(a) for a, b in zip(starts, ends) if not np.any(pts[a + 1:b] < pts[a])]
        clean = sorted(set(clean) | {0})  # the stream starts where it starts
        is_kept = np.isin(pts, np.fromiter(kept, np.int64, len(kept)))
        needed, last = set(), set()
        for a, b in zip(clean, clean[1:] + [len(pts)]):
            hits = np.flatnonzero(is_kept[a:b])
            if len(hits):
                needed.add(int(pts[a]))
                last.add(int(pts[a + hits[-1]]))
        return cls(frozenset(pts[clean].tolist()), frozenset(needed), frozenset(last))

    def step(self, pts: int | None, active: bool) -> tuple[_Admit, bool]:
        """What to do with this packet, and whether the ones after it are needed;
        `active`: whether the one before it was."""
        admit = _Admit.DECODE if active else _Admit.SKIP
        if pts in self.restarts:
            needed = pts in self.needed
            admit = _Admit.SKIP if not needed else _Admit.DECODE if active else _Admit.RESUME
            active = needed
        return admit, active and pts not in self.last


def _check_pixels(name: str, stream, max_pixels: int | None) -> None:
    """RejectedInput when the stream's declared frame size is over `max_pixels`."""
    width, height = stream.codec_context.width or 0, stream.codec_context.height or 0
    if max_pixels is not None and width * height > max_pixels:
        raise RejectedInput(name, f"frames of {width}x{height} pixels are over the limit of "
                                  f"{max_pixels} pixels")


def _first_frame(container, stream, name: str):
    av = _av()
    try:
        for frame in container.decode(stream):
            return frame
    except av.error.FFmpegError as e:
        raise DecoderFailed(name, f"corrupt video stream: the first frame does not decode "
                                  f"({short_reason(e)})") from None
    raise DecoderFailed(name, "corrupt video stream: no frame decodes")


# --------------------------------------------------------------------------- audio

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
    with _open(path, name) as container:
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
    av = _av()
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


