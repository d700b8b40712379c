"""NeXtVLAD (Lin, Xiao, Fan 2018, arXiv 1811.05014), as in the authors' TensorFlow code.

Per stream: expand the N-d frame features by lambda, split them into G groups of
lambda*N/G dims, softly assign every group vector to K clusters (FC without
bias, batch norm, softmax), weight each group by a sigmoid attention that is
zero on padding, and sum residuals against learned cluster centres over frames
and groups. Intra-normalise (L2 per cluster), flatten, batch norm. The video
stream uses (K, G), the audio stream (K/2, G/2) by default as in the authors'
code (PaddlePaddle's YouTube-8M model uses (K, G) for both: `audio_clusters`,
`audio_groups`); their concatenation goes
through dropout, an FC to H without bias, batch norm, SE context gating and a
classifier.

The paper's parameter count (without biases and batch norm) is
lambda*N*(N + G + K*(G + (H + 1)/G)) per stream; defaults K=128, G=8, H=2048,
r=8, lambda=2 give about 89M parameters with the 3862-class logistic layer.

Deviations from the TensorFlow code, both so that padding never changes an
output: batch-norm statistics over frames use real frames only, and nothing
depends on a fixed max_frames.
"""
from __future__ import annotations

import torch
from torch import nn

from .layers import MaskedBatchNorm1d, SEContextGating, make_classifier

L2_EPSILON = 1e-12


class NeXtVLAD(nn.Module):
    """[B, T, dim] frames + [B, T] mask -> [B, K * lambda*dim/G] descriptor."""

    def __init__(self, dim: int, clusters: int, groups: int, expansion: int = 2):
        super().__init__()
        if (expansion * dim) % groups:
            raise ValueError(f"expansion*dim = {expansion * dim} is not divisible by groups = {groups}")
        self.clusters, self.groups = clusters, groups
        self.group_dim = expansion * dim // groups
        self.expand = nn.Linear(dim, expansion * dim)
        self.attention = nn.Linear(expansion * dim, groups)
        self.assign = nn.Linear(expansion * dim, groups * clusters, bias=False)
        self.assign_bn = MaskedBatchNorm1d(groups * clusters)
        self.centers = nn.Parameter(torch.empty(clusters, self.group_dim))
        self.vlad_bn = MaskedBatchNorm1d(clusters * self.group_dim)
        nn.init.kaiming_uniform_(self.centers, a=5 ** 0.5)

    @property
    def out_dim(self) -> int:
        return self.clusters * self.group_dim

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        b, t, _ = x.shape
        x = self.expand(x)
        attention = torch.sigmoid(self.attention(x)) * mask.unsqueeze(-1).to(x.dtype)  # [B, T, G]
        assign = self.assign_bn(self.assign(x), mask)  # [B, T, G*K]
        assign = assign.reshape(b, t * self.groups, self.clusters).softmax(-1)
        assign = assign * attention.reshape(b, t * self.groups, 1)
        groups = x.reshape(b, t * self.groups, self.group_dim)
        vlad = assign.transpose(1, 2) @ groups  # [B, K, D]: sum of a * x
        vlad = vlad - assign.sum(1).unsqueeze(-1) * self.centers  # minus sum of a * c
        # Intra-normalisation as x / sqrt(sum x^2 + eps) (PaddlePaddle's form; smooth at 0).
        # The same as x / ||x|| wherever a cluster holds any mass; near-empty clusters, which
        # a short video leaves among K = 128, are where the forms differ.
        vlad = vlad * torch.rsqrt(vlad.pow(2).sum(-1, keepdim=True) + L2_EPSILON)
        return self.vlad_bn(vlad.reshape(b, -1))


class NeXtVLADModel(nn.Module):
    """Video and audio NeXtVLAD, dropout, FC + BN, SE gating, classifier."""

    def __init__(self, num_classes: int, clusters: int = 128, groups: int = 8, expansion: int = 2,
                 hidden_size: int = 2048, gating_reduction: int = 8, dropout: float = 0.5,
                 classifier: str = "logistic", mixtures: int = 2,
                 rgb_dim: int = 1024, audio_dim: int = 128,
                 audio_clusters: int | None = None, audio_groups: int | None = None):
        super().__init__()
        self.video = NeXtVLAD(rgb_dim, clusters, groups, expansion)
        self.audio = NeXtVLAD(audio_dim, audio_clusters or max(1, clusters // 2),
                              audio_groups or max(1, groups // 2), expansion)
        self.dropout = nn.Dropout(dropout)
        self.hidden = nn.Linear(self.video.out_dim + self.audio.out_dim, hidden_size, bias=False)
        self.hidden_bn = MaskedBatchNorm1d(hidden_size)
        self.gating = SEContextGating(hidden_size, gating_reduction)
        self.classifier = make_classifier(classifier, hidden_size, num_classes, mixtures)
        # The paper's "reverse whitening": PCA-whitened rgb times sqrt(eigenvalue).
        # Ones unless set from the shards' PCA parameters (see train.py).
        self.register_buffer("rgb_scale", torch.ones(rgb_dim))

    def features(self, rgb: torch.Tensor, audio: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        vlad = torch.cat([self.video(rgb * self.rgb_scale, mask), self.audio(audio, mask)], 1)
        return self.gating(self.hidden_bn(self.hidden(self.dropout(vlad))))

    def forward(self, rgb: torch.Tensor, audio: torch.Tensor, mask: torch.Tensor,
                labels: torch.Tensor | None = None):
        return self.classifier(self.features(rgb, audio, mask), labels)
