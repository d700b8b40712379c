"""Training throughput of the default NeXtVLAD at 300 frames per video.

Runs the real training entry (model.training.train.train) on freshly written synthetic
300-frame shards and reports, from the same run:
  - training videos/s (steady state: the first logging window, with warm-up, is dropped),
  - the share of step time spent waiting for the data loader,
  - achieved FLOP/s (FLOPs of one forward+backward counted by torch's FlopCounterMode,
    times steps/s) against the FLOP/s of a plain large matmul measured here (the ratio).

CPU:  python bench/train.py                         (batch 16: 160 would take minutes a step)
GPU:  python bench/train.py --device cuda --bf16 --batch-size 512 --videos 20480 --steps 60
"""
from __future__ import annotations

import argparse
import csv
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402
import torch  # noqa: E402


def write_shards(out_dir: str, videos: int, frames: int, num_classes: int) -> None:
    from synthetic.shards import SYNTHETIC, shard_writer
    from yt8m.store import VideoRecord
    rng = np.random.default_rng(0)
    with shard_writer(out_dir, num_classes, representation=SYNTHETIC, videos_per_shard=256) as w:
        for i in range(videos):
            w.add(VideoRecord(f"v{i:06d}", rng.integers(0, num_classes, 3).astype(np.int32),
                              rng.integers(0, 256, (frames, 1024), dtype=np.uint8),
                              rng.integers(0, 256, (frames, 128), dtype=np.uint8)))


def matmul_flops(device: torch.device, dtype: torch.dtype, n: int, seconds: float = 3.0) -> float:
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    for _ in range(3):
        a @ b
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    sync()
    reps, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        a @ b
        reps += 1
        if device.type == "cuda" and reps % 50:
            continue
        sync()
    sync()
    return 2 * n ** 3 * reps / (time.perf_counter() - start)


def step_flops(config, batch: int, frames: int, device: torch.device, bf16: bool) -> int:
    from torch.utils.flop_counter import FlopCounterMode

    from model.architectures.config import build_model
    model = build_model(config).to(device).train()
    rgb = torch.rand(batch, frames, 1024, device=device)
    audio = torch.rand(batch, frames, 128, device=device)
    mask = torch.ones(batch, frames, device=device)
    labels = torch.zeros(batch, config.num_classes, device=device)
    ctx = torch.autocast(device.type, dtype=torch.bfloat16) if bf16 \
        else torch.autocast(device.type, enabled=False)
    with FlopCounterMode(display=False) as counter:
        with ctx:
            _, loss = model(rgb, audio, mask, labels)
        loss.backward()
    return counter.get_total_flops()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--bf16", action="store_true", help="bf16 autocast (GPU)")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--videos", type=int, default=None, help="default: enough for one epoch")
    parser.add_argument("--frames", type=int, default=300)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--classes", type=int, default=3862)
    parser.add_argument("--matmul-size", type=int, default=None)
    args = parser.parse_args()

    from model.architectures.config import ModelConfig
    from model.training.train import TrainConfig, train

    device = torch.device(args.device)
    log_every = max(1, args.steps // 3)
    videos = args.videos or args.batch_size * args.steps
    with tempfile.TemporaryDirectory() as tmp:
        data = os.path.join(tmp, "data")
        t = time.perf_counter()
        write_shards(data, videos, args.frames, args.classes)
        print(f"wrote {videos} videos x {args.frames} frames in {time.perf_counter() - t:.1f} s")
        config = ModelConfig("nextvlad", num_classes=args.classes)
        run = train(TrainConfig(data=data, out=os.path.join(tmp, "runs"), steps=args.steps,
                                batch_size=args.batch_size, workers=args.workers, device=args.device,
                                precision="bf16" if args.bf16 else "fp32", log_every=log_every,
                                checkpoint_every=10 ** 9, quiet=True), config)
        with open(os.path.join(run, "metrics.csv")) as f:
            rows = [r for r in csv.DictReader(f) if r["split"] == "train"]
    steady = rows[1:] or rows  # the first window holds warm-up and worker start
    videos_per_s = float(np.mean([float(r["videos_per_s"]) for r in steady]))
    data_wait = float(np.mean([float(r["data_wait"]) for r in steady]))
    flops = step_flops(config, args.batch_size, args.frames, device, args.bf16)
    achieved = flops / args.batch_size * videos_per_s
    dtype = torch.bfloat16 if args.bf16 else torch.float32
    peak = matmul_flops(device, dtype, args.matmul_size or (8192 if device.type == "cuda" else 1024))
    print(f"device {args.device}{' bf16' if args.bf16 else ''}, threads {torch.get_num_threads()}, "
          f"batch {args.batch_size}, {args.frames} frames, {args.steps} steps, workers {args.workers}")
    print(f"training: {videos_per_s:.2f} videos/s (steady windows: {len(steady)})")
    print(f"data wait: {100 * data_wait:.1f}% of step time (target < 10%)")
    print(f"FLOPs per video (fwd+bwd): {flops / args.batch_size / 1e9:.2f} G")
    print(f"achieved {achieved / 1e9:.1f} GFLOP/s vs matmul {peak / 1e9:.1f} GFLOP/s: "
          f"ratio {achieved / peak:.2f}")


if __name__ == "__main__":
    main()
