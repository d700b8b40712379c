"""The protobuf wire format of `tf.train.Example` and `tf.train.SequenceExample`, by hand.

Only what those two messages use (tensorflow/core/example/{example,feature}.proto):

    Example         { Features features = 1; }
    SequenceExample { Features context = 1; FeatureLists feature_lists = 2; }
    Features        { map<string, Feature> feature = 1; }      # map entry: key = 1, value = 2
    FeatureLists    { map<string, FeatureList> feature_list = 1; }
    FeatureList     { repeated Feature feature = 1; }
    Feature         { oneof { BytesList bytes_list = 1; FloatList float_list = 2;
                              Int64List int64_list = 3; } }
    BytesList { repeated bytes value = 1; }
    FloatList { repeated float value = 1 [packed = true]; }
    Int64List { repeated int64 value = 1 [packed = true]; }

Decoding accepts packed and unpacked repeated numbers alike and skips unknown
fields, as any protobuf parser must. A feature value is returned as `list[bytes]`
(bytes_list), a float32 array (float_list) or an int64 array (int64_list).

Why not the `protobuf` package: it would need the Example descriptors compiled in,
and a YouTube-8M frame-level record is ~600 tiny `Feature` messages of fixed shape,
which `FeatureList.bytes_rows` slices out with one NumPy reshape instead of 600
message objects (bench/import.py measures the difference).
"""
from __future__ import annotations

import functools
from typing import Iterator, Union

import numpy as np

VARINT, FIXED64, LEN, FIXED32 = 0, 1, 2, 5

FeatureValue = Union[list, np.ndarray]  # list[bytes] | float32 array | int64 array


class WireError(ValueError):
    """The bytes are not a well-formed message of the expected type."""


# --------------------------------------------------------------------------- decoding

def read_varint(buf: bytes, pos: int, end: int) -> tuple[int, int]:
    """(value, position after it) of the base-128 varint at `pos`."""
    result = shift = 0
    while pos < end:
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result, pos
        shift += 7
        if shift >= 70:
            break
    raise WireError("malformed or truncated varint")


def iter_fields(buf: bytes, start: int, end: int) -> Iterator[tuple[int, int, int, int]]:
    """(field number, wire type, a, b) for each field of the message in buf[start:end].

    LEN, FIXED32, FIXED64: the value is buf[a:b]. VARINT: `a` is the value, `b` unused.
    """
    pos = start
    while pos < end:
        key = buf[pos]
        if key < 0x80:
            pos += 1
        else:
            key, pos = read_varint(buf, pos, end)
        field, wire = key >> 3, key & 7
        if field == 0:
            raise WireError("field number 0")
        if wire == LEN:
            n = buf[pos]
            if n < 0x80:
                pos += 1
            else:
                n, pos = read_varint(buf, pos, end)
            if pos + n > end:
                raise WireError(f"field {field} claims {n} bytes past the end of its message")
            yield field, LEN, pos, pos + n
            pos += n
        elif wire == VARINT:
            value, pos = read_varint(buf, pos, end)
            yield field, VARINT, value, 0
        elif wire == FIXED32 or wire == FIXED64:
            size = 4 if wire == FIXED32 else 8
            if pos + size > end:
                raise WireError(f"field {field} is truncated")
            yield field, wire, pos, pos + size
            pos += size
        else:  # groups (3, 4) and the unused 6, 7 never occur in these messages
            raise WireError(f"unsupported wire type {wire} (field {field})")


def _signed64(v: int) -> int:
    return v - (1 << 64) if v >= (1 << 63) else v


def _packed_varints(buf: bytes, a: int, b: int) -> list[int]:
    out = []
    while a < b:
        v, a = read_varint(buf, a, b)
        out.append(_signed64(v))
    return out


