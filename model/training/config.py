"""How to train: `TrainConfig` (saved with every run, the source of `train`'s flags) and
the defaults a fine-tune takes."""
from __future__ import annotations

from dataclasses import dataclass

from yt8m.assets import DEFAULT_PCA_DIR
from yt8m.cli_util import DEFAULT_FEATURES
from yt8m.cli_util import flag_field as _f
from yt8m.representation import DEFAULT_MAX_FRAMES

# `train --init-from`: the settings not given take these values (a few hundred videos:
# about 10 batches per epoch, a few hundred steps in all; the learning rate the published
# model was trained with, so the copied layers are not thrown far from where they were).
FINETUNE_DEFAULTS = {"batch_size": 32, "epochs": 30, "warmup_steps": 30, "lr": 2e-4}
FROZEN_LR = 1e-3  # --freeze body: only the classifier learns, most of it from scratch
FREEZE_CHOICES = ("none", "body")


def _tuned(name: str, default, help: str, also: str = ""):
    """A training setting whose default differs under --init-from (FINETUNE_DEFAULTS)."""
    return _f(default, help,
              default_help=f"{default:g}; {FINETUNE_DEFAULTS[name]:g} with --init-from{also}")


@dataclass
class TrainConfig:
    """How to train; saved with every run, and the source of `train`'s other flags."""

    data: str = _f(DEFAULT_FEATURES, "training shards", metavar="DIR")
    val: str | None = _f(None, "validation shards, evaluated at every checkpoint", metavar="DIR")
    out: str = _f("runs", "where run folders go", metavar="DIR")
    epochs: int = _tuned("epochs", 5, "passes over the data")
    steps: int | None = _f(None, "total optimizer steps (overrides --epochs)")
    batch_size: int = _tuned("batch_size", 160, "global batch, split over torchrun processes")
    lr: float = _tuned("lr", 2e-4, "Adam learning rate, times --lr-decay every --decay-examples videos",
                       also=f", {FROZEN_LR:g} with --freeze body")
    warmup_steps: int = _tuned("warmup_steps", 0, "steps over which the learning rate rises "
                                                  "linearly to --lr (spares copied layers the "
                                                  "first large updates of a new classifier)",
                               also=", 0 with --freeze body")
    lr_decay: float = _f(0.8, "learning-rate decay factor")
    decay_examples: int = _f(2_000_000, "videos between learning-rate decays")
    clip_norm: float = _f(1.0, "gradient clipping norm")
    max_frames: int = _f(DEFAULT_MAX_FRAMES, "frames per video used")
    device: str = "auto"
    precision: str = _f("auto", "auto: bf16 autocast on CUDA, fp32 on CPU",
                        choices=["auto", "fp32", "bf16", "fp16"])
    workers: int | None = _f(None, "data loader processes",
                             default_help="the cores of this process's share of the machine "
                                          "but one, at most 8")
    compile: bool = _f(False, "torch.compile the model (worth trying on GPUs)")
    shuffle_buffer: int = _f(1024, "TFRecords: records held for shuffling, per loader process")
    seed: int = _f(0, "random seed")
    checkpoint_every: int = _f(1000, "steps between checkpoints (also at the end)")
    log_every: int = _f(20, "steps between lines of metrics.csv / TensorBoard")
    resume: str | None = None  # run folder or checkpoint to continue
    init_from: str | None = _f(
        None, "fine-tune: start from this model folder (or `published`, the YouTube-8M model "
              "`download` converts): its feature layers are copied, its classifier rebuilt for "
              "the data's vocabulary, keeping the rows of classes it shares by name or "
              "KnowledgeGraph id. Its architecture is used and the data must be made like its "
              "training data. Defaults then suit a few hundred videos: "
              + ", ".join(f"--{k.replace('_', '-')} {v:g}" for k, v in FINETUNE_DEFAULTS.items())
              + f" ({FROZEN_LR:g} with --freeze body)",
        metavar="MODEL")
    freeze: str = _f("none", "with --init-from: `body` trains only the classifier (feature layers "
                             "kept as they are, batch-norm statistics included); `none` trains all",
                     choices=list(FREEZE_CHOICES))
    pca_dir: str = _f(DEFAULT_PCA_DIR, "eigenvals.npy for --reverse-whitening", metavar="DIR")
    quiet: bool = False


def default_workers(world_size: int = 1) -> int:
    """Loader processes per training process: its share of the cores, one left for it."""
    import os
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return max(0, min(8, cores // max(1, world_size) - 1))
