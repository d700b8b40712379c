"""The training loop, nanoGPT style: `prepare_run`, then `train_step` per batch, a log
line per window (the only host synchronisation), `save_checkpoint` and validation.

Adam at 2e-4, decayed by 0.8 every 2M examples (staircase), gradient clipping at
1.0, batch 160 (global: split over processes), binary cross entropy: the NeXtVLAD
paper's defaults. Under torchrun it runs DistributedDataParallel (NCCL on GPUs,
gloo on CPU) with synchronised batch norm, and batch b of the run is the same
videos for any number of processes. Dropout is seeded from (seed, rank, step),
so a resumed run continues exactly: model, optimizer, scheduler, data position
and random numbers all follow from the checkpoint.
"""
from __future__ import annotations

import dataclasses
import math
import os
import sys
import time
from contextlib import nullcontext
from dataclasses import dataclass, field

import numpy as np
import torch

from model.architectures.config import ModelConfig, build_model
from yt8m.cli_util import resolve_device
from yt8m.errors import NoUsableData, Problem, UsageError
from yt8m.pca_files import identities
from yt8m.representation import check_max_frames

from . import checkpoint as ckpt
from . import finetune
from .config import TrainConfig, default_workers
from .data import Batch, EpochBatchSampler, step_seed, to_device
from .run_log import MetricsLog
from .sources import DataSource
from .train_data import check_usable, open_data, open_feed


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


def rgb_eigenvalues(shards: DataSource, pca_dir: str) -> np.ndarray:
    """The visual PCA eigenvalues from `--pca-dir`, refused unless they are the PCA the
    shards were made with (their recorded rgb_pca identity)."""
    path = os.path.join(pca_dir, "eigenvals.npy")
    if not os.path.exists(path):
        raise UsageError(f"--reverse-whitening needs the visual PCA eigenvalues: {path} does not "
                         "exist. Run `python pipeline.py download` (or pass --pca-dir with the "
                         "PCA the shards were made with), or train without --reverse-whitening.")
    made_with = shards.meta.representation.rgb_pca
    have = identities(pca_dir)[0]
    if have != made_with:
        raise UsageError(f"--reverse-whitening: {pca_dir} holds the PCA {have!r}, but the shards in "
                         f"{shards.data_dir} were made with {made_with!r}. Pass --pca-dir with "
                         "the parameters the shards were extracted with.")
    values = np.asarray(np.load(path), dtype=np.float32).ravel()
    if values.size < 1024 or not np.all(np.isfinite(values)) or values[:1024].min() < 0:
        raise UsageError(f"{path}: expected at least 1024 finite, non-negative PCA eigenvalues")
    return values[:1024]


def apply_reverse_whitening(model: torch.nn.Module, shards: DataSource, pca_dir: str) -> None:
    """Undo the whitening's division by sqrt(eigenvalue + 1e-4) (docs/reference.md,
    "Representation") in every NeXtVLAD of the model (mix-nextvlad has several)."""
    scales = [m.rgb_scale for m in model.modules() if hasattr(m, "rgb_scale")]
    if not scales:
        raise UsageError("--reverse-whitening applies to nextvlad and mix-nextvlad only.")
    scale = torch.from_numpy(np.sqrt(rgb_eigenvalues(shards, pca_dir) + 1e-4))
    with torch.no_grad():
        for buffer in scales:
            buffer.copy_(scale.to(buffer.device))


@dataclass
class Run:
    """What the loop works with, made once by `prepare_run`."""

    tc: TrainConfig
    mc: ModelConfig
    device: torch.device
    ddp: Distributed
    shards: DataSource
    val: DataSource | None
    model: torch.nn.Module
    train_model: torch.nn.Module  # the model, wrapped for DistributedDataParallel under torchrun
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    scaler: torch.amp.GradScaler
    autocast: object
    run_dir: str
    step: int
    per_epoch: int
    total_steps: int
    last_saved: int | None
    damaged: set[Problem] = field(default_factory=set)  # the inputs skipped
    pointed_latest: bool = False  # runs/latest points here from this process's first checkpoint
    origin: dict[str, str] = field(default_factory=dict)  # a fine-tune's initial model


@dataclass
class Window:
    """What happened since the last log line; the loss stays on the device until then."""

    start: float = field(default_factory=time.perf_counter)
    videos: int = 0
    wait: float = 0.0
    steps: int = 0
    loss_sum: torch.Tensor | None = None

    def add(self, loss: torch.Tensor, videos: int) -> None:
        self.loss_sum = loss if self.loss_sum is None else self.loss_sum + loss
        self.steps += 1
        self.videos += videos


def check_config(tc: TrainConfig) -> None:
    check_max_frames(tc.max_frames)
    if tc.batch_size < 1 or not tc.lr > 0:
        raise UsageError(f"--batch-size {tc.batch_size} / --lr {tc.lr}: need a batch of at least 1 "
                         "and a positive learning rate")


