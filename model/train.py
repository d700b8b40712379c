"""The training loop: one plain function, nanoGPT style.

Adam at 2e-4, decayed by 0.8 every 2M examples (staircase), gradient clipping at
1.0, batch 160 (global: split over processes), binary cross entropy: the NeXtVLAD
paper's defaults. Under torchrun it runs DistributedDataParallel (NCCL on GPUs,
gloo on CPU) with synchronised batch norm, and batch b of the run is the same
videos for any number of processes. Dropout is seeded from (seed, rank, step),
so a resumed run continues exactly: model, optimizer, scheduler, data position
and random numbers all follow from the checkpoint.
"""
from __future__ import annotations

import csv
import dataclasses
import math
import os
import sys
import time
from contextlib import nullcontext
from dataclasses import dataclass

import numpy as np
import torch

from yt8m.assets import DEFAULT_PCA_DIR
from yt8m.cli_util import resolve_device
from yt8m.errors import UsageError
from yt8m.representation import DEFAULT_MAX_FRAMES, MAX_FRAMES_LIMIT
from yt8m.store import VIDEO, ShardSet

from . import checkpoint as ckpt
from .config import ModelConfig, build_model
from .data import Batch, EpochBatchSampler, ShardDataset, collate, to_device

METRIC_COLUMNS = ["step", "split", "examples", "loss", "lr", "videos_per_s", "data_wait",
                  "gap", "map", "hit_at_1", "perr"]


@dataclass
class TrainConfig:
    data: str = "data/features"
    val: str | None = None
    out: str = "runs"
    epochs: int = 5
    steps: int | None = None  # total optimizer steps; overrides epochs
    batch_size: int = 160  # global, over all processes
    lr: float = 2e-4
    lr_decay: float = 0.8
    decay_examples: int = 2_000_000
    clip_norm: float = 1.0
    max_frames: int = DEFAULT_MAX_FRAMES
    device: str = "auto"
    precision: str = "auto"  # auto (bf16 on CUDA, fp32 on CPU) | fp32 | bf16 | fp16
    workers: int = 2
    seed: int = 0
    checkpoint_every: int = 1000
    log_every: int = 20
    resume: str | None = None  # run folder or checkpoint to continue
    pca_dir: str = DEFAULT_PCA_DIR  # eigenvals.npy for reverse whitening, if the shards lack them
    quiet: bool = False


@dataclass
class Distributed:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0


def setup_distributed(device: torch.device) -> Distributed:
    """Join the process group torchrun describes in the environment (no-op when alone)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Distributed()
    import torch.distributed as dist
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return Distributed(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))


def pick_device(name: str, local_rank: int) -> torch.device:
    """--device resolved as every command does it; under torchrun, this process's GPU."""
    device = resolve_device(name)
    if device.type == "cuda":
        torch.cuda.set_device(local_rank)
        return torch.device("cuda", local_rank)
    return device


def autocast_for(device: torch.device, precision: str):
    if precision == "auto":
        precision = "bf16" if device.type == "cuda" else "fp32"
    if precision == "fp32":
        return nullcontext(), precision
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(device.type, dtype=dtype), precision


def step_seed(seed: int, rank: int, step: int) -> int:
    return (seed * 1_000_003 + rank * 7919 + step) % (2 ** 63)


def open_training_data(path: str, what: str) -> ShardSet:
    shards = ShardSet(path)  # UsageError when the folder is missing or holds no shards
    if len(shards) == 0:
        raise UsageError(f"{path}: the shards hold no videos. Run `python pipeline.py extract` "
                         f"or `import-yt8m` first to make {what} data.")
    return shards


def check_model_fits_data(config: ModelConfig, shards: ShardSet) -> None:
    video_data = shards.meta.kind == VIDEO
    if config.video_level != video_data:
        kind = "video-level" if video_data else "frame-level"
        choices = "logistic or moe" if video_data else \
            "nextvlad, mix-nextvlad, netvlad, dbof or mean-logistic"
        raise UsageError(f"--model {config.name} cannot train on {shards.data_dir}, which holds "
                         f"{kind} shards; use --model {choices}.")


