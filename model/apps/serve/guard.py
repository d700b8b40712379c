"""What keeps `serve` alive in front of its clients: its settings and limits, the probe
that refuses media over the limits before anything is decoded, the token a
non-loopback server requires, and the sweep of a crashed run's temporary files.

Light at import time (no FastAPI, no torch): the settings are also the source of
`serve`'s flags.
"""
from __future__ import annotations

import glob
import hmac
import ipaddress
import os
import re
import shutil
import tempfile
from dataclasses import dataclass

from yt8m.atomic import process_alive
from yt8m.cli_util import flag_field as _f

from ..config import LABELS_PER_CLIP

TOKEN_ENV = "YT8M_SERVE_TOKEN"
TEMP_PREFIX = "yt8m-serve-"


@dataclass
class ServeSettings:
    host: str = _f("127.0.0.1", "address to bind; any other than loopback needs --token")
    port: int = _f(8000, "TCP port")
    token: str | None = _f(None, f"clients must send `Authorization: Bearer TOKEN` (default: the "
                                 f"{TOKEN_ENV} environment variable)", metavar="TOKEN",
                           default_help=f"${TOKEN_ENV}")
    max_upload_bytes: int = 512 << 20
    timeout_s: float = _f(300.0, "per-request limit on waiting for the answer; then 504, and "
                                 "the request's work stops at its next chunk")
    max_queue: int = _f(32, "requests waiting for the model at most; more get 503 with "
                            "Retry-After")
    body_timeout_s: float = _f(30.0, "longest wait for the next piece of a request body; then 408")
    idle_timeout_s: float = _f(5.0, "an idle keep-alive connection is closed after this")
    max_connections: int = _f(64, "open connections at most; more get 503")
    max_pixels: int = _f(3840 * 2160, "largest frame accepted, in pixels (default 4K UHD); "
                                      "larger gets 413 before anything is decoded")
    max_duration_s: float = _f(6 * 3600.0, "longest clip accepted, by its declared duration; "
                                           "longer gets 413")
    max_channels: int = _f(16, "most audio channels accepted; more gets 413")
    max_pixels_in_flight: int = _f(8 * 3840 * 2160, "the frame sizes of all clips waiting or being "
                                                    "classified, added up, in pixels; a clip "
                                                    "beyond it gets 503 with Retry-After",
                                   default_help="66355200: eight 4K clips, or 32 of 1080p")
    max_batch: int = _f(8, "requests gathered into one extraction + model call")
    batch_wait_s: float = 0.01
    top_k: int = _f(LABELS_PER_CLIP, "labels per clip", metavar="K")
    temp_dir: str | None = _f(None, "folder for uploads being classified (default: a new folder "
                                    "in the system's temp dir, removed at exit)", metavar="DIR")
    quiet: bool = False


class HTTPProblem(Exception):
    """An expected failure of one request: status code and a message saying what to do."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.message, self.headers = status, message, headers or {}


# --------------------------------------------------------------------------- media limits

@dataclass(frozen=True)
class MediaHeader:
    """What a clip's container and stream headers declare."""

    pixels: int  # of its largest video frame; 0 when no header says


def probe_limits(path: str, name: str, settings: ServeSettings) -> MediaHeader:
    """HTTPProblem (413) when the file declares frames, duration or channels over the
    limits. Reads container and stream headers only: FFmpeg's probe would otherwise open a
    decoder and decode a frame where the headers say too little (tens to hundreds of MB for
    one huge frame), so no decoder is allowed to open. Undecodable files pass: the decoder
    names what is wrong with them (422)."""
    import av

    try:
        container = av.open(path, options={"codec_whitelist": "none"})
    except (av.error.FFmpegError, OSError, UnicodeDecodeError):
        return MediaHeader(0)
    pixels = 0
    with container:
        for stream in container.streams.video:
            width, height = stream.codec_context.width or 0, stream.codec_context.height or 0
            if width * height > settings.max_pixels:
                raise HTTPProblem(413, f"{name}: frames of {width}x{height} pixels are over this "
                                       f"server's limit of {settings.max_pixels} (--max-pixels)")
            pixels = max(pixels, width * height)
        for stream in container.streams.audio:
            if (stream.codec_context.channels or 0) > settings.max_channels:
                raise HTTPProblem(413, f"{name}: {stream.codec_context.channels} audio channels are "
                                       f"over this server's limit of {settings.max_channels} "
                                       "(--max-channels)")
        seconds = container.duration / 1e6 if container.duration else 0.0
        if seconds > settings.max_duration_s:
            raise HTTPProblem(413, f"{name}: {seconds:.0f} s long, over this server's limit of "
                                   f"{settings.max_duration_s:g} s (--max-duration-s)")
    return MediaHeader(pixels)


# --------------------------------------------------------------------------- the token

def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def resolve_token(settings: ServeSettings) -> str | None:
    """--token, else the environment; a non-loopback host without one is refused."""
    from yt8m.errors import UsageError

    token = settings.token or os.environ.get(TOKEN_ENV) or None
    if token is None and not is_loopback(settings.host):
        raise UsageError(f"--host {settings.host} makes the service reachable from other "
                         f"machines, so it needs a token: pass --token TOKEN or set {TOKEN_ENV} "
                         "(clients send `Authorization: Bearer TOKEN`), or serve on 127.0.0.1.")
    return token


def authorized(header: str | None, token: str) -> bool:
    """`Authorization: Bearer TOKEN`, compared in constant time."""
    scheme, _, given = (header or "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), token.encode())


# --------------------------------------------------------------------------- temp files

def upload_folder(temp_dir: str | None) -> tuple[str, bool]:
    """(folder for uploads, whether this server owns it). Temporary files left by a server
    that crashed are swept first: folders of dead servers, or in --temp-dir (which belongs
    to this server) any upload file."""
    if temp_dir is not None:
        os.makedirs(temp_dir, exist_ok=True)
        for stale in glob.glob(os.path.join(glob.escape(temp_dir), "upload-*")):
            os.remove(stale)
        return temp_dir, False
    for folder in glob.glob(os.path.join(tempfile.gettempdir(), TEMP_PREFIX + "*")):
        m = re.fullmatch(re.escape(TEMP_PREFIX) + r"(\d+)-.*", os.path.basename(folder))
        if m and not process_alive(int(m.group(1))):
            shutil.rmtree(folder, ignore_errors=True)
    return tempfile.mkdtemp(prefix=f"{TEMP_PREFIX}{os.getpid()}-"), True
