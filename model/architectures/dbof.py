"""Deep bag of frames (the starter code's DbofModel): per-frame projection, max pooling.

Every frame (rgb + audio) -> FC to a wide "cluster" layer, batch norm, ReLU6;
max over real frames; FC to a hidden layer, batch norm, ReLU6; classifier.
The starter code samples a random subset of frames; here all real frames are
used, which makes the output deterministic and padding-free.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .layers import MaskedBatchNorm1d, make_classifier


class DbofModel(nn.Module):
    def __init__(self, num_classes: int, clusters: int = 8192, hidden_size: int = 1024,
                 classifier: str = "moe", mixtures: int = 2, rgb_dim: int = 1024, audio_dim: int = 128):
        super().__init__()
        self.input_bn = MaskedBatchNorm1d(rgb_dim + audio_dim)
        self.cluster = nn.Linear(rgb_dim + audio_dim, clusters, bias=False)
        self.cluster_bn = MaskedBatchNorm1d(clusters)
        self.hidden = nn.Linear(clusters, hidden_size, bias=False)
        self.hidden_bn = MaskedBatchNorm1d(hidden_size)
        self.classifier = make_classifier(classifier, hidden_size, num_classes, mixtures)

    def forward(self, rgb: torch.Tensor, audio: torch.Tensor, mask: torch.Tensor,
                labels: torch.Tensor | None = None):
        x = self.input_bn(torch.cat([rgb, audio], -1), mask)
        x = F.relu6(self.cluster_bn(self.cluster(x), mask))
        # ReLU6 outputs are >= 0, so zeroing padded frames leaves the max alone.
        pooled = (x * mask.unsqueeze(-1).to(x.dtype)).amax(1)
        hidden = F.relu6(self.hidden_bn(self.hidden(pooled)))
        return self.classifier(hidden, labels)
