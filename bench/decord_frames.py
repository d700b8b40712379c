"""Does decord give the frames of the rule, in bounded memory? (Why PyAV decodes the frames.)

    python bench/decord_frames.py [--clip FILE] [--frames 48]

Reads the first --frames kept frames (t = 0, 1, ... s) of a clip with decord in three
ways, in chunks of 8 as extraction does, and compares each frame with PyAV's (which
the tests show bit-identical to the `ffmpeg` command):

  seek      a keyframe seek before each chunk (what bounds decord's read-ahead);
  accurate  decord's `seek_accurate` onto the next chunk's first frame instead;
  none      no seeks at all.

Each way runs in a process of its own, so the peak RSS printed is its own. The
default clip is bench/extract.py's 10-minute 1080p H.264 clip (made if missing).
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

MODES = ("seek", "accurate", "none")
CHUNK = 8


def read_with_decord(clip: str, frames: int, mode: str) -> dict:
    import numpy as np

    from extract.decode import AvVideo, DecordVideo, check_file

    reference = np.concatenate(list(AvVideo.open(clip, frames, clip).chunks()))
    video = DecordVideo.open(clip, frames, clip, check_file(clip))
    reader, indices = video.reader, video.info.indices
    keyframes = np.asarray(reader.get_key_indices(), np.int64)
    start, got = time.perf_counter(), []
    for a in range(0, len(indices), CHUNK):
        got.append(reader.get_batch(indices[a:a + CHUNK].tolist()).asnumpy())
        if a + CHUNK >= len(indices):
            break
        nxt = int(indices[a + CHUNK])
        if mode == "seek":
            reader.seek(int(keyframes[keyframes <= nxt][-1]))
        elif mode == "accurate":
            reader.seek_accurate(nxt)
    got = np.concatenate(got)
    diff = np.abs(got.astype(np.int16) - reference.astype(np.int16)).reshape(len(got), -1).max(1)
    return {"mode": mode, "frames": len(got), "wrong_positions": np.nonzero(diff)[0].tolist(),
            "max_grey_levels_off": int(diff.max()), "seconds": time.perf_counter() - start,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--clip", help="default: the 10-minute 1080p clip of bench/extract.py")
    ap.add_argument("--frames", type=int, default=48, help="kept frames to compare")
    ap.add_argument("--mode", choices=MODES, help=argparse.SUPPRESS)  # one child's run
    ap.add_argument("--tmp", default="/tmp/yt8m-bench-extract")
    args = ap.parse_args()
    if args.mode:
        print(json.dumps(read_with_decord(args.clip, args.frames, args.mode)))
        return
    if not args.clip:
        from clips import long_1080p
        videos = long_1080p(10, args.tmp)
        args.clip = os.path.join(videos, sorted(os.listdir(videos))[0])
    print(f"{os.path.basename(args.clip)}: the first {args.frames} kept frames, decord against PyAV")
    for mode in MODES:
        out = subprocess.run([sys.executable, __file__, "--clip", args.clip, "--frames",
                              str(args.frames), "--mode", mode], capture_output=True, text=True)
        if out.returncode != 0:
            print(f"  {mode:8s} failed: {out.stderr.strip().splitlines()[-1:]}")
            continue
        r = json.loads(out.stdout.strip().splitlines()[-1])
        print(f"  {mode:8s} wrong frames at positions {r['wrong_positions'] or 'none'} "
              f"(up to {r['max_grey_levels_off']} grey levels off), peak RSS "
              f"{r['peak_rss_mb']:.0f} MB, {r['seconds']:.1f} s")


if __name__ == "__main__":
    main()
