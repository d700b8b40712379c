"""Shard store throughput: sequential reads against a raw read of the same bytes.

    python bench/store.py [--videos 1500] [--dir /tmp/bench-store]

Prints, from one run (the machine is shared, so only same-run ratios mean much):
raw read MB/s of the shard files (page cache warm, like `cat`), the store's
sequential MB/s and their ratio (target >= 0.7), and random single-video reads/s.
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from yt8m.representation import OFFICIAL  # noqa: E402
from yt8m.store import FRAME, ShardMeta, ShardSet, ShardWriter, VideoRecord, shard_paths  # noqa: E402
from yt8m.vocabulary import Vocabulary  # noqa: E402


def make(out: str, n: int) -> None:
    rng = np.random.default_rng(0)
    meta = ShardMeta(FRAME, OFFICIAL, Vocabulary.official_unnamed().ref)
    block = rng.integers(0, 256, (360, 1152), dtype=np.uint8)
    with ShardWriter(out, meta, videos_per_shard=1000) as w:
        for i in range(n):
            t = int(rng.integers(120, 361))
            w.add(VideoRecord(f"v{i}", np.array([i % 3862], np.int32),
                              np.roll(block[:t, :1024], i, axis=0), block[:t, 1024:].copy()))


def raw_read(paths: list[str]) -> int:
    total, buf = 0, bytearray(8 << 20)
    for p in paths:
        with open(p, "rb", buffering=0) as f:
            while (k := f.readinto(buf)):
                total += k
    return total


def best_of(fn, repeats: int = 3) -> tuple[float, object]:
    best, out = float("inf"), None
    for _ in range(repeats):
        t = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t)
    return best, out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--videos", type=int, default=1500)
    ap.add_argument("--dir", default="/tmp/bench-store")
    args = ap.parse_args()
    shutil.rmtree(args.dir, ignore_errors=True)
    make(args.dir, args.videos)
    paths = shard_paths(args.dir)
    size = sum(os.path.getsize(p) for p in paths)
    raw_read(paths)  # warm the page cache

    t_raw, _ = best_of(lambda: raw_read(paths))

    def sequential() -> int:
        data = ShardSet(args.dir)
        frames = sum(v.n_frames for v in data)
        data.close()
        return frames

    t_seq, frames = best_of(sequential)
    data = ShardSet(args.dir)
    t_iter, _ = best_of(lambda: sum(v.n_frames for v in data))
    order = np.random.default_rng(1).integers(0, len(data), 2000)
    t_rand, _ = best_of(lambda: [data[int(i)] for i in order])
    mb = size / 1e6
    print(f"shards: {len(paths)} files, {mb:.0f} MB, {args.videos} videos, {frames} frames")
    print(f"raw read        {mb / t_raw:8.0f} MB/s")
    print(f"store sequential{mb / t_seq:8.0f} MB/s  ({frames / t_seq:,.0f} frames/s)")
    print(f"ratio sequential/raw = {t_raw / t_seq:.2f}  (target >= 0.7; opening the shards included)")
    print(f"ratio sequential/raw = {t_raw / t_iter:.2f}  (shards already open)")
    print(f"random single-video reads: {len(order) / t_rand:,.0f} videos/s")
    shutil.rmtree(args.dir, ignore_errors=True)


if __name__ == "__main__":
    main()