def rgb_eigenvalues(shards: ShardSet, pca_dir: str) -> np.ndarray:
    """The visual PCA eigenvalues: recorded in the shards (meta.extra['rgb_pca_eigenvals']),
    else the published `eigenvals.npy` in --pca-dir. UsageError if neither has them."""
    values = shards.meta.extra.get("rgb_pca_eigenvals")
    source = f"the shards in {shards.data_dir}"
    if values is None:
        path = os.path.join(pca_dir, "eigenvals.npy")
        if not os.path.exists(path):
            raise UsageError("--reverse-whitening needs the visual PCA eigenvalues: the shards do "
                             f"not record them and {path} does not exist. Run `python pipeline.py "
                             "download` (or pass --pca-dir), or train without --reverse-whitening.")
        values, source = np.load(path), path
    values = np.asarray(values, dtype=np.float32).ravel()
    if values.size < 1024 or not np.all(np.isfinite(values)) or values[:1024].min() < 0:
        raise UsageError(f"{source}: expected at least 1024 finite, non-negative PCA eigenvalues")
    return values[:1024]


def train(tc: TrainConfig, mc: ModelConfig) -> str:
    """Train; returns the run folder. Raises UsageError for what the user can fix."""
    if not 1 <= tc.max_frames <= MAX_FRAMES_LIMIT:
        raise UsageError(f"--max-frames {tc.max_frames}: must be between 1 and {MAX_FRAMES_LIMIT}")
    if tc.batch_size < 1 or not tc.lr > 0:
        raise UsageError(f"--batch-size {tc.batch_size} / --lr {tc.lr}: need a batch of at least 1 "
                         "and a positive learning rate")
    device = pick_device(tc.device, int(os.environ.get("LOCAL_RANK", "0")))
    ddp = setup_distributed(device)
    if tc.batch_size % ddp.world_size:
        raise UsageError(f"--batch-size {tc.batch_size} is the global batch and must be divisible "
                         f"by the {ddp.world_size} processes")

    resumed = None
    if tc.resume:
        resumed = ckpt.Checkpoint.load(tc.resume)
        if resumed.training is None:
            raise UsageError(f"{tc.resume} holds a model without its training state (a converted "
                             "or published model); --resume continues runs written by `train`.")
        mc = resumed.config
        saved = TrainConfig(**resumed.training.train_config)
        # Continue as configured; only the length of the run and the machinery may change.
        tc = dataclasses.replace(saved, steps=tc.steps or saved.steps, epochs=tc.epochs,
                                 device=tc.device, workers=tc.workers, quiet=tc.quiet,
                                 resume=tc.resume, checkpoint_every=tc.checkpoint_every)

    shards = open_training_data(tc.data, "training")
    check_model_fits_data(mc, shards)
    vocabulary = shards.vocabulary
    mc.num_classes = len(vocabulary)
    if resumed is not None:
        problems = resumed.representation.differences(shards.meta.representation)
        if problems or resumed.vocabulary.sha256 != vocabulary.sha256:
            raise UsageError(f"cannot resume on {tc.data}: its shards differ from the run's training "
                             f"data ({'; '.join(problems) or 'vocabulary differs'}).")
    val = open_training_data(tc.val, "validation") if tc.val else None
    if val is not None:
        check_model_fits_data(mc, val)
        if val.meta.mismatch(shards.meta):
            raise UsageError(f"--val {tc.val} was made differently from --data {tc.data}: "
                             + "; ".join(val.meta.mismatch(shards.meta)))

    global_batch = tc.batch_size
    per_epoch = EpochBatchSampler.batches_per_epoch(len(shards), global_batch)
    if per_epoch == 0:
        raise UsageError(f"{tc.data} holds {len(shards)} videos, fewer than one batch of "
                         f"{global_batch}; lower --batch-size.")
    total_steps = tc.steps if tc.steps else tc.epochs * per_epoch

    torch.manual_seed(tc.seed)  # same initial weights on every rank
    model = build_model(mc).to(device)
    if mc.reverse_whitening and hasattr(model, "rgb_scale"):
        # Undo the whitening's division by sqrt(eigenvalue + 1e-4) (docs/reference.md, "Representation").
        eig = rgb_eigenvalues(shards, tc.pca_dir)
        with torch.no_grad():
            model.rgb_scale.copy_(torch.from_numpy(np.sqrt(eig + 1e-4)).to(device))
    optimizer = torch.optim.Adam(model.parameters(), lr=tc.lr)
    decay = lambda step: tc.lr_decay ** ((step * global_batch) // tc.decay_examples)  # noqa: E731
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, decay)
    step = 0
    if resumed is not None:
        model.load_state_dict(resumed.weights)
        optimizer.load_state_dict(resumed.training.optimizer)
        scheduler.load_state_dict(resumed.training.scheduler)
        step = resumed.training.step
    # realpath: resuming runs/latest must write into (and re-point latest at) the real folder
    run_dir = os.path.dirname(os.path.realpath(ckpt.checkpoint_path(tc.resume))) if tc.resume else None

    train_model = model
    if ddp.world_size > 1:
        from torch.nn.parallel import DistributedDataParallel
        train_model = DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None)

    autocast, precision = autocast_for(device, tc.precision)
    scaler = torch.amp.GradScaler("cuda") if precision == "fp16" else None

    if ddp.main:
        if run_dir is None:
            run_dir = ckpt.new_run_dir(tc.out, mc.name)
        ckpt.write_summary(run_dir, mc, shards.meta.representation, vocabulary, shards.meta.kind,
                           {"train": dataclasses.asdict(tc)})
        log = MetricsLog(run_dir)
    dataset = ShardDataset(shards, tc.max_frames)

    def loader(epoch: int, start: int):
        sampler = EpochBatchSampler(len(shards), global_batch, tc.seed, epoch, ddp.rank,
                                    ddp.world_size, start)
        return iter(torch.utils.data.DataLoader(
            dataset, batch_sampler=sampler, collate_fn=collate, num_workers=tc.workers,
            pin_memory=device.type == "cuda", prefetch_factor=4 if tc.workers else None,
            generator=torch.Generator().manual_seed(step_seed(tc.seed, 0, epoch))))

    def save(step: int) -> str:
        path = os.path.join(run_dir, ckpt.CHECKPOINT)
        ckpt.Checkpoint(
            model.state_dict(), mc, shards.meta.representation, vocabulary, shards.meta.kind,
            tc.max_frames, ckpt.TrainingState(optimizer.state_dict(), scheduler.state_dict(),
                                              step, dataclasses.asdict(tc))).save(path)
        return path

    from yt8m.cli_util import progress
    bar = progress(total=total_steps, desc=f"train {mc.name}", quiet=tc.quiet or not ddp.main,
                   unit="step")
    bar.update(step)
    epoch, in_epoch = divmod(step, per_epoch)
    batches = loader(epoch, in_epoch)
    model.train()
    last_saved = step if resumed is not None else None
    pointed_latest = False
    window_start, window_videos, window_wait = time.perf_counter(), 0, 0.0
    try:
        while step < total_steps:
            t0 = time.perf_counter()
            try:
                batch: Batch = next(batches)
            except StopIteration:
                epoch += 1
                batches = loader(epoch, 0)
                continue
            window_wait += time.perf_counter() - t0
            torch.manual_seed(step_seed(tc.seed, ddp.rank, step))
            b = to_device(batch, device)
            with autocast:
                if mc.video_level:
                    _, loss = train_model(b.rgb, b.audio, b.labels)
                else:
                    _, loss = train_model(b.rgb, b.audio, b.mask, b.labels)
            mean_loss = loss.detach().float()
            if ddp.world_size > 1:
                import torch.distributed as dist
                dist.all_reduce(mean_loss)
                mean_loss /= ddp.world_size
            loss_value = mean_loss.item()
            if not math.isfinite(loss_value):
                kept = (f"the last good checkpoint (step {last_saved}) is {run_dir}/{ckpt.CHECKPOINT}"
                        if last_saved is not None else "no checkpoint was written before it")
                raise UsageError(f"training stopped: the loss became {loss_value} at step {step + 1}; "
                                 f"{kept}. Lower --lr (now {tc.lr:g}) and train again, or "
                                 "--resume from the checkpoint.")
            optimizer.zero_grad(set_to_none=True)
            if scaler is not None:
                scaler.scale(loss).backward()
                scaler.unscale_(optimizer)
                torch.nn.utils.clip_grad_norm_(model.parameters(), tc.clip_norm)
                scaler.step(optimizer)
                scaler.update()
            else:
                loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), tc.clip_norm)
                optimizer.step()
            scheduler.step()
            step += 1
            window_videos += len(batch) * ddp.world_size
            bar.update(1)
            if ddp.main:
                if step % tc.log_every == 0 or step == total_steps:
                    elapsed = time.perf_counter() - window_start
                    log.row(step=step, split="train", examples=step * global_batch, loss=loss_value,
                            lr=scheduler.get_last_lr()[0], videos_per_s=window_videos / elapsed,
                            data_wait=window_wait / elapsed)
                    bar.set_postfix(loss=f"{loss_value:.3f}")
                    if bar.disable and not tc.quiet:  # no bar (not a terminal): plain log lines
                        print(f"step {step}/{total_steps} loss {loss_value:.4f} "
                              f"lr {scheduler.get_last_lr()[0]:.3g} "
                              f"{window_videos / elapsed:.1f} videos/s", file=sys.stderr)
                    window_start, window_videos, window_wait = time.perf_counter(), 0, 0.0
                if step % tc.checkpoint_every == 0 or step == total_steps:
                    save(step)
                    if not pointed_latest:  # from its first checkpoint on, this is the run to resume
                        ckpt.point_latest(os.path.dirname(os.path.abspath(run_dir)), run_dir)
                        pointed_latest = True
                    last_saved = step
                    if val is not None:
                        _validate(model, val, tc, device, autocast, log, step, global_batch)
                        model.train()
    finally:
        bar.close()
        if ddp.main:
            log.close()
    return run_dir


