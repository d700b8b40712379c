"""The request body: the multipart field `video` streamed into a file of the server's
upload folder, counting bytes as they arrive (an oversized body is refused, 413,
without being stored; a stalled one gets 408)."""
from __future__ import annotations

import asyncio
import os
import re
import tempfile
from dataclasses import dataclass, field

from starlette.requests import Request

from .guard import HTTPProblem

FIELD = "video"

_SAFE_SUFFIX = re.compile(r"\.[A-Za-z0-9]{1,8}$")


async def receive_upload(request: Request, upload_dir: str, max_bytes: int,
                         body_timeout_s: float = 30.0) -> tuple[str, str]:
    """Stream the multipart field `video` into a new file of upload_dir -> (path, filename).

    HTTPProblem for anything else than one non-empty `video` file under max_bytes;
    no file is left behind when it raises.
    """
    from python_multipart.multipart import MultipartParser, parse_options_header

    ctype, params = parse_options_header(request.headers.get("content-type", ""))
    if ctype != b"multipart/form-data" or not params.get(b"boundary"):
        raise HTTPProblem(400, f"send the clip as multipart/form-data in the field `{FIELD}`, "
                               f"e.g. curl -F {FIELD}=@clip.mp4 http://HOST:PORT/classify")
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit():
        if int(declared) == 0:
            raise HTTPProblem(400, f"empty request body: send a video in the field `{FIELD}`")
        if int(declared) > max_bytes:
            raise HTTPProblem(413, _too_large(max_bytes))

    upload = _Upload(upload_dir)
    parser = MultipartParser(params[b"boundary"], upload.callbacks())
    received = 0
    try:
        async for chunk in _timed(request.stream(), body_timeout_s):
            received += len(chunk)
            if received > max_bytes:
                raise HTTPProblem(413, _too_large(max_bytes))
            try:
                parser.write(chunk)
            except Exception as e:  # python-multipart raises its own parse errors
                raise HTTPProblem(400, f"malformed multipart body ({e}); send the clip with "
                                       f"curl -F {FIELD}=@clip.mp4 ...") from None
        if received == 0:
            raise HTTPProblem(400, f"empty request body: send a video in the field `{FIELD}`")
        if upload.path is None:
            got = ", ".join(f"`{p}`" for p in upload.parts) or "none"
            raise HTTPProblem(400, f"no field `{FIELD}` in the form (fields sent: {got}); "
                                   f"send the clip as {FIELD}=@clip.mp4")
        if upload.size == 0:
            raise HTTPProblem(400, f"the uploaded `{FIELD}` file ({upload.name}) is empty")
    except BaseException:  # includes a client that went away (CancelledError)
        upload.close()
        if upload.path is not None:
            os.remove(upload.path)
        raise
    upload.close()
    return upload.path, upload.name


@dataclass
class _Upload:
    """The multipart parser's callbacks: the first `video` part streamed into a new file."""

    upload_dir: str
    path: str | None = None
    name: str = "upload"
    size: int = 0
    parts: list[str] = field(default_factory=list)  # field names seen, for the error message
    _fd: int | None = None
    _writing: bool = False
    _headers: dict[bytes, bytes] = field(default_factory=dict)
    _field: bytes = b""
    _value: bytes = b""

    def callbacks(self) -> dict:
        return {"on_header_field": self._on_header_field, "on_header_value": self._on_header_value,
                "on_header_end": self._on_header_end, "on_headers_finished": self._on_headers_finished,
                "on_part_data": self._on_part_data, "on_part_end": self._on_part_end}

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def _on_header_field(self, data: bytes, start: int, end: int) -> None:
        self._field += data[start:end]

    def _on_header_value(self, data: bytes, start: int, end: int) -> None:
        self._value += data[start:end]

    def _on_header_end(self) -> None:
        self._headers[self._field.lower()] = self._value
        self._field, self._value = b"", b""

    def _on_headers_finished(self) -> None:
        from python_multipart.multipart import parse_options_header

        _, disp = parse_options_header(self._headers.get(b"content-disposition", b""))
        self._headers = {}
        part = disp.get(b"name", b"").decode("utf-8", "replace")
        self.parts.append(part)
        self._writing = part == FIELD and self.path is None
        if self._writing:
            filename = disp.get(b"filename", b"upload").decode("utf-8", "replace") or "upload"
            self.name = os.path.basename(filename.replace("\\", "/")) or "upload"
            m = _SAFE_SUFFIX.search(self.name)
            self._fd, self.path = tempfile.mkstemp(dir=self.upload_dir, prefix="upload-",
                                                   suffix=m.group(0) if m else "")

    def _on_part_data(self, data: bytes, start: int, end: int) -> None:
        if self._writing:
            self.size += end - start
            os.write(self._fd, data[start:end])

    def _on_part_end(self) -> None:
        self._writing = False


async def _timed(chunks, timeout_s: float):
    """The body's chunks, each awaited at most `timeout_s` (a slow client gets 408)."""
    iterator = chunks.__aiter__()
    while True:
        try:
            yield await asyncio.wait_for(iterator.__anext__(), timeout_s)
        except StopAsyncIteration:
            return
        except asyncio.TimeoutError:
            raise HTTPProblem(408, f"no part of the request body arrived for {timeout_s:g} s; "
                                   "send it at once") from None


def _too_large(max_bytes: int) -> str:
    return (f"request body larger than this server's limit of {max_bytes / (1 << 20):g} MB; "
            "send a shorter clip or start the server with a larger --max-upload-mb")
