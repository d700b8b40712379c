"""Which model to build: `ModelConfig` (saved with every run) and `build_model`."""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # keep `pipeline.py --help` free of torch
    from torch import nn

FRAME_MODELS = ("nextvlad", "mix-nextvlad", "netvlad", "dbof", "mean-logistic")
VIDEO_MODELS = ("logistic", "moe")
KAGGLE_TOP_K = 20  # the Kaggle submission format: 20 "label confidence" pairs per video
MODELS = FRAME_MODELS + VIDEO_MODELS

# Per-architecture defaults where the published designs differ (None in ModelConfig).
_DEFAULT_CLUSTERS = {"nextvlad": 128, "mix-nextvlad": 128, "netvlad": 64, "dbof": 8192}
_DEFAULT_HIDDEN = {"nextvlad": 2048, "mix-nextvlad": 2048, "netvlad": 1024, "dbof": 1024}
_DEFAULT_CLASSIFIER = {"netvlad": "moe", "dbof": "moe", "moe": "moe"}


@dataclass
class ModelConfig:
    name: str = "nextvlad"
    num_classes: int = 3862
    clusters: int | None = None  # K (DBoF: width of its cluster layer)
    groups: int = 8  # G
    # NeXtVLAD's audio stream: the authors' code halves K and G for audio; PaddlePaddle's
    # published YouTube-8M model keeps them. None: clusters // 2 and groups // 2.
    audio_clusters: int | None = None
    audio_groups: int | None = None
    expansion: int = 2  # lambda
    hidden_size: int | None = None  # H
    gating_reduction: int = 8  # r
    dropout: float = 0.5
    classifier: str | None = None  # logistic | moe
    mixtures: int = 2  # experts per class in a MoE classifier
    branches: int = 3  # mix-nextvlad
    temperature: float = 3.0  # mix-nextvlad distillation
    distill_weight: float = 1.0
    reverse_whitening: bool = False  # rescale rgb by sqrt(PCA eigenvalues); nextvlad only

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
