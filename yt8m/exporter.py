"""Shards -> official YouTube-8M TFRecords (`python pipeline.py export-tfrecord`).

Frame-level shards become frame-level SequenceExamples (context id, labels and,
when a video has them, the v3 segment fields; feature lists rgb and audio with
the quantized bytes as stored); video-level shards become video-level Examples.
Files follow the official naming, `<split>NNNN.tfrecord` (`train0000.tfrecord`,
`validate0093.tfrecord`, ...), each written under a temporary name and renamed
when complete, so a rerun skips the files already there.
"""
from __future__ import annotations

import os
import shutil
import sys

from . import official
from .errors import UsageError
from .iterate import batched
from .report import Report
from .shard_check import FRAME
from .shard_folder import ShardSet
from .tfrecord import write_tfrecord
from .vocabulary import FILENAME as VOCABULARY_FILENAME

COMMAND = "export-tfrecord"
SPLITS = ("train", "validate", "test")
# The official frame-level files hold about a thousand videos each
# (3.9 M training videos in 3844 files).
VIDEOS_PER_FILE = 1000


def official_file_name(split: str, index: int) -> str:
    """`train0093.tfrecord`: the split, then the file's number in four digits."""
    return f"{split}{index:04d}.tfrecord"


def export_tfrecords(data_dir: str, out_dir: str, split: str = "train",
                     videos_per_file: int = VIDEOS_PER_FILE, quiet: bool = False) -> Report:
    """Write every video of the shards in `data_dir` as official TFRecords into `out_dir`."""
    from .cli_util import progress

    if videos_per_file < 1:
        raise UsageError("--videos-per-file must be at least 1")
    shards = ShardSet(data_dir, strict=False)
    report = Report(COMMAND)
    for e in shards.errors:  # damaged shards are reported; the others are exported
        report.add(e.problem)
    encode = official.encode_frame_record if shards.meta.kind == FRAME else official.encode_video_record
    os.makedirs(out_dir, exist_ok=True)
    vocabulary = os.path.join(data_dir, VOCABULARY_FILENAME)
    if os.path.exists(vocabulary):
        shutil.copyfile(vocabulary, os.path.join(out_dir, VOCABULARY_FILENAME))

    written = skipped = 0
    with progress(total=len(shards), desc="export", quiet=quiet, unit="video") as bar:
        for index, group in enumerate(batched(iter(shards), videos_per_file)):
            path = os.path.join(out_dir, official_file_name(split, index))
            if os.path.exists(path):
                skipped += 1
            else:
                write_tfrecord(path, (encode(v) for v in group))
                written += 1
            report.done += len(group)
            bar.update(len(group))
    shards.close()
    print(f"exported {report.done} videos ({shards.meta.kind}-level) to {out_dir}: "
          f"{written} file(s) written" + (f", {skipped} already there" if skipped else ""),
          file=sys.stderr)
    return report
