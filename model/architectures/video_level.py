"""Video-level models (starter code's LogisticModel and MoeModel) for video-level shards.

Input: the per-video mean features `mean_rgb` [B, 1024] and `mean_audio` [B, 128]
(float, as the official video-level records store them).
"""
from __future__ import annotations

import torch
from torch import nn

from .layers import make_classifier


class VideoLevelModel(nn.Module):
    def __init__(self, num_classes: int, classifier: str = "logistic", mixtures: int = 2,
                 rgb_dim: int = 1024, audio_dim: int = 128):
        super().__init__()
        self.classifier = make_classifier(classifier, rgb_dim + audio_dim, num_classes, mixtures)

    def forward(self, mean_rgb: torch.Tensor, mean_audio: torch.Tensor,
                mask: torch.Tensor | None = None, labels: torch.Tensor | None = None):
        """The same call as the frame-level models; there is no mask for mean features."""
        return self.classifier(torch.cat([mean_rgb, mean_audio], -1), labels)
