"""The official YouTube-8M record schemas <-> `yt8m.store.VideoRecord`.

Frame-level (2018 "v2", and the segment-rated 2019 "v3"), a `tf.train.SequenceExample`:
    context        id (bytes; `video_id` in the 2017 release), labels (int64 list),
                   v3 only: segment_start_times (int64), segment_labels (int64),
                   segment_scores (float)
    feature_lists  rgb: one 1024-byte string per second, audio: one 128-byte string
                   per second (8-bit quantized; copied as they are)
Video-level, a `tf.train.Example`:
    id, labels, mean_rgb (1024 floats), mean_audio (128 floats)

Parsing validates everything the store relies on and raises `InvalidRecord` with
a reason a user can act on.
"""
from __future__ import annotations

import glob
import os

import numpy as np

from . import protowire
from .errors import UsageError
from .protowire import FeatureValue, WireError
from .record import VideoRecord
from .representation import AUDIO_DIM, RGB_DIM
from .shard_check import FRAME, VIDEO
from .tfrecord import TFRecordReader

ID_KEYS = ("id", "video_id")  # 2018+ name first, then the 2017 one
SEGMENT_KEYS = ("segment_start_times", "segment_labels", "segment_scores")
_INT32_MAX = 2**31 - 1
_PEEK_RECORDS = 16  # records tried before a file's kind is given up on


class InvalidRecord(ValueError):
    """A record with correct framing whose content is not a usable YouTube-8M video."""


def record_kind(data: bytes) -> str:
    """FRAME for a SequenceExample, VIDEO for a video-level Example.

    Both put their features in field 1; only a SequenceExample has feature lists
    (field 2). An Example without `mean_rgb` but with an id is taken as a
    frame-level record whose feature lists are missing, so it is rejected as such.
    """
    try:
        fields = protowire.top_level_fields(data)
        if 2 in fields:
            return FRAME
        features = protowire.decode_example(data)
    except WireError as e:
        raise InvalidRecord(f"not a tf.train.Example/SequenceExample ({e})") from None
    return VIDEO if ("mean_rgb" in features or "mean_audio" in features) else FRAME


def _video_id(features: dict[str, FeatureValue]) -> str:
    for key in ID_KEYS:
        if key in features:
            value = features[key]
            if not isinstance(value, list) or len(value) != 1:
                raise InvalidRecord(f"context feature {key!r} must hold one bytes value")
            try:
                vid = value[0].decode("utf-8")
            except UnicodeDecodeError:
                raise InvalidRecord(f"{key!r} is not UTF-8 text") from None
            if not vid:
                raise InvalidRecord(f"empty {key!r}")
            return vid
    raise InvalidRecord("no 'id' feature (nor the 2017 name 'video_id')")


def _ints(features: dict[str, FeatureValue], key: str, vid: str, num_classes: int | None = None,
          label: bool = False) -> np.ndarray:
    value = features.get(key, np.zeros(0, np.int64))
    if isinstance(value, list):
        if value:
            raise InvalidRecord(f"{vid}: {key!r} must be an int64 list, found bytes")
        value = np.zeros(0, np.int64)
    if value.dtype != np.int64:
        raise InvalidRecord(f"{vid}: {key!r} must be an int64 list, found floats")
    if value.size and (value.min() < 0 or value.max() > _INT32_MAX):
        raise InvalidRecord(f"{vid}: {key!r} holds {int(value.min())}..{int(value.max())}, "
                            "expected non-negative values")
    if label and num_classes is not None and value.size and value.max() >= num_classes:
        raise InvalidRecord(f"{vid}: label id {int(value.max())} in {key!r} is outside the "
                            f"vocabulary ({num_classes} classes); data labelled with another "
                            "vocabulary (the 2017 release has 4716 classes) needs --vocabulary")
    return value.astype(np.int32)


def _floats(features: dict[str, FeatureValue], key: str, vid: str,
            size: int | None = None) -> np.ndarray:
    value = features.get(key)
    if value is None:
        raise InvalidRecord(f"{vid}: no {key!r} feature")
    if isinstance(value, list) or value.dtype != np.float32:
        raise InvalidRecord(f"{vid}: {key!r} must be a float list")
    if size is not None and value.shape != (size,):
        raise InvalidRecord(f"{vid}: {key!r} has {value.size} floats, expected {size}")
    return value


