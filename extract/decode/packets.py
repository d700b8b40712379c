"""The video stream's packets, read without decoding, and the plan of which to decode.

The frame rule needs every frame's presentation interval: that comes from the packets'
timestamps (read_packets, presentation), only as far as the kept seconds need (plus
READ_AHEAD_S), with the end of a long file read from its last group of pictures
(tail_end). The packet plan (GopPlan) then says which packets the kept frames need:
groups of pictures that hold no kept frame, and what follows a group's last kept frame,
are not decoded at all (with 1-second groups that is one packet per second).
"""
from __future__ import annotations

import enum
from dataclasses import dataclass

import numpy as np

from .container import av_lib
from .reader import DecoderFailed, short_reason

# Packets read past the last kept second, for the frame rule: frame reordering (a few
# frames) never spans this, so every frame shown before that second is among them.
READ_AHEAD_S = 10.0


@dataclass
class Packets:
    """The video packets in decode order, as the demuxer gives them (no decoding)."""

    pts: list  # int, or None where the stream has no timestamps
    durations: list[int]
    restarts: list[bool]  # decoding may start afresh here: nothing after it looks back
    shown: list[bool]  # False: decoded only as a reference, never shown (an edit list
    # that starts mid-group, as `ffmpeg -ss T -c copy` writes, marks such packets)
    complete: bool = True  # False: reading stopped past the seconds the frame rule needs


def read_packets(container, stream, name: str, until_s: float | None = None) -> Packets:
    """The packets, up to the first one shown `until_s` seconds after the first shown one
    (None: all): a 2-hour film is not read to its end for 300 frames."""
    av = av_lib()
    packets = Packets([], [], [], [])
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


def tail_end(container, stream, declared: float | None) -> float | None:
    """When the last frame ends (s, on the stream's clock), reading only the file's last
    group of pictures; None when that part does not read (a cut file, or no known end)."""
    av = av_lib()
    seconds = declared if declared is not None else (
        container.duration / 1e6 if container.duration else None)
    if seconds is None or not stream.time_base:
        return None
    tb, rate = float(stream.time_base), frame_rate(stream)
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


def frame_rate(stream) -> float:
    """Frames per second, for frames without a duration or timestamp (25 if unknown)."""
    return float(stream.average_rate or stream.guessed_rate or 25)


def presentation(packets: Packets, stream):
    """Each frame's presentation interval (s), in presentation order, and the key that
    finds its decoded frame: (starts, ends, keys, by_pts)."""
    pts = packets.pts
    rate = frame_rate(stream)
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
# them, see GopPlan): H.264 only at IDR pictures, checked in the packet; HEVC's IRAP
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


class Admit(enum.Enum):
    """What to do with a packet."""

    SKIP = "skip"  # no kept frame needs it
    DECODE = "decode"
    RESUME = "resume"  # a restart point after skipped packets: empty the decoder, reset it


@dataclass(frozen=True)
class GopPlan:
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
    def make(cls, packets: Packets, kept: set[int]) -> "GopPlan | None":
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

    def step(self, pts: int | None, active: bool) -> tuple[Admit, bool]:
        """What to do with this packet, and whether the ones after it are needed;
        `active`: whether the one before it was."""
        admit = Admit.DECODE if active else Admit.SKIP
        if pts in self.restarts:
            needed = pts in self.needed
            admit = Admit.SKIP if not needed else Admit.DECODE if active else Admit.RESUME
            active = needed
        return admit, active and pts not in self.last
