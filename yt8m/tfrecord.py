"""TFRecord files, read and written without TensorFlow.

A TFRecord file is a sequence of records, each framed as

    uint64 length (little endian) | uint32 masked CRC32C of those 8 bytes
    data (length bytes)           | uint32 masked CRC32C of the data

with CRC32C the Castagnoli CRC (reflected polynomial 0x82F63B78) and
mask(c) = ((c >> 15) | (c << 17)) + 0xA282EAD8 (mod 2**32).

`TFRecordReader` verifies both checksums. A record whose data checksum fails is
skipped (its length was verified, so the next record is found); a damaged length
makes the reader search forward for the next offset where a whole record verifies;
a file that ends inside a record is reported as truncated. Every problem is kept
in `reader.errors` with the file and byte offset, and reading goes on.
"""
from __future__ import annotations

import os
import struct
from dataclasses import dataclass
from typing import BinaryIO, Iterable, Iterator

import numpy as np
from crc32c import crc32c  # hardware-accelerated (SSE4.2 / ARMv8); several GB/s

from .atomic import replacing
from .errors import DAMAGED, Problem

HEADER_BYTES = 12  # length + its CRC
FOOTER_BYTES = 4  # data CRC
_MASK_DELTA = 0xA282EAD8
_RESYNC_CHUNK = 1 << 20  # bytes scanned per NumPy window while resynchronising


def masked_crc32c(data: bytes) -> int:
    c = crc32c(data)
    return (((c >> 15) | (c << 17)) + _MASK_DELTA) & 0xFFFFFFFF


def frame(data: bytes) -> bytes:
    """One record with its TFRecord framing."""
    length = struct.pack("<Q", len(data))
    return (length + struct.pack("<I", masked_crc32c(length)) + data
            + struct.pack("<I", masked_crc32c(data)))


class TFRecordWriter:
    """Appends framed records to a binary file object (or a path, opened for writing)."""

    def __init__(self, target: str | BinaryIO):
        self._own = isinstance(target, str)
        self._f: BinaryIO = open(target, "wb") if isinstance(target, str) else target
        self.count = 0
        self.bytes = 0

    def write(self, data: bytes) -> None:
        length = struct.pack("<Q", len(data))
        self._f.write(length + struct.pack("<I", masked_crc32c(length)))
        self._f.write(data)
        self._f.write(struct.pack("<I", masked_crc32c(data)))
        self.count += 1
        self.bytes += len(data) + HEADER_BYTES + FOOTER_BYTES

    def close(self) -> None:
        if self._own:
            self._f.close()

    def __enter__(self) -> "TFRecordWriter":
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


def write_tfrecord(path: str, records: Iterable[bytes]) -> int:
    """Write a whole file atomically (temp name, fsync, rename); returns the record count."""
    with replacing(path, "wb") as f, TFRecordWriter(f) as w:
        for r in records:
            w.write(r)
    return w.count


@dataclass(frozen=True)
class RecordError:
    """A damaged part of a TFRecord file."""

    path: str
    offset: int  # byte offset of the record (or of the damage) in the file
    reason: str

    def __str__(self) -> str:
        return f"{self.path}: byte {self.offset}: {self.reason}"

    @property
    def problem(self) -> Problem:
        """As a report lists it."""
        return Problem(record_where(self.path, self.offset), self.reason, DAMAGED)


def record_where(path: str, offset: int) -> str:
    """How reports name a record of a TFRecord file: its file and byte offset."""
    return f"{path} (byte {offset})"