# Settings of this invocation even on --resume: where and how visibly it runs.
MACHINERY = ("device", "quiet", "resume")


def asked_for(tc: TrainConfig, mc: ModelConfig) -> set[str]:
    """Python API callers: the settings that differ from the defaults count as asked for
    (the command line passes the flags actually given)."""
    t, m = TrainConfig(), ModelConfig()
    return ({f.name for f in dataclasses.fields(tc) if getattr(tc, f.name) != getattr(t, f.name)}
            | {f.name for f in dataclasses.fields(mc)
               if f.name != "num_classes" and getattr(mc, f.name) != getattr(m, f.name)})


def resume_from(tc: TrainConfig, mc: ModelConfig, given: set[str]
                ) -> tuple[TrainConfig, ModelConfig, ckpt.Checkpoint]:
    """The run to continue, with its own settings (data, length, batch, checkpoint interval,
    loader processes, ...) except those asked for in `given`; its model is its own."""
    resumed = ckpt.Checkpoint.load(tc.resume)
    if resumed.training is None:
        raise UsageError(f"{tc.resume} holds a model without its training state (a converted "
                         "or published model); --resume continues runs written by `train`.")
    model_fields = {f.name for f in dataclasses.fields(ModelConfig)} - {"num_classes"}
    differ = sorted("--model" if n == "name" else "--" + n.replace("_", "-") for n in given
                    if n in model_fields and getattr(mc, n) != getattr(resumed.config, n))
    if differ:
        raise UsageError(f"--resume {tc.resume} continues that run with its own model, but "
                         f"{', '.join(differ)} differ from it. Leave the model flags out to "
                         "resume, or start a new run without --resume.")
    known = {f.name for f in dataclasses.fields(TrainConfig)}
    saved = TrainConfig(**{k: v for k, v in resumed.training.train_config.items() if k in known})
    changes = {n: getattr(tc, n) for n in (given & known) | set(MACHINERY)}
    if "epochs" in given and "steps" not in given:  # the length asked for in epochs
        changes["steps"] = None
    return dataclasses.replace(saved, **changes), resumed.config, resumed


def prepare_run(tc: TrainConfig, mc: ModelConfig, given: set[str] | None = None) -> Run:
    """Configuration, data, model, optimizer and run folder; the state of a resumed run.
    `given`: the settings asked for (see `resume_from`); None: those not at their default."""
    given = asked_for(tc, mc) if given is None else set(given)
    finetune.check_flags(tc, given)
    if tc.init_from and not tc.resume:
        tc = finetune.with_defaults(tc, given)
    check_config(tc)
    device = pick_device(tc.device, int(os.environ.get("LOCAL_RANK", "0")))
    ddp = setup_distributed(device)
    if tc.batch_size % ddp.world_size:
        raise UsageError(f"--batch-size {tc.batch_size} is the global batch and must be divisible "
                         f"by the {ddp.world_size} processes")
    resumed = start = None
    if tc.resume:
        tc, mc, resumed = resume_from(tc, mc, given)
    elif tc.init_from:
        start = finetune.load_start(tc.init_from, mc, given)
        mc = start.config
    if tc.workers is None:
        tc = dataclasses.replace(tc, workers=default_workers(ddp.world_size))
    shards, val = open_data(tc, mc, resumed)
    if start is not None:
        finetune.check_data(start, shards)
    per_epoch = EpochBatchSampler.batches_per_epoch(len(shards), tc.batch_size)
    if per_epoch == 0:
        raise UsageError(f"{tc.data} holds {len(shards)} videos, fewer than one batch of "
                         f"{tc.batch_size}; lower --batch-size.")

    torch.manual_seed(tc.seed)  # same initial weights on every rank
    model = build_model(mc).to(device)
    origin = resumed.origin if resumed is not None else {}
    if start is not None:
        origin = finetune.initialise(model, start, shards.vocabulary, tc.freeze, say=ddp.main)
    elif mc.reverse_whitening and resumed is None:  # a resumed run has them in its weights
        apply_reverse_whitening(model, shards, tc.pca_dir)
    optimizer = torch.optim.Adam(finetune.trainable(model, tc.freeze), lr=tc.lr)
    decay = lambda step: (tc.lr_decay ** ((step * tc.batch_size) // tc.decay_examples)
                          * min(1.0, (step + 1) / max(1, tc.warmup_steps)))
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, decay)
    step = 0
    if resumed is not None:
        model.load_state_dict(resumed.weights)
        optimizer.load_state_dict(resumed.training.optimizer)
        scheduler.load_state_dict(resumed.training.scheduler)
        step = resumed.training.step
    train_model = torch.compile(model) if tc.compile else model
    if ddp.world_size > 1:
        from torch.nn.parallel import DistributedDataParallel
        train_model = DistributedDataParallel(
            train_model, device_ids=[device.index] if device.type == "cuda" else None)
    autocast, precision = autocast_for(device, tc.precision)
    scaler = torch.amp.GradScaler(device.type, enabled=precision == "fp16")
    run_dir = run_folder(tc, mc, shards, origin) if ddp.main else ""
    total = tc.steps if tc.steps else tc.epochs * per_epoch
    return Run(tc, mc, device, ddp, shards, val, model, train_model, optimizer, scheduler, scaler,
               autocast, run_dir, step, per_epoch, total, step if resumed is not None else None,
               origin=origin)