def _validate(model, val: ShardSet, tc: TrainConfig, device, autocast, log: "MetricsLog",
              step: int, global_batch: int) -> dict[str, float]:
    from .evaluate import predict_shards
    from .metrics import all_metrics
    predictions, labels = predict_shards(model, val, device, tc.batch_size, tc.max_frames,
                                         workers=0, autocast=autocast, quiet=True)
    result = all_metrics(predictions, labels)
    log.row(step=step, split="val", examples=step * global_batch, **result)
    print(f"step {step}: validation " + " ".join(f"{k}={v:.4f}" for k, v in result.items()),
          file=sys.stderr)
    return result


class MetricsLog:
    """metrics.csv (appended, so a resumed run continues it) and TensorBoard events."""

    def __init__(self, run_dir: str):
        path = os.path.join(run_dir, "metrics.csv")
        new = not os.path.exists(path)
        self._file = open(path, "a", newline="", encoding="utf-8")
        self._csv = csv.DictWriter(self._file, fieldnames=METRIC_COLUMNS)
        if new:
            self._csv.writeheader()
        try:
            from torch.utils.tensorboard import SummaryWriter
            self._tb = SummaryWriter(run_dir)
        except ImportError:  # tensorboard not installed: the CSV still has everything
            self._tb = None

    def row(self, **values) -> None:
        self._csv.writerow({k: values.get(k, "") for k in METRIC_COLUMNS})
        self._file.flush()
        if self._tb is not None:
            for k, v in values.items():
                if k not in ("step", "split", "examples") and isinstance(v, float):
                    self._tb.add_scalar(f"{values['split']}/{k}", v, values["step"])

    def close(self) -> None:
        self._file.close()
        if self._tb is not None:
            self._tb.close()
