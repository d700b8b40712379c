"""One HTTP download into a `.partial` file: continued with a Range request, and held to
the size the server declared (Content-Length, Content-Range), so that a part that does
not belong to the file is discarded instead of being renamed into place.

The caller owns the part (one process per part: see yt8m.assets.one_at_a_time) and
verifies the content; this module only moves bytes and checks their count.
"""
from __future__ import annotations

import contextlib
import http.client
import os
import re
import socket
import urllib.error
import urllib.request

TIMEOUT_S = 60.0  # seconds without a byte before a download counts as lost
_CHUNK = 1 << 20
_RANGE = re.compile(r"bytes\s+(\d+)-(\d+)/(\d+|\*)")
_UNSATISFIED = re.compile(r"bytes\s+\*/(\d+)")


class TransferFailed(Exception):
    """A download could not finish; `status` is the HTTP status when the server answered.
    `discarded`: the part was found wrong and must not be continued; `unreachable`: no
    connection to the host at all."""

    def __init__(self, reason: str, status: int | None = None, total: int | None = None,
                 discarded: bool = False, unreachable: bool = False):
        super().__init__(reason)
        self.status, self.total, self.discarded = status, total, discarded
        self.unreachable = unreachable


def open_url(url: str, headers: dict[str, str] | None = None):
    try:
        return urllib.request.urlopen(urllib.request.Request(url, headers=headers or {}),
                                      timeout=TIMEOUT_S)
    except urllib.error.HTTPError as e:
        m = _UNSATISFIED.match(e.headers.get("Content-Range", "") if e.headers else "")
        raise TransferFailed(f"{url} answered HTTP {e.code} {e.reason}", e.code,
                             total=int(m.group(1)) if m else None) from None
    except (urllib.error.URLError, socket.timeout, OSError) as e:
        raise TransferFailed(f"cannot reach {url}: network unreachable "
                             f"({getattr(e, 'reason', e)})", unreachable=True) from None


def _declared(response, have: int) -> tuple[int, int | None]:
    """(offset the body starts at, the whole file's size or None) from the headers.
    A 206 for another range than asked is refused: its bytes would land in the wrong place."""
    length = response.headers.get("Content-Length")
    body = int(length) if length and length.isdigit() else None
    if response.status != 206:
        return 0, body
    m = _RANGE.match(response.headers.get("Content-Range", ""))
    if not m or int(m.group(1)) != have:
        raise TransferFailed(f"the server answered a request for bytes {have}- with "
                             f"Content-Range {response.headers.get('Content-Range')!r}; the "
                             "part was discarded and a rerun starts over", discarded=True)
    start, last = int(m.group(1)), int(m.group(2))
    if body is not None and body != last - start + 1:
        raise TransferFailed(f"Content-Length {body} disagrees with Content-Range "
                             f"{m.group(0)}; the part was discarded", discarded=True)
    return start, int(m.group(3)) if m.group(3) != "*" else None


def transfer(url: str, partial: str, quiet: bool = False, size_hint: int | None = None) -> None:
    """Download `url` into `partial`, continuing what is already there with an HTTP Range
    request (starting over when the server ignores it). On a lost connection the part is
    kept, so the next call continues it; a part longer than the file the server declares
    is removed. Verification of the content is the caller's."""
    have = os.path.getsize(partial) if os.path.exists(partial) else 0
    try:
        response = open_url(url, {"Range": f"bytes={have}-"} if have else None)
    except TransferFailed as e:
        if e.status != 416 or not have:
            raise
        if e.total == have:  # nothing after `have`: the part is whole already
            return
        _discard(partial)  # longer than the file, or of unknown relation to it: start over
        return transfer(url, partial, quiet, size_hint)
    with response:
        try:
            start, total = _declared(response, have)
        except TransferFailed:
            _discard(partial)  # a first request has no part yet
            raise
        _copy(response, partial, start, total or size_hint, quiet, os.path.basename(url))
    size = os.path.getsize(partial)
    if total is not None and size < total:
        raise TransferFailed(f"connection closed after {size} of {total} bytes; the part is "
                             "kept and a rerun continues it")
    if total is not None and size > total:
        _discard(partial)
        raise TransferFailed(f"{size} bytes arrived where the server declared {total}; the "
                             "part was discarded and a rerun starts over", discarded=True)


def _discard(partial: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.remove(partial)


def _copy(response, partial: str, start: int, total: int | None, quiet: bool, desc: str) -> None:
    from .cli_util import progress

    with open(partial, "r+b" if start else "wb") as out, \
            progress(total=total, desc=desc, quiet=quiet, unit="B") as bar:
        out.seek(start)
        out.truncate()
        bar.update(start)
        try:
            for block in iter(lambda: response.read(_CHUNK), b""):
                out.write(block)
                bar.update(len(block))
        except (OSError, socket.timeout, ValueError, http.client.HTTPException) as e:
            raise TransferFailed(f"connection lost after {out.tell()} bytes ({e}); the part "
                                 "is kept and a rerun continues it") from None
