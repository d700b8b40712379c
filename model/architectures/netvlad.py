"""NetVLAD with context gating and a mixture of experts: the 2017 YouTube-8M winner's design
(Miech, Laptev, Sivic, "Learnable pooling with Context Gating", arXiv 1706.06905).

Per stream: soft assignment of each frame to K clusters (FC without bias, batch
norm, softmax, zero on padding), residuals against learned centres summed over
frames, intra-normalisation, flatten, L2 normalisation. Video (K) and audio
(K/2) descriptors are concatenated, projected to H without bias, batch-normed,
context-gated and classified by a 2-mixture MoE. The NeXtVLAD paper counts
N*K*(H + 2) parameters per stream (assignment, centres, projection).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .layers import ContextGating, MaskedBatchNorm1d, make_classifier


class NetVLAD(nn.Module):
    """[B, T, dim] frames + [B, T] mask -> [B, K * dim] descriptor."""

    def __init__(self, dim: int, clusters: int):
        super().__init__()
        self.clusters, self.dim = clusters, dim
        self.assign = nn.Linear(dim, clusters, bias=False)
        self.assign_bn = MaskedBatchNorm1d(clusters)
        self.centers = nn.Parameter(torch.empty(clusters, dim))
        nn.init.kaiming_uniform_(self.centers, a=5 ** 0.5)

    @property
    def out_dim(self) -> int:
        return self.clusters * self.dim

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        assign = self.assign_bn(self.assign(x), mask).softmax(-1)
        assign = assign * mask.unsqueeze(-1).to(assign.dtype)  # [B, T, K]
        vlad = assign.transpose(1, 2) @ x - assign.sum(1).unsqueeze(-1) * self.centers
        vlad = F.normalize(vlad, dim=-1)  # intra-normalisation
        return F.normalize(vlad.flatten(1), dim=-1)


class NetVLADModel(nn.Module):
    def __init__(self, num_classes: int, clusters: int = 64, hidden_size: int = 1024,
                 dropout: float = 0.5, classifier: str = "moe", mixtures: int = 2,
                 rgb_dim: int = 1024, audio_dim: int = 128):
        super().__init__()
        self.video = NetVLAD(rgb_dim, clusters)
        self.audio = NetVLAD(audio_dim, clusters // 2)
        self.dropout = nn.Dropout(dropout)
        self.hidden = nn.Linear(self.video.out_dim + self.audio.out_dim, hidden_size, bias=False)
        self.hidden_bn = MaskedBatchNorm1d(hidden_size)
        self.gating = ContextGating(hidden_size)
        self.classifier = make_classifier(classifier, hidden_size, num_classes, mixtures)

    def forward(self, rgb: torch.Tensor, audio: torch.Tensor, mask: torch.Tensor,
                labels: torch.Tensor | None = None):
        vlad = torch.cat([self.video(rgb, mask), self.audio(audio, mask)], 1)
        hidden = self.gating(self.hidden_bn(self.hidden(self.dropout(vlad))))
        return self.classifier(hidden, labels)
