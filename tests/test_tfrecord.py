"""TFRecord framing and the protobuf wire format, checked against independent code.

The helpers below build records byte by byte from the protobuf encoding rules and
the TFRecord framing, and compute CRC32C bit by bit from the polynomial; they
share nothing with yt8m.tfrecord / yt8m.protowire. test_import_export uses them too.
"""
from __future__ import annotations

import struct

import numpy as np
import pytest

from yt8m import protowire
from yt8m.tfrecord import TFRecordReader, TFRecordWriter, masked_crc32c, read_tfrecord, write_tfrecord

# --------------------------------------------------------------------------- independent helpers

def crc32c_bitwise(data: bytes) -> int:
    """CRC-32C (Castagnoli), reflected polynomial 0x82F63B78, one bit at a time."""
    crc = 0xFFFFFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
    return crc ^ 0xFFFFFFFF


def _byte_table() -> list[int]:
    table = []
    for n in range(256):  # the register after shifting byte n through the polynomial
        crc = n
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
        table.append(crc)
    return table


_TABLE = _byte_table()


def crc32c_bytewise(data: bytes) -> int:
    """The same CRC a byte at a time, from a table made by the bitwise one (8x faster)."""
    crc = 0xFFFFFFFF
    for byte in data:
        crc = _TABLE[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def mask(crc: int) -> int:
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) % (1 << 32)


def tf_frame(data: bytes) -> bytes:
    """A record with TFRecord framing, from the format's definition."""
    n = len(data).to_bytes(8, "little")
    return (n + mask(crc32c_bytewise(n)).to_bytes(4, "little") + data
            + mask(crc32c_bytewise(data)).to_bytes(4, "little"))


def split_frames(blob: bytes) -> list[bytes]:
    """Parse a TFRecord file's framing and check every CRC with the bitwise CRC."""
    out, pos = [], 0
    while pos < len(blob):
        n = int.from_bytes(blob[pos:pos + 8], "little")
        assert int.from_bytes(blob[pos + 8:pos + 12], "little") == mask(crc32c_bytewise(blob[pos:pos + 8]))
        data = blob[pos + 12:pos + 12 + n]
        assert int.from_bytes(blob[pos + 12 + n:pos + 16 + n], "little") == mask(crc32c_bytewise(data))
        out.append(data)
        pos += 16 + n
    assert pos == len(blob)
    return out


def varint(v: int) -> bytes:
    v %= 1 << 64
    out = b""
    while True:
        low, v = v & 0x7F, v >> 7
        out += bytes([low | (0x80 if v else 0)])
        if not v:
            return out


def ld(field: int, payload: bytes) -> bytes:  # length-delimited field (wire type 2)
    return varint(field * 8 + 2) + varint(len(payload)) + payload


def bytes_feature(*values: bytes) -> bytes:
    return ld(1, b"".join(ld(1, v) for v in values))


def int64_feature(values, packed: bool = True) -> bytes:
    if packed:
        body = ld(1, b"".join(varint(v) for v in values)) if len(values) else b""
    else:
        body = b"".join(varint(1 * 8 + 0) + varint(v) for v in values)
    return ld(3, body)


def float_feature(values, packed: bool = True) -> bytes:
    if packed:
        body = ld(1, struct.pack(f"<{len(values)}f", *values)) if len(values) else b""
    else:
        body = b"".join(varint(1 * 8 + 5) + struct.pack("<f", v) for v in values)
    return ld(2, body)


def features(entries: dict[str, bytes]) -> bytes:
    return b"".join(ld(1, ld(1, k.encode()) + ld(2, v)) for k, v in entries.items())


def example(entries: dict[str, bytes]) -> bytes:
    return ld(1, features(entries))


def sequence_example(context: dict[str, bytes], lists: dict[str, list[bytes]]) -> bytes:
    body = b"".join(ld(1, ld(1, k.encode()) + ld(2, b"".join(ld(1, f) for f in frames)))
                    for k, frames in lists.items())
    return ld(1, features(context)) + ld(2, body)


def frame_level(vid: str, labels, rgb: np.ndarray | None, audio: np.ndarray | None,
                segments=None, id_key: str = "id", packed: bool = True) -> bytes:
    context = {id_key: bytes_feature(vid.encode()), "labels": int64_feature(labels, packed)}
    if segments is not None:
        starts, seg_labels, scores = segments
        context["segment_start_times"] = int64_feature(starts, packed)
        context["segment_labels"] = int64_feature(seg_labels, packed)
        context["segment_scores"] = float_feature(scores, packed)
    lists = {}
    if rgb is not None:
        lists["rgb"] = [bytes_feature(row.tobytes()) for row in rgb]
    if audio is not None:
        lists["audio"] = [bytes_feature(row.tobytes()) for row in audio]
    return sequence_example(context, lists)