def _segments(features: dict[str, FeatureValue], vid: str,
              num_classes: int | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    present = [k for k in SEGMENT_KEYS if k in features]
    if not present:
        return np.zeros(0, np.int32), np.zeros(0, np.int32), np.zeros(0, np.float32)
    if len(present) != len(SEGMENT_KEYS):
        missing = sorted(set(SEGMENT_KEYS) - set(present))
        raise InvalidRecord(f"{vid}: segment fields incomplete: has {', '.join(present)} "
                            f"but not {', '.join(missing)}")
    starts = _ints(features, "segment_start_times", vid)
    labels = _ints(features, "segment_labels", vid, num_classes, label=True)
    scores = _floats(features, "segment_scores", vid)
    if not len(starts) == len(labels) == len(scores):
        raise InvalidRecord(f"{vid}: segment fields differ in length: {len(starts)} start "
                            f"times, {len(labels)} labels, {len(scores)} scores")
    return starts, labels, scores


def parse_frame_record(data: bytes, num_classes: int | None = None) -> VideoRecord:
    """A frame-level SequenceExample (v2 or v3) -> VideoRecord with uint8 rgb/audio views."""
    try:
        context, lists = protowire.decode_sequence_example(data)
        vid = _video_id(context)
        labels = _ints(context, "labels", vid, num_classes, label=True)
        starts, seg_labels, scores = _segments(context, vid, num_classes)
        frames = {}
        for key, width in (("rgb", RGB_DIM), ("audio", AUDIO_DIM)):
            if key not in lists:
                raise InvalidRecord(f"{vid}: no feature list {key!r}")
            try:
                frames[key] = lists[key].bytes_rows(width)
            except WireError as e:
                raise InvalidRecord(f"{vid}: feature list {key!r}: {e}") from None
    except WireError as e:
        raise InvalidRecord(f"malformed SequenceExample ({e})") from None
    rgb, audio = frames["rgb"], frames["audio"]
    if len(rgb) == 0:
        raise InvalidRecord(f"{vid}: no frames (empty 'rgb' feature list)")
    if len(rgb) != len(audio):
        raise InvalidRecord(f"{vid}: 'rgb' has {len(rgb)} frames but 'audio' has {len(audio)}")
    return VideoRecord(id=vid, labels=labels, rgb=rgb, audio=audio, has_audio=True,
                       segment_start_times=starts, segment_labels=seg_labels,
                       segment_scores=scores)


def parse_video_record(data: bytes, num_classes: int | None = None) -> VideoRecord:
    """A video-level Example -> VideoRecord with mean_rgb / mean_audio."""
    try:
        features = protowire.decode_example(data)
    except WireError as e:
        raise InvalidRecord(f"malformed Example ({e})") from None
    vid = _video_id(features)
    return VideoRecord(id=vid, labels=_ints(features, "labels", vid, num_classes, label=True),
                       mean_rgb=_floats(features, "mean_rgb", vid, RGB_DIM),
                       mean_audio=_floats(features, "mean_audio", vid, AUDIO_DIM))


def parse_record(data: bytes, kind: str, num_classes: int | None = None) -> VideoRecord:
    return (parse_frame_record if kind == FRAME else parse_video_record)(data, num_classes)


def encode_frame_record(video: VideoRecord) -> bytes:
    """The official frame-level SequenceExample (segment fields only when present)."""
    context: dict[str, FeatureValue] = {
        "id": [video.id.encode("utf-8")],
        "labels": np.asarray(video.labels, np.int64),
    }
    if len(video.segment_start_times):
        context["segment_start_times"] = np.asarray(video.segment_start_times, np.int64)
        context["segment_labels"] = np.asarray(video.segment_labels, np.int64)
        context["segment_scores"] = np.asarray(video.segment_scores, np.float32)
    return protowire.encode_sequence_example(context, {"rgb": video.rgb, "audio": video.audio})


def encode_video_record(video: VideoRecord) -> bytes:
    """The official video-level Example."""
    return protowire.encode_example({
        "id": [video.id.encode("utf-8")],
        "labels": np.asarray(video.labels, np.int64),
        "mean_rgb": np.asarray(video.mean_rgb, np.float32),
        "mean_audio": np.asarray(video.mean_audio, np.float32),
    })


# --------------------------------------------------------------------------- files

def find_tfrecords(pattern: str) -> list[str]:
    """Files matching a glob (`**` allowed); a folder means its *.tfrecord files."""
    if os.path.isdir(pattern):
        pattern = os.path.join(pattern, "*.tfrecord")
    paths = sorted(p for p in glob.glob(os.path.expanduser(pattern), recursive=True)
                   if os.path.isfile(p))
    if not paths:
        raise UsageError(f"--tfrecords {pattern!r} matches no file. Give a glob such as "
                         "'yt8m/frame/train*.tfrecord' (quoted, so the shell leaves it to us).")
    return paths


def peek_kind(path: str) -> str | None:
    """FRAME or VIDEO from the file's first readable records; None when none is."""
    reader = TFRecordReader(path)
    for i, (_, data) in enumerate(reader):
        try:
            return record_kind(data)
        except InvalidRecord:
            if i >= _PEEK_RECORDS:
                break
    return None