def decode_feature(buf: bytes, start: int, end: int) -> FeatureValue:
    """One `Feature` message -> list[bytes] | float32 array | int64 array."""
    value: FeatureValue = []
    for field, wire, a, b in iter_fields(buf, start, end):
        if wire != LEN or field not in (1, 2, 3):
            continue  # an unknown field
        if field == 1:
            value = [bytes(buf[x:y]) for f, w, x, y in iter_fields(buf, a, b) if f == 1 and w == LEN]
        elif field == 2:
            floats: list[np.ndarray] = []
            for f, w, x, y in iter_fields(buf, a, b):
                if f != 1:
                    continue
                if w == LEN:  # packed
                    if (y - x) % 4:
                        raise WireError("packed float list length is not a multiple of 4")
                    floats.append(np.frombuffer(buf, "<f4", (y - x) // 4, x))
                elif w == FIXED32:
                    floats.append(np.frombuffer(buf, "<f4", 1, x))
            value = (np.concatenate(floats) if floats else np.zeros(0, "<f4")).astype(np.float32)
        else:
            ints: list[int] = []
            for f, w, x, y in iter_fields(buf, a, b):
                if f != 1:
                    continue
                if w == LEN:
                    ints += _packed_varints(buf, x, y)
                elif w == VARINT:
                    ints.append(_signed64(x))
            value = np.array(ints, dtype=np.int64)
    return value


def decode_features(buf: bytes, start: int, end: int) -> dict[str, FeatureValue]:
    """A `Features` message (map<string, Feature>) -> {key: value}."""
    out: dict[str, FeatureValue] = {}
    for field, wire, a, b in iter_fields(buf, start, end):
        if field != 1 or wire != LEN:
            continue
        key, span = _map_entry(buf, a, b)
        out[key] = decode_feature(buf, *span) if span else []
    return out


def _map_entry(buf: bytes, start: int, end: int) -> tuple[str, tuple[int, int] | None]:
    key, span = "", None
    for f, w, a, b in iter_fields(buf, start, end):
        if f == 1 and w == LEN:
            try:
                key = bytes(buf[a:b]).decode("utf-8")
            except UnicodeDecodeError:
                raise WireError("a feature name is not UTF-8") from None
        elif f == 2 and w == LEN:
            span = (a, b)
    return key, span


class FeatureList:
    """One `FeatureList` of a SequenceExample, decoded lazily from its bytes."""

    def __init__(self, buf: bytes, start: int, end: int):
        self.buf, self.start, self.end = buf, start, end

    def features(self) -> list[FeatureValue]:
        return [decode_feature(self.buf, a, b)
                for f, w, a, b in iter_fields(self.buf, self.start, self.end) if f == 1 and w == LEN]

    def bytes_rows(self, width: int) -> np.ndarray:
        """The list as a uint8 array [T, width]: each Feature must hold one `width`-byte string.

        Fast path: a list written the usual way has every frame framed by the same
        few header bytes, so it is a [T, stride] array whose header columns are
        checked at once; anything else goes through the general decoder.
        """
        header = _bytes_row_header(width)
        stride = len(header) + width
        size = self.end - self.start
        if size % stride == 0:
            rows = np.frombuffer(self.buf, np.uint8, size, self.start).reshape(-1, stride)
            if (rows[:, :len(header)] == np.frombuffer(header, np.uint8)).all():
                return rows[:, len(header):]
        frames = self.features()
        for i, value in enumerate(frames):
            if not isinstance(value, list) or len(value) != 1:
                what = f"{len(value)} strings" if isinstance(value, list) else f"{value.dtype} numbers"
                raise WireError(f"frame {i} holds {what}, expected one {width}-byte string")
            if len(value[0]) != width:
                raise WireError(f"frame {i} has {len(value[0])} bytes, expected {width}")
        if not frames:
            return np.zeros((0, width), np.uint8)
        return np.frombuffer(b"".join(v[0] for v in frames), np.uint8).reshape(-1, width)


def decode_example(data: bytes) -> dict[str, FeatureValue]:
    """A serialized `tf.train.Example` -> its features."""
    out: dict[str, FeatureValue] = {}
    for field, wire, a, b in iter_fields(data, 0, len(data)):
        if field == 1 and wire == LEN:
            out.update(decode_features(data, a, b))  # repeated occurrences merge
    return out


def decode_sequence_example(data: bytes) -> tuple[dict[str, FeatureValue], dict[str, FeatureList]]:
    """A serialized `tf.train.SequenceExample` -> (context features, feature lists)."""
    context: dict[str, FeatureValue] = {}
    lists: dict[str, FeatureList] = {}
    for field, wire, a, b in iter_fields(data, 0, len(data)):
        if wire != LEN:
            continue
        if field == 1:
            context.update(decode_features(data, a, b))
        elif field == 2:
            for f, w, x, y in iter_fields(data, a, b):
                if f == 1 and w == LEN:
                    key, span = _map_entry(data, x, y)
                    lists[key] = FeatureList(data, *(span or (0, 0)))
    return context, lists


def top_level_fields(data: bytes) -> set[int]:
    """Field numbers present at the top level (1: features/context, 2: feature_lists)."""
    return {field for field, _, _, _ in iter_fields(data, 0, len(data))}


# --------------------------------------------------------------------------- encoding

def encode_varint(value: int) -> bytes:
    if value < 0:
        value += 1 << 64  # int64 two's complement: always 10 bytes
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _len_field(field: int, payload: bytes) -> bytes:
    return encode_varint(field << 3 | LEN) + encode_varint(len(payload)) + payload


def encode_feature(value: FeatureValue) -> bytes:
    """list of bytes -> bytes_list; float array -> float_list; int array/list -> int64_list."""
    if isinstance(value, list) and all(isinstance(v, (bytes, bytearray)) for v in value):
        return _len_field(1, b"".join(_len_field(1, bytes(v)) for v in value))
    array = np.asarray(value)
    if array.dtype.kind == "f":
        return _len_field(2, _len_field(1, array.astype("<f4").tobytes()) if array.size else b"")
    if array.dtype.kind in "iub":
        packed = b"".join(encode_varint(int(v)) for v in array.ravel())
        return _len_field(3, _len_field(1, packed) if packed else b"")
    raise TypeError(f"cannot encode a feature of {array.dtype}")


def encode_features(features: dict[str, FeatureValue]) -> bytes:
    return b"".join(_len_field(1, _len_field(1, k.encode()) + _len_field(2, encode_feature(v)))
                    for k, v in features.items())


def encode_example(features: dict[str, FeatureValue]) -> bytes:
    return _len_field(1, encode_features(features))


@functools.lru_cache(maxsize=None)
def _bytes_row_header(width: int) -> bytes:
    """What precedes each `width`-byte frame in a FeatureList: feature tag + length,
    bytes_list tag + length, value tag + length."""
    bytes_list = encode_varint(1 << 3 | LEN) + encode_varint(width)
    feature = encode_varint(1 << 3 | LEN) + encode_varint(len(bytes_list) + width)
    entry = encode_varint(1 << 3 | LEN) + encode_varint(len(feature) + len(bytes_list) + width)
    return entry + feature + bytes_list


def encode_bytes_rows(rows: np.ndarray) -> bytes:
    """A FeatureList body with one bytes Feature per row of a uint8 [T, width] array."""
    rows = np.ascontiguousarray(rows, dtype=np.uint8)
    header = np.frombuffer(_bytes_row_header(rows.shape[1]), np.uint8)
    framed = np.empty((rows.shape[0], len(header) + rows.shape[1]), np.uint8)
    framed[:, :len(header)] = header
    framed[:, len(header):] = rows
    return framed.tobytes()


def encode_sequence_example(context: dict[str, FeatureValue],
                            feature_lists: dict[str, np.ndarray | list[FeatureValue]]) -> bytes:
    """Context features plus feature lists; a uint8 [T, width] array is a list of
    T one-string bytes features (the YouTube-8M frame layout)."""
    lists = []
    for key, value in feature_lists.items():
        if isinstance(value, np.ndarray) and value.ndim == 2 and value.dtype == np.uint8:
            body = encode_bytes_rows(value)
        else:
            body = b"".join(_len_field(1, encode_feature(v)) for v in value)
        lists.append(_len_field(1, _len_field(1, key.encode()) + _len_field(2, body)))
    return _len_field(1, encode_features(context)) + _len_field(2, b"".join(lists))