def video_level(vid: str, labels, mean_rgb, mean_audio, packed: bool = True) -> bytes:
    return example({"id": bytes_feature(vid.encode()), "labels": int64_feature(labels, packed),
                    "mean_rgb": float_feature(mean_rgb, packed),
                    "mean_audio": float_feature(mean_audio, packed)})


# --------------------------------------------------------------------------- CRC and framing

def test_crc32c_matches_the_polynomial_and_the_standard_check_value():
    assert crc32c_bitwise(b"123456789") == 0xE3069283  # the CRC-32C check value
    rng = np.random.default_rng(0)
    for n in (0, 1, 7, 8, 9, 1000):
        data = rng.integers(0, 256, n, dtype=np.uint8).tobytes()
        assert crc32c_bytewise(data) == crc32c_bitwise(data)
        assert masked_crc32c(data) == mask(crc32c_bitwise(data))


def test_writer_output_verifies_with_independent_crc(tmp_path):
    records = [b"", b"a", bytes(range(256)) * 5, b"\x00" * 4097]
    path = str(tmp_path / "x.tfrecord")
    assert write_tfrecord(path, records) == len(records)
    blob = open(path, "rb").read()
    assert split_frames(blob) == records
    assert blob == b"".join(tf_frame(r) for r in records)
    assert not list(tmp_path.glob(".*partial"))


def test_reader_reads_hand_framed_records_with_offsets(tmp_path):
    records = [b"first", b"", b"x" * 300]
    path = tmp_path / "f.tfrecord"
    path.write_bytes(b"".join(tf_frame(r) for r in records))
    reader = TFRecordReader(str(path))
    got = list(reader)
    assert [d for _, d in got] == records and not reader.errors
    assert [o for o, _ in got] == [0, 16 + 5, 16 + 5 + 16]


def _three_records(tmp_path, name="f.tfrecord"):
    records = [b"A" * 100, b"B" * 200, b"C" * 300]
    frames = [tf_frame(r) for r in records]
    offsets = [0, len(frames[0]), len(frames[0]) + len(frames[1])]
    return records, bytearray(b"".join(frames)), offsets, tmp_path / name


def test_corrupt_data_crc_skips_only_that_record(tmp_path):
    records, blob, offsets, path = _three_records(tmp_path)
    blob[offsets[1] + 12 + 50] ^= 0x01  # one bit of record 2's data
    path.write_bytes(bytes(blob))
    got, errors = read_tfrecord(str(path))
    assert got == [records[0], records[2]]
    assert len(errors) == 1 and errors[0].offset == offsets[1]
    assert "CRC mismatch" in errors[0].reason and str(path) in str(errors[0])


def test_corrupt_length_resynchronises_at_next_record(tmp_path):
    records, blob, offsets, path = _three_records(tmp_path)
    blob[offsets[1] + 1] ^= 0x40  # record 2's length field: its length CRC fails
    path.write_bytes(bytes(blob))
    got, errors = read_tfrecord(str(path))
    assert got == [records[0], records[2]]
    assert len(errors) == 1 and errors[0].offset == offsets[1]
    assert "length CRC" in errors[0].reason and f"resynchronised at byte {offsets[2]}" in errors[0].reason


def test_truncated_tail_keeps_earlier_records(tmp_path):
    records, blob, offsets, path = _three_records(tmp_path)
    path.write_bytes(bytes(blob[:-10]))
    got, errors = read_tfrecord(str(path))
    assert got == records[:2]
    assert len(errors) == 1 and errors[0].offset == offsets[2] and "truncated" in errors[0].reason
    path.write_bytes(bytes(blob[:offsets[2] + 5]))  # inside the header
    got, errors = read_tfrecord(str(path))
    assert got == records[:2] and errors[0].offset == offsets[2] and "truncated" in errors[0].reason


def test_garbage_and_empty_files(tmp_path):
    garbage = tmp_path / "garbage.tfrecord"
    garbage.write_bytes(np.random.default_rng(0).integers(0, 256, 5000, dtype=np.uint8).tobytes())
    got, errors = read_tfrecord(str(garbage))
    assert got == [] and len(errors) == 1
    assert errors[0].offset == 0 and "not a TFRecord file" in errors[0].reason
    empty = tmp_path / "empty.tfrecord"
    empty.write_bytes(b"")
    got, errors = read_tfrecord(str(empty))
    assert got == [] and len(errors) == 1 and "empty file" in errors[0].reason


def test_writer_on_file_object_counts(tmp_path):
    with open(tmp_path / "w.tfrecord", "wb") as f, TFRecordWriter(f) as w:
        w.write(b"abc")
        w.write(b"")
    assert w.count == 2 and w.bytes == 3 + 32
    assert split_frames((tmp_path / "w.tfrecord").read_bytes()) == [b"abc", b""]


# --------------------------------------------------------------------------- protobuf wire format