class TFRecordReader:
    """Iterates (byte offset, data) over the records of one file whose framing verifies.

    Problems do not raise: they are appended to `self.errors` and reading goes on
    where it safely can. `verify=False` skips the data CRC (the length CRC is
    always checked, since a wrong length loses the rest of the file).
    """

    def __init__(self, path: str, verify: bool = True):
        self.path = path
        self.verify = verify
        self.errors: list[RecordError] = []
        self.records = 0

    def _error(self, offset: int, reason: str) -> None:
        self.errors.append(RecordError(self.path, offset, reason))

    def __iter__(self) -> Iterator[tuple[int, bytes]]:
        try:
            size = os.path.getsize(self.path)
            f = open(self.path, "rb", buffering=0)
        except OSError as e:
            self._error(0, f"cannot read: {e.strerror}")
            return
        with f:
            if size == 0:
                self._error(0, "empty file (0 bytes): no records")
                return
            pos = 0
            while pos < size:
                header = f.read(HEADER_BYTES)
                if len(header) < HEADER_BYTES:
                    self._error(pos, f"truncated: the file ends {size - pos} byte(s) into a "
                                     f"record header of {HEADER_BYTES} bytes")
                    return
                length, length_crc = struct.unpack("<QI", header)
                if masked_crc32c(header[:8]) != length_crc:
                    nxt = self._resync(pos + 1, size)
                    if nxt is None and pos == 0:
                        self._error(pos, f"not a TFRecord file: no valid record framing "
                                         f"anywhere in its {size} bytes")
                        return
                    what = "corrupt record header (length CRC mismatch)"
                    if nxt is None:
                        self._error(pos, f"{what}; no valid record after it, "
                                         f"{size - pos} byte(s) skipped")
                        return
                    self._error(pos, f"{what}; resynchronised at byte {nxt}, "
                                     f"{nxt - pos} byte(s) skipped")
                    pos = nxt
                    f.seek(pos)
                    continue
                end = pos + HEADER_BYTES + length + FOOTER_BYTES
                if end > size:
                    self._error(pos, f"truncated: the record declares {length} bytes of data "
                                     f"but the file ends {size - pos - HEADER_BYTES} byte(s) "
                                     "after its header")
                    return
                data = f.read(length)
                footer = f.read(FOOTER_BYTES)
                if self.verify and masked_crc32c(data) != struct.unpack("<I", footer)[0]:
                    self._error(pos, f"corrupt record data (CRC mismatch over {length} bytes); "
                                     "record skipped")
                else:
                    self.records += 1
                    yield pos, data
                pos = end

    def _resync(self, start: int, size: int) -> int | None:
        """First offset >= start where a whole record (both CRCs) verifies, if any.

        Linear in the bytes scanned, in bounded memory: candidates are filtered with
        NumPy, a window at a time, before any CRC is computed. A record's length is
        below 4 GiB (its high four bytes are zero), above zero (no record of this data
        is empty) and fits in the file; a run of zeros (a download padded with zeros)
        therefore offers no candidate at all.
        """
        last = size - HEADER_BYTES - FOOTER_BYTES  # the last offset a record can start at
        if start > last:
            return None
        data = np.memmap(self.path, np.uint8, "r")
        try:
            for lo in range(start, last + 1, _RESYNC_CHUNK):
                hi = min(lo + _RESYNC_CHUNK, last + 1)
                for p in (np.flatnonzero(_plausible_lengths(data, lo, hi, size)) + lo).tolist():
                    if self._record_at(data, p, size):
                        return p
            return None
        finally:
            del data

    @staticmethod
    def _record_at(data: np.ndarray, p: int, size: int) -> bool:
        header = bytes(data[p:p + HEADER_BYTES])
        length, length_crc = struct.unpack("<QI", header)
        if masked_crc32c(header[:8]) != length_crc:
            return False
        end = p + HEADER_BYTES + length
        footer = struct.unpack("<I", bytes(data[end:end + FOOTER_BYTES]))[0]
        return masked_crc32c(bytes(data[p + HEADER_BYTES:end])) == footer


def _plausible_lengths(data: np.ndarray, lo: int, hi: int, size: int) -> np.ndarray:
    """For offsets lo..hi-1: could a record header start there (see TFRecordReader._resync)?"""
    n = hi - lo
    w = np.asarray(data[lo:hi + 8], dtype=np.uint32)
    length = w[:n] | (w[1:n + 1] << 8) | (w[2:n + 2] << 16) | (w[3:n + 3] << 24)
    high_zero = (w[4:n + 4] | w[5:n + 5] | w[6:n + 6] | w[7:n + 7]) == 0
    room = (size - HEADER_BYTES - FOOTER_BYTES - lo) - np.arange(n, dtype=np.int64)
    return high_zero & (length > 0) & (length.astype(np.int64) <= room)


def read_tfrecord(path: str) -> tuple[list[bytes], list[RecordError]]:
    """All good records of a file and the problems found (for small files and tests)."""
    reader = TFRecordReader(path)
    return [data for _, data in reader], reader.errors
