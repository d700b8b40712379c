"""Which model to build: `ModelConfig` (saved with every run) and `build_model`."""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from typing import TYPE_CHECKING

from yt8m.assets import DEFAULT_PCA_DIR
from yt8m.cli_util import DEFAULT_FEATURES
from yt8m.cli_util import flag_field as _f
from yt8m.representation import DEFAULT_MAX_FRAMES

if TYPE_CHECKING:  # keep `pipeline.py --help` free of torch
    from torch import nn

FRAME_MODELS = ("nextvlad", "mix-nextvlad", "netvlad", "dbof", "mean-logistic")
VIDEO_MODELS = ("logistic", "moe")
KAGGLE_TOP_K = 20  # the Kaggle submission format: 20 "label confidence" pairs per video
LABELS_PER_CLIP = 20  # classify and serve: labels shown per clip unless asked otherwise
MODELS = FRAME_MODELS + VIDEO_MODELS

# Per-architecture defaults where the published designs differ (None in ModelConfig).
_DEFAULT_CLUSTERS = {"nextvlad": 128, "mix-nextvlad": 128, "netvlad": 64, "dbof": 8192}
_DEFAULT_HIDDEN = {"nextvlad": 2048, "mix-nextvlad": 2048, "netvlad": 1024, "dbof": 1024}
_DEFAULT_CLASSIFIER = {"netvlad": "moe", "dbof": "moe", "moe": "moe"}


@dataclass
class ModelConfig:
    """The architecture; saved with every model, and the source of `train`'s model flags."""

    name: str = _f("nextvlad", "frame-level: " + ", ".join(FRAME_MODELS) + "; video-level: "
                   + ", ".join(VIDEO_MODELS), choices=MODELS, metavar="NAME")
    num_classes: int = 3862  # set from the training data's vocabulary
    clusters: int | None = _f(None, "K, clusters (DBoF: the width of its cluster layer)",
                              default_help="128 nextvlad, 64 netvlad, 8192 dbof")
    groups: int = _f(8, "G, NeXtVLAD groups")
    # NeXtVLAD's audio stream: the authors' code halves K and G for audio; PaddlePaddle's
    # published YouTube-8M model keeps them.
    audio_clusters: int | None = _f(None, "NeXtVLAD's audio K", default_help="clusters / 2")
    audio_groups: int | None = _f(None, "NeXtVLAD's audio G", default_help="groups / 2")
    expansion: int = _f(2, "lambda, NeXtVLAD expansion")
    hidden_size: int | None = _f(None, "H", default_help="2048 nextvlad, 1024 netvlad and dbof")
    gating_reduction: int = _f(8, "r, SE gating reduction")
    dropout: float = _f(0.5, "dropout after the VLAD")
    classifier: str | None = _f(None, "final classifier", choices=["logistic", "moe"],
                                default_help="logistic; moe for netvlad, dbof")
    mixtures: int = _f(2, "experts per class in a MoE classifier")
    branches: int = _f(3, "mix-nextvlad: branches")
    temperature: float = _f(3.0, "mix-nextvlad: distillation temperature")
    distill_weight: float = _f(1.0, "mix-nextvlad: weight of the distillation loss")
    reverse_whitening: bool = _f(False, "NeXtVLAD and mix-nextvlad: rescale rgb by "
                                        "sqrt(PCA eigenvalue + 1e-4), the paper's reverse "
                                        "whitening (eigenvalues from --pca-dir, checked against "
                                        "the shards' PCA)")

    def __post_init__(self) -> None:
        if self.name not in MODELS:
            raise ValueError(f"unknown model {self.name!r}; choose from {', '.join(MODELS)}")
        if self.clusters is None:
            self.clusters = _DEFAULT_CLUSTERS.get(self.name)
        if self.hidden_size is None:
            self.hidden_size = _DEFAULT_HIDDEN.get(self.name)
        if self.classifier is None:
            self.classifier = _DEFAULT_CLASSIFIER.get(self.name, "logistic")
        if self.name in ("nextvlad", "mix-nextvlad"):
            if self.audio_clusters is None:
                self.audio_clusters = max(1, self.clusters // 2)
            if self.audio_groups is None:
                self.audio_groups = max(1, self.groups // 2)

    @property
    def video_level(self) -> bool:
        return self.name in VIDEO_MODELS

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=1, sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict) -> "ModelConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


@dataclass
class TrainConfig:
    """How to train; saved with every run, and the source of `train`'s other flags."""

    data: str = _f(DEFAULT_FEATURES, "training shards", metavar="DIR")
    val: str | None = _f(None, "validation shards, evaluated at every checkpoint", metavar="DIR")
    out: str = _f("runs", "where run folders go", metavar="DIR")
    epochs: int = _f(5, "passes over the data")
    steps: int | None = _f(None, "total optimizer steps (overrides --epochs)")
    batch_size: int = _f(160, "global batch, split over torchrun processes")
    lr: float = _f(2e-4, "Adam learning rate, times --lr-decay every --decay-examples videos")
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
    pca_dir: str = _f(DEFAULT_PCA_DIR, "eigenvals.npy for --reverse-whitening", metavar="DIR")
    quiet: bool = False


def default_workers(world_size: int = 1) -> int:
    """Loader processes per training process: its share of the cores, one left for it."""
    import os
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return max(0, min(8, cores // max(1, world_size) - 1))


def build_model(config: ModelConfig) -> "nn.Module":
    c = config
    if c.name == "nextvlad":
        from .nextvlad import NeXtVLADModel
        return NeXtVLADModel(c.num_classes, c.clusters, c.groups, c.expansion, c.hidden_size,
                             c.gating_reduction, c.dropout, c.classifier, c.mixtures,
                             audio_clusters=c.audio_clusters, audio_groups=c.audio_groups)
    if c.name == "mix-nextvlad":
        from .mix_nextvlad import MixNeXtVLADModel
        return MixNeXtVLADModel(c.num_classes, c.branches, c.temperature, c.distill_weight,
                                clusters=c.clusters, groups=c.groups, expansion=c.expansion,
                                hidden_size=c.hidden_size, gating_reduction=c.gating_reduction,
                                dropout=c.dropout, audio_clusters=c.audio_clusters,
                                audio_groups=c.audio_groups)
    if c.name == "netvlad":
        from .netvlad import NetVLADModel
        return NetVLADModel(c.num_classes, c.clusters, c.hidden_size, c.dropout, c.classifier, c.mixtures)
    if c.name == "dbof":
        from .dbof import DbofModel
        return DbofModel(c.num_classes, c.clusters, c.hidden_size, c.classifier, c.mixtures)
    if c.name == "mean-logistic":
        from .frame_mean import FrameMeanModel
        return FrameMeanModel(c.num_classes, c.classifier, c.mixtures)
    from .video_level import VideoLevelModel
    return VideoLevelModel(c.num_classes, c.classifier, c.mixtures)
