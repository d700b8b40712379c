"""Loader benchmark: videos/s the training loaders deliver per CPU core.

    python bench/loader.py [--videos 400] [--files 4] [--repeats 3]

Official-size frame-level records (200-300 frames per video, random bytes, written
with the project's exporter) as TFRecord files, and the same videos imported into
shards. In one process (one core), best of --repeats, alternating:

1. raw read: the TFRecord files' bytes, read in 1 MB blocks (page cache warm);
2. TFRecord stream: `StreamingRecords` (CRC checks, parsing, shuffle buffer) and
   `collate` into batches of 64, as `train --data DIR_OF_TFRECORDS` does;
3. shards: `ShardDataset` + `EpochBatchSampler` + `collate`, as `train --data SHARDS`.

Target for 2: >= 0.5 of 1 per core. Each is measured twice: with the page cache
warm, and cold (the files evicted with posix_fadvise(DONTNEED) before each run, so
they come from the disk). Loader workers multiply the loaders' rates where idle
cores exist (each worker reads its own files).
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from diskio import drop_cache, read_through  # noqa: E402  (bench/, the script's folder)


def make_data(root: str, videos: int, files: int) -> tuple[str, str]:
    from yt8m.exporter import export_tfrecords
    from yt8m.importer import import_tfrecords
    from yt8m.representation import OFFICIAL
    from yt8m.store import FRAME, ShardMeta, ShardWriter, VideoRecord
    from yt8m.vocabulary import Vocabulary

    src, records, shards = (os.path.join(root, n) for n in ("src", "records", "shards"))
    rng = np.random.default_rng(0)
    vocab = Vocabulary.official_unnamed()
    with ShardWriter(src, ShardMeta(FRAME, OFFICIAL, vocab.ref)) as w:
        for i in range(videos):
            t = int(rng.integers(200, 301))
            w.add(VideoRecord(f"v{i:06d}", rng.integers(0, 3862, 3).astype(np.int32),
                              rng.integers(0, 256, (t, 1024), dtype=np.uint8),
                              rng.integers(0, 256, (t, 128), dtype=np.uint8)))
    export_tfrecords(src, records, videos_per_file=-(-videos // files), quiet=True)
    import_tfrecords(records, shards, quiet=True)
    return records, shards


def raw_read(files: list[str]) -> float:
    t = time.perf_counter()
    read_through(files)
    return time.perf_counter() - t


def tfrecord_stream(source, videos: int) -> float:
    from model.training.data import collate
    from model.training.sources.tfrecords import StreamingRecords

    stream = iter(StreamingRecords(source, 300, seed=0, buffer=256))
    t = time.perf_counter()
    for _ in range(0, videos, 64):
        collate([next(stream) for _ in range(64)])
    return time.perf_counter() - t


def shard_loader(shards, videos: int) -> float:
    from model.training.data import EpochBatchSampler, collate
    from model.training.sources.shards import ShardDataset

    dataset = ShardDataset(shards, 300)
    t = time.perf_counter()
    for batch in EpochBatchSampler(len(shards), 64, seed=0, epoch=0):
        collate([dataset[i] for i in batch])
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--videos", type=int, default=400)
    ap.add_argument("--files", type=int, default=4)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    import torch
    torch.set_num_threads(1)
    from model.training.sources import open_source
    from yt8m.store import ShardSet

    root = tempfile.mkdtemp(prefix="bench-loader-")
    records, shard_dir = make_data(root, args.videos, args.files)
    source, shards = open_source(records), ShardSet(shard_dir)
    size = sum(os.path.getsize(p) for p in source.files)
    n = args.videos - args.videos % 64
    runs = {"raw": lambda: raw_read(source.files), "tfrecord": lambda: tfrecord_stream(source, n),
            "shards": lambda: shard_loader(shards, n)}
    files = source.files + [r.path for r in shards.shards]
    times = {(name, cold): [] for name in runs for cold in (False, True)}
    for _ in range(args.repeats):
        for cold in (False, True):
            for name, run in runs.items():
                if cold:
                    drop_cache(files)
                times[name, cold].append(run())
    print(f"{args.videos} videos of 200-300 frames, {size / 1e6:.0f} MB in {len(source.files)} "
          f"TFRecord files; one core, best of {args.repeats}:")
    for cold in (False, True):
        raw = args.videos / min(times["raw", cold])
        print(f"  {'cold (from disk)' if cold else 'warm (page cache)'}: raw read {raw:8.0f} "
              f"videos/s ({size / min(times['raw', cold]) / 1e6:.0f} MB/s)")
        for name in ("tfrecord", "shards"):
            rate = n / min(times[name, cold])
            print(f"    {name:<9} {rate:8.0f} videos/s, ratio to raw read {rate / raw:.2f}")

if __name__ == "__main__":
    main()
