"""Data sources: one interface over HDF5 shards and the official TFRecords.

    source = open_source("data/features")          # or "yt8m/frame/train*.tfrecord"
    source.meta.representation, source.vocabulary, len(source)
    for got in source.read(): ...                  # SourceVideo, or its Problem in its place

Train, evaluate and predict open their data here and use only `DataSource`
(`base.py`); what differs between the kinds lives in `shards.py` and `tfrecords.py`.
"""
from __future__ import annotations

import glob
import os

from .base import DataSource, SourceVideo, Storage, StreamPlan, TrainingFeed
from .shards import ShardSource
from .tfrecords import RecordSource

__all__ = ["DataSource", "RecordSource", "ShardSource", "SourceVideo", "Storage", "StreamPlan",
           "TrainingFeed", "is_records", "open_source"]


def is_records(path: str) -> bool:
    """A folder holding *.tfrecord files, or a glob / file naming TFRecords."""
    if os.path.isdir(path):
        return bool(glob.glob(os.path.join(glob.escape(path), "*.tfrecord")))
    return ".tfrecord" in path or any(ch in path for ch in "*?[")


def open_source(path: str, strict: bool = True) -> DataSource:
    """The data set at `path`: official TFRecords (a folder of *.tfrecord, a glob or a file)
    or a folder of shards. UsageError when there is none; NoUsableData when TFRecords hold
    not one readable record. strict (shards): a damaged shard file refuses the folder;
    otherwise it is left out and listed in `source.refused`."""
    return RecordSource(path) if is_records(path) else ShardSource(path, strict)
