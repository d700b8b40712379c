"""Which model to build: `ModelConfig` (saved with every model) and the one table from a
model's name to its builder and the defaults where the published designs differ."""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

from yt8m.cli_util import flag_field as _f

if TYPE_CHECKING:  # keep `pipeline.py --help` free of torch
    from torch import nn


# Builders import their module when called, so that reading a config loads no torch.
def _nextvlad(c: "ModelConfig") -> "nn.Module":
    from .nextvlad import NeXtVLADModel
    return NeXtVLADModel(c.num_classes, c.clusters, c.groups, c.expansion, c.hidden_size,
                         c.gating_reduction, c.dropout, c.classifier, c.mixtures,
                         audio_clusters=c.audio_clusters, audio_groups=c.audio_groups)


def _mix_nextvlad(c: "ModelConfig") -> "nn.Module":
    from .mix_nextvlad import MixNeXtVLADModel
    return MixNeXtVLADModel(c.num_classes, c.branches, c.temperature, c.distill_weight,
                            clusters=c.clusters, groups=c.groups, expansion=c.expansion,
                            hidden_size=c.hidden_size, gating_reduction=c.gating_reduction,
                            dropout=c.dropout, audio_clusters=c.audio_clusters,
                            audio_groups=c.audio_groups)


def _netvlad(c: "ModelConfig") -> "nn.Module":
    from .netvlad import NetVLADModel
    return NetVLADModel(c.num_classes, c.clusters, c.hidden_size, c.dropout, c.classifier, c.mixtures)


def _dbof(c: "ModelConfig") -> "nn.Module":
    from .dbof import DbofModel
    return DbofModel(c.num_classes, c.clusters, c.hidden_size, c.classifier, c.mixtures)


def _frame_mean(c: "ModelConfig") -> "nn.Module":
    from .frame_mean import FrameMeanModel
    return FrameMeanModel(c.num_classes, c.classifier, c.mixtures)


def _video_level(c: "ModelConfig") -> "nn.Module":
    from .video_level import VideoLevelModel
    return VideoLevelModel(c.num_classes, c.classifier, c.mixtures)


@dataclass(frozen=True)
class Architecture:
    """A model's builder, and its defaults where the published designs differ."""

    build: Callable[["ModelConfig"], "nn.Module"]
    video_level: bool = False  # trained on per-video means, not on frames
    clusters: int | None = None
    hidden_size: int | None = None
    classifier: str = "logistic"


ARCHITECTURES: dict[str, Architecture] = {
    "nextvlad": Architecture(_nextvlad, clusters=128, hidden_size=2048),
    "mix-nextvlad": Architecture(_mix_nextvlad, clusters=128, hidden_size=2048),
    "netvlad": Architecture(_netvlad, clusters=64, hidden_size=1024, classifier="moe"),
    "dbof": Architecture(_dbof, clusters=8192, hidden_size=1024, classifier="moe"),
    "mean-logistic": Architecture(_frame_mean),
    "logistic": Architecture(_video_level, video_level=True),
    "moe": Architecture(_video_level, video_level=True, classifier="moe"),
}
FRAME_MODELS = tuple(n for n, a in ARCHITECTURES.items() if not a.video_level)
VIDEO_MODELS = tuple(n for n, a in ARCHITECTURES.items() if a.video_level)
MODELS = FRAME_MODELS + VIDEO_MODELS


def _defaults(attribute: str) -> str:
    """`--help`'s default of a setting that differs per architecture, from the table."""
    return ", ".join(f"{getattr(a, attribute)} {n}" for n, a in ARCHITECTURES.items()
                     if getattr(a, attribute) is not None)


@dataclass
class ModelConfig:
    """The architecture; saved with every model, and the source of `train`'s model flags."""

    name: str = _f("nextvlad", "frame-level: " + ", ".join(FRAME_MODELS) + "; video-level: "
                   + ", ".join(VIDEO_MODELS), choices=MODELS, metavar="NAME")
    num_classes: int = 3862  # set from the training data's vocabulary
    clusters: int | None = _f(None, "K, clusters (DBoF: the width of its cluster layer)",
                              default_help=_defaults("clusters"))
    groups: int = _f(8, "G, NeXtVLAD groups")
    # NeXtVLAD's audio stream: the authors' code halves K and G for audio; PaddlePaddle's
    # published YouTube-8M model keeps them.
    audio_clusters: int | None = _f(None, "NeXtVLAD's audio K", default_help="clusters / 2")
    audio_groups: int | None = _f(None, "NeXtVLAD's audio G", default_help="groups / 2")
    expansion: int = _f(2, "lambda, NeXtVLAD expansion")
    hidden_size: int | None = _f(None, "H", default_help=_defaults("hidden_size"))
    gating_reduction: int = _f(8, "r, SE gating reduction")
    dropout: float = _f(0.5, "dropout after the VLAD")
    classifier: str | None = _f(None, "final classifier", choices=["logistic", "moe"],
                                default_help="logistic; moe for " + ", ".join(
                                    n for n, a in ARCHITECTURES.items() if a.classifier == "moe"))
    mixtures: int = _f(2, "experts per class in a MoE classifier")
    branches: int = _f(3, "mix-nextvlad: branches")
    temperature: float = _f(3.0, "mix-nextvlad: distillation temperature")
    distill_weight: float = _f(1.0, "mix-nextvlad: weight of the distillation loss")
    reverse_whitening: bool = _f(False, "NeXtVLAD and mix-nextvlad: rescale rgb by "
                                        "sqrt(PCA eigenvalue + 1e-4), the paper's reverse "
                                        "whitening (eigenvalues from --pca-dir, checked against "
                                        "the shards' PCA)")

    def __post_init__(self) -> None:
        if self.name not in ARCHITECTURES:
            raise ValueError(f"unknown model {self.name!r}; choose from {', '.join(MODELS)}")
        arch = ARCHITECTURES[self.name]
        if self.clusters is None:
            self.clusters = arch.clusters
        if self.hidden_size is None:
            self.hidden_size = arch.hidden_size
        if self.classifier is None:
            self.classifier = arch.classifier
        if self.name in ("nextvlad", "mix-nextvlad"):
            if self.audio_clusters is None:
                self.audio_clusters = max(1, self.clusters // 2)
            if self.audio_groups is None:
                self.audio_groups = max(1, self.groups // 2)

    @property
    def video_level(self) -> bool:
        return ARCHITECTURES[self.name].video_level

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=1, sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict) -> "ModelConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


def build_model(config: ModelConfig) -> "nn.Module":
    return ARCHITECTURES[config.name].build(config)