def run_folder(tc: TrainConfig, mc: ModelConfig, shards, origin: dict[str, str]) -> str:
    """The run's folder (new, or the resumed one) with its summary written; temporary files
    left there and in the other runs under --out by killed processes are removed first."""
    # realpath: resuming runs/latest must write into (and re-point latest at) the real folder
    run_dir = os.path.dirname(os.path.realpath(ckpt.checkpoint_path(tc.resume))) if tc.resume \
        else ckpt.new_run_dir(tc.out, mc.name)
    ckpt.remove_stale_files(tc.out, run_dir)
    ckpt.write_summary(run_dir, mc, shards.meta.representation, shards.vocabulary,
                       shards.meta.kind, {"train": dataclasses.asdict(tc),
                                          **({"origin": origin} if origin else {})})
    stale = os.path.join(run_dir, "report-train.json")
    if os.path.exists(stale):  # a resumed run reports its own damage, if any
        os.remove(stale)
    return run_dir


def train_step(run: Run, batch: Batch) -> torch.Tensor:
    """Forward, backward, clip, step; the loss, detached, still on the device."""
    torch.manual_seed(step_seed(run.tc.seed, run.ddp.rank, run.step))
    b = to_device(batch, run.device)
    with run.autocast:
        _, loss = run.train_model(b.rgb, b.audio, b.mask, b.labels)
    run.optimizer.zero_grad(set_to_none=True)
    run.scaler.scale(loss).backward()  # a pass-through unless training in fp16
    run.scaler.unscale_(run.optimizer)
    torch.nn.utils.clip_grad_norm_(run.model.parameters(), run.tc.clip_norm)
    run.scaler.step(run.optimizer)
    run.scaler.update()
    run.scheduler.step()
    run.step += 1
    return loss.detach().float()


def window_loss(run: Run, window: Window) -> float:
    """The window's mean loss over all ranks (the one host synchronisation); UsageError
    when it is not finite, before anything is written from the damaged weights."""
    loss = window.loss_sum / max(window.steps, 1)
    if run.ddp.world_size > 1:
        import torch.distributed as dist
        dist.all_reduce(loss)
        loss /= run.ddp.world_size
    value = loss.item()
    if not math.isfinite(value):
        kept = (f"the last good checkpoint (step {run.last_saved}) is {run.run_dir}/{ckpt.CHECKPOINT}"
                if run.last_saved is not None else "no checkpoint was written before it")
        raise UsageError(f"training stopped: the loss became {value} by step {run.step}; {kept}. "
                         f"Lower --lr (now {run.tc.lr:g}) and train again, or --resume from the "
                         "checkpoint.")
    return value


def log_window(run: Run, window: Window, log: "MetricsLog | None", bar) -> None:
    value = window_loss(run, window)
    if not run.ddp.main:
        return
    elapsed = time.perf_counter() - window.start
    lr = run.scheduler.get_last_lr()[0]
    log.row(step=run.step, split="train", examples=run.step * run.tc.batch_size, loss=value, lr=lr,
            videos_per_s=window.videos / elapsed, data_wait=window.wait / elapsed)
    bar.set_postfix(loss=f"{value:.3f}")
    if bar.disable and not run.tc.quiet:  # no bar (not a terminal): plain log lines
        print(f"step {run.step}/{run.total_steps} loss {value:.4f} lr {lr:.3g} "
              f"{window.videos / elapsed:.1f} videos/s", file=sys.stderr)


def save_checkpoint(run: Run) -> None:
    """The model and the training state, atomically; runs/latest points here from the first."""
    ckpt.Checkpoint(
        run.model.state_dict(), run.mc, run.shards.meta.representation, run.shards.vocabulary,
        run.shards.meta.kind, run.tc.max_frames,
        ckpt.TrainingState(run.optimizer.state_dict(), run.scheduler.state_dict(), run.step,
                           dataclasses.asdict(run.tc)), run.origin
    ).save(os.path.join(run.run_dir, ckpt.CHECKPOINT))
    if not run.pointed_latest:
        ckpt.point_latest(os.path.dirname(os.path.abspath(run.run_dir)), run.run_dir)
        run.pointed_latest = True
    run.last_saved = run.step


