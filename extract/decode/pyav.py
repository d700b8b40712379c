"""The first reader: PyAV, FFmpeg's own decoders.

The frame rule (extract/decode/frame_rule.py) is computed from the packets' timestamps,
read without decoding (extract/decode/packets.py). Frames are then decoded in one
forward pass, and only as far as the kept frames need: the packet plan (GopPlan) skips
the groups of pictures that hold no kept frame and what follows a group's last kept
frame, and within what is decoded FFmpeg drops the non-reference frames nobody keeps
(`skip_frame = NONREF`). The kept frames are exactly those of a full decode. The
rotation is applied as ffmpeg's autorotation does (`np.rot90` by the display matrix's
angle, checked against `ffmpeg` itself), so a phone clip comes out upright.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass, field
from typing import Iterator

import numpy as np

from yt8m.errors import RejectedInput

from ..config import CHUNK_BYTES
from .container import av_lib, open_container
from .frame_rule import CHUNK_FRAMES, VideoInfo, chunk_lengths, frame_indices
from .packets import READ_AHEAD_S, Admit, GopPlan, presentation, read_packets, tail_end
from .reader import DecoderFailed, short_reason

TRUNCATION_TOLERANCE_S = 1.0  # declared minus decodable duration beyond this (and 5 %) is a cut file


@dataclass
class AvVideo:
    """A video decoded by PyAV: `info` (the frame rule's result) and `chunks()`."""

    path: str
    name: str
    info: VideoInfo
    rotation: int  # counter-clockwise degrees
    wanted: dict[int, list[int]] = field(repr=False)  # packet key -> output positions
    by_pts: bool = True  # keys are pts; else decode order counters (no timestamps)
    gops: "GopPlan | None" = field(default=None, repr=False)  # None: decode every packet
    frame_threads: bool = False
    accept_truncated: bool = False
    decoder: str = "pyav"
    # FFmpeg's hardware decoding (av.codec.hwaccel.HWAccel), for trying it on a GPU
    # machine (bench/extract_gpu.py checks its frames against software decoding).
    hwaccel: object = field(default=None, repr=False)
    decoded_packets: int = 0  # packets sent to the decoder by the last chunks()
    max_pixels: int | None = None  # FFmpeg allocates no larger frame (see open_container)

    @classmethod
    def open(cls, path: str, max_frames: int, name: str, frame_threads: bool = False,
             accept_truncated: bool = False, max_pixels: int | None = None) -> "AvVideo":
        container = open_container(path, name, max_pixels=max_pixels)
        with container:
            if not container.streams.video:
                raise DecoderFailed(name, "no video stream (the file holds no video frames)")
            stream = container.streams.video[0]
            _check_pixels(name, stream, max_pixels)
            declared = _declared_seconds(container, stream)
            packets = read_packets(container, stream, name, max_frames + READ_AHEAD_S)
            end = None if packets.complete else tail_end(container, stream, declared)
            if end is None and not packets.complete and declared is not None:
                packets = read_packets(container, stream, name)  # its end did not read: cut?
            starts, ends, keys, by_pts = presentation(packets, stream)
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
        gops = GopPlan.make(packets, set(wanted)) if by_pts else None
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
        av = av_lib()
        remaining = sum(len(p) for p in self.wanted.values())
        counter = 0
        with open_container(self.path, self.name, self.hwaccel, self.max_pixels) as container:
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
                if admit is Admit.SKIP:
                    continue
                if admit is Admit.RESUME:  # as after a seek: out with what the decoder holds
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


def _check_pixels(name: str, stream, max_pixels: int | None) -> None:
    """RejectedInput when the stream's declared frame size is over `max_pixels`."""
    width, height = stream.codec_context.width or 0, stream.codec_context.height or 0
    if max_pixels is not None and width * height > max_pixels:
        raise RejectedInput(name, f"frames of {width}x{height} pixels are over the limit of "
                                  f"{max_pixels} pixels")


def _first_frame(container, stream, name: str):
    av = av_lib()
    try:
        for frame in container.decode(stream):
            return frame
    except av.error.FFmpegError as e:
        raise DecoderFailed(name, f"corrupt video stream: the first frame does not decode "
                                  f"({short_reason(e)})") from None
    raise DecoderFailed(name, "corrupt video stream: no frame decodes")
