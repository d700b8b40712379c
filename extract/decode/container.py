"""Opening a file with PyAV (FFmpeg), for the frames and for the audio alike.

PyAV is imported on first use, so that importing the package stays cheap.
"""
from __future__ import annotations

from .reader import DecoderFailed, short_reason


def av_lib():
    """The `av` module (imported on first use)."""
    import av
    return av


def open_container(path: str, name: str, hwaccel=None, max_pixels: int | None = None):
    """The container; with `max_pixels`, FFmpeg's decoders allocate no larger frame (also
    while the container is probed, which decodes a frame where headers say too little)."""
    av = av_lib()
    options = {} if max_pixels is None else {"max_pixels": str(max_pixels)}
    try:
        container = av.open(path, hwaccel=hwaccel, options=options)
    except (av.error.FFmpegError, OSError, UnicodeDecodeError) as e:
        raise DecoderFailed(name, f"PyAV cannot open it ({short_reason(e)})") from None
    if max_pixels is not None:
        for stream in container.streams.video:
            stream.codec_context.options = dict(options)
    return container