def test_packed_and_unpacked_numbers_decode_alike():
    values = [0, 1, 127, 128, 300, 2**31, 2**62, -1, -(2**63)]
    for packed in (True, False):
        feats = protowire.decode_example(example({
            "i": int64_feature(values, packed), "f": float_feature([0.5, -2.0, 1e30], packed),
            "b": bytes_feature(b"", b"xyz")}))
        assert feats["i"].dtype == np.int64 and feats["i"].tolist() == values
        assert feats["f"].dtype == np.float32 and feats["f"].tolist() == [0.5, -2.0, np.float32(1e30)]
        assert feats["b"] == [b"", b"xyz"]


def test_unknown_fields_are_skipped_and_empty_lists_kept():
    unknown = varint(9 * 8 + 0) + varint(5) + ld(7, b"junk") + varint(6 * 8 + 5) + b"\0\0\0\0"
    data = unknown + example({"e": int64_feature([]), "n": b"", "k": bytes_feature(b"v") + unknown})
    feats = protowire.decode_example(data)
    assert feats["e"].tolist() == [] and feats["n"] == [] and feats["k"] == [b"v"]


def test_encoder_matches_hand_assembled_bytes():
    got = protowire.encode_example({"id": [b"abc"], "labels": np.array([3, 300], np.int64),
                                    "m": np.array([1.5], np.float32)})
    assert got == example({"id": bytes_feature(b"abc"), "labels": int64_feature([3, 300]),
                           "m": float_feature([1.5])})
    rows = np.arange(12, dtype=np.uint8).reshape(3, 4)
    got = protowire.encode_sequence_example({"id": [b"v"]}, {"rgb": rows})
    assert got == sequence_example({"id": bytes_feature(b"v")},
                                   {"rgb": [bytes_feature(r.tobytes()) for r in rows]})


def test_bytes_rows_fast_path_and_general_path_agree_and_name_bad_frames():
    rng = np.random.default_rng(1)
    rows = rng.integers(0, 256, (5, 1024), dtype=np.uint8)
    regular = sequence_example({}, {"rgb": [bytes_feature(r.tobytes()) for r in rows]})
    np.testing.assert_array_equal(protowire.decode_sequence_example(regular)[1]["rgb"].bytes_rows(1024), rows)
    # a non-minimal length varint (legal protobuf) defeats the fast path only
    odd = [bytes_feature(r.tobytes()) for r in rows]
    odd[2] = ld(1, varint(10) + b"\x80\x88\x00" + rows[2].tobytes())  # 1024 as a 3-byte varint
    fl = protowire.decode_sequence_example(sequence_example({}, {"rgb": odd}))[1]["rgb"]
    np.testing.assert_array_equal(fl.bytes_rows(1024), rows)
    short = [bytes_feature(r.tobytes()) for r in rows]
    short[3] = bytes_feature(rows[3, :1000].tobytes())
    fl = protowire.decode_sequence_example(sequence_example({}, {"rgb": short}))[1]["rgb"]
    with pytest.raises(protowire.WireError, match="frame 3 has 1000 bytes, expected 1024"):
        fl.bytes_rows(1024)


def test_malformed_messages_raise_wire_error():
    with pytest.raises(protowire.WireError):
        protowire.decode_example(ld(1, b"\x0a\xff\xff\x03abc"))  # length past the end
    with pytest.raises(protowire.WireError):
        protowire.decode_example(b"\x0b")  # wire type 3 (groups)


def test_zero_padded_download_is_imported_in_bounded_time_and_memory(tmp_path):
    """A partial download padded with 64 MB of zeros, then a good record: the reader skips
    the zeros in linear time (a process limited to 1.5 GB of address space, 120 s)."""
    import resource
    import subprocess
    import sys

    from conftest import ROOT

    rng = np.random.default_rng(0)
    good = [tf_frame(frame_level(f"v{i}", [i], rng.integers(0, 256, (3, 1024), dtype=np.uint8),
                                 rng.integers(0, 256, (3, 128), dtype=np.uint8))) for i in range(3)]
    path = tmp_path / "train0000.tfrecord"
    with open(path, "wb") as f:
        f.write(good[0] + good[1])
        f.write(b"\0" * (64 << 20))
        f.write(good[2])

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (1536 << 20, 1536 << 20))

    result = subprocess.run([sys.executable, f"{ROOT}/pipeline.py", "import-yt8m", "--tfrecords",
                             str(path), "--out", str(tmp_path / "shards"), "--quiet"],
                            capture_output=True, text=True, timeout=120, preexec_fn=limit, cwd=ROOT)
    assert result.returncode == 3, result.stderr
    assert "resynchronised" in result.stderr and str(64 << 20) in result.stderr
    from yt8m.store import ShardSet
    assert sorted(ShardSet(str(tmp_path / "shards")).ids) == ["v0", "v1", "v2"]