def train(tc: TrainConfig, mc: ModelConfig, given: set[str] | None = None) -> str:
    """Train; returns the run folder. Raises UsageError for what the user can fix. Data with
    no usable video (at start, or a whole epoch of it) ends the run with report-train.json.
    `given`: the settings asked for, which --resume keeps over the run's own."""
    from yt8m.cli_util import progress

    try:
        run = prepare_run(tc, mc, given)
    except NoUsableData as e:  # not one record readable: not even the data's kind is known
        main = int(os.environ.get("RANK", "0")) == 0
        run_dir = "" if not main else os.path.realpath(tc.resume) if tc.resume \
            else ckpt.new_run_dir(tc.out, mc.name)
        stopped(e, run_dir, main, None)
        return run_dir
    log = MetricsLog(run.run_dir) if run.ddp.main else None
    bar = progress(total=run.total_steps, desc=f"train {run.mc.name}",
                   quiet=run.tc.quiet or not run.ddp.main, unit="step")
    bar.update(run.step)
    try:
        check_usable(run.shards, "--data")
        if run.val is not None:
            check_usable(run.val, "--val")
        train_loop(run, log, bar)
    except NoUsableData as e:
        run.damaged.update(e.damaged)
        stopped(e, run.run_dir, run.ddp.main, run)
    finally:
        bar.close()
        if log is not None:
            log.close()
    report_damage(run.run_dir, run.damaged, run.ddp.main)
    return run.run_dir


def stopped(e: NoUsableData, run_dir: str, main: bool, run: Run | None) -> None:
    """Say why training ended early and what is kept (the report follows)."""
    if not main:
        return
    kept = f"its last checkpoint (step {run.last_saved}) is kept" \
        if run is not None and run.last_saved is not None else "no model was written"
    print(f"train: {e}. Training stopped at step {run.step if run else 0}; {kept}. Extract or import "
          "the data again (`python pipeline.py verify --data DIR` checks shards).",
          file=sys.stderr)
    if run is None:
        report_damage(run_dir, set(e.damaged), main)


def train_loop(run: Run, log: "MetricsLog | None", bar) -> None:
    """Steps until the run's total: a log line per window, checkpoints and validation."""
    tc = run.tc
    if run.step >= run.total_steps:  # a finished run resumed: nothing to do
        return
    feed = open_feed(run.shards, tc, run.ddp, run.device, run.step, run.per_epoch, run.damaged)
    run.model.train()
    window = Window()
    while run.step < run.total_steps:
        t0 = time.perf_counter()
        batch = next(feed)  # only batches with videos in them
        window.wait += time.perf_counter() - t0
        window.add(train_step(run, batch), len(batch) * run.ddp.world_size)
        bar.update(1)
        if run.step % run.per_epoch == 0 and run.ddp.main and not tc.quiet:
            print(f"epoch {run.step // run.per_epoch} done: {run.step * tc.batch_size} videos "
                  f"seen ({len(run.shards)} per epoch)", file=sys.stderr)
        last = run.step == run.total_steps
        if run.step % tc.checkpoint_every == 0 or last:
            window_loss(run, window)  # never save weights after a non-finite loss
        if run.step % tc.log_every == 0 or last:
            log_window(run, window, log, bar)
            window = Window()
        if run.ddp.main and (run.step % tc.checkpoint_every == 0 or last):
            save_checkpoint(run)
            if run.val is not None:
                _validate(run, log)
                run.model.train()


def report_damage(run_dir: str, damaged: set[Problem], main: bool) -> None:
    """A run that met damaged inputs says so: report-train.json in the run folder."""
    from yt8m.report import Report

    if not damaged or not main:
        return
    report = Report("train")
    for problem in sorted(damaged):
        report.add(problem, "damaged, skipped")
    report.write(run_dir)
    print(f"train: the data had {len(damaged)} damaged input(s), left out of training "
          f"(listed in {run_dir}/report-train.json).", file=sys.stderr)


def _validate(run: Run, log: "MetricsLog") -> dict[str, float]:
    """The metrics on --val at this step; its damaged videos join the run's report."""
    from .evaluate import predict_shards
    from .metrics import all_metrics
    damaged: list[Problem] = []
    try:
        predictions, labels = predict_shards(run.model, run.val, run.device, run.tc.batch_size,
                                             run.tc.max_frames, workers=0, autocast=run.autocast,
                                             quiet=True, damaged=damaged)
    finally:
        run.damaged.update(damaged)
    result = all_metrics(predictions, labels)
    log.row(step=run.step, split="val", examples=run.step * run.tc.batch_size, **result)
    print(f"step {run.step}: validation " + " ".join(f"{k}={v:.4f}" for k, v in result.items()),
          file=sys.stderr)
    return result
