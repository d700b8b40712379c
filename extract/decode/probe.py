"""The file probe: what is not a video is told apart before a decoder sees it.

Which file names are videos, and for a given file: whether it is a readable, non-empty
regular file, whether its first bytes say it is something else (an image, a document,
an archive, audio, text), and which container its header names (so that a file no
decoder reads can be called a truncated MP4 rather than "unrecognised"). Every refusal
is a RejectedInput whose reason says what the file is.
"""
from __future__ import annotations

import os
import stat

from yt8m.errors import RejectedInput

VIDEO_EXTENSIONS = frozenset({
    ".mp4", ".m4v", ".mov", ".qt", ".webm", ".mkv", ".avi", ".mpg", ".mpeg", ".m2v",
    ".flv", ".f4v", ".wmv", ".asf", ".3gp", ".3g2", ".ts", ".mts", ".m2ts", ".vob", ".ogv",
    ".divx", ".dv", ".mxf",
})

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
    head = _read_head(path, name)
    for offset, magic, what in _MAGIC:
        if head[offset:offset + len(magic)] == magic:
            raise RejectedInput(name, f"not a video: {what} with a video file extension")
    if _looks_like_text(head):
        raise RejectedInput(name, "not a video: a text file with a video file extension")
    return head


def _read_head(path: str, name: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read(4096)
    except PermissionError:
        raise RejectedInput(name, "permission denied: the file is not readable by this user "
                                  "(check its mode and owner)") from None
    except OSError as e:
        raise RejectedInput(name, f"cannot read: {e.strerror}") from None


def container_name(head: bytes) -> str | None:
    """The video container a file's first bytes name ("MP4/MOV", ...), if any."""
    for offset, magic, what in _CONTAINERS:
        if head[offset:offset + len(magic)] == magic:
            if what == "MPEG-TS" and head[188:189] != b"\x47":
                continue  # one sync byte is not enough to call it a transport stream
            return what
    return None
