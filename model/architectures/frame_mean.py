"""Frame-mean logistic regression (the starter code's FrameLevelLogisticModel).

The mean of the real frames' rgb + audio features, then one sigmoid per class:
a baseline that sees no order and no individual frame.
"""
from __future__ import annotations

import torch
from torch import nn

from .layers import make_classifier, masked_mean


class FrameMeanModel(nn.Module):
    def __init__(self, num_classes: int, classifier: str = "logistic", mixtures: int = 2,
                 rgb_dim: int = 1024, audio_dim: int = 128):
        super().__init__()
        self.classifier = make_classifier(classifier, rgb_dim + audio_dim, num_classes, mixtures)

    def forward(self, rgb: torch.Tensor, audio: torch.Tensor, mask: torch.Tensor,
                labels: torch.Tensor | None = None):
        return self.classifier(masked_mean(torch.cat([rgb, audio], -1), mask), labels)
