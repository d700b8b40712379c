"""Mixture of NeXtVLAD branches with on-the-fly knowledge distillation.

The NeXtVLAD paper's best single configuration (its section 4.3; authors'
MixNeXtVladModel): B branches (3) of the full NeXtVLAD model with logistic
classifiers. Their logits are mixed with softmax weights computed from the
input; the mixture is sigmoid(sum_b w_b * z_b). Training minimises each
branch's cross entropy, the mixture's, and a distillation term that pulls
every branch towards the mixture: KL(softmax(z_mix / T) || softmax(z_b / T))
over classes, summed over branches, times `distill_weight`.

Deviation from the TensorFlow code, for padding invariance: the mixture weights
come from the batch-normed mean of the real frames' features, not from a
per-frame mean over a fixed 300-frame window.
"""
from __future__ import annotations

import torch
from torch import nn

from .layers import MaskedBatchNorm1d, logistic_loss, masked_mean
from .nextvlad import NeXtVLADModel


class MixNeXtVLADModel(nn.Module):
    def __init__(self, num_classes: int, branches: int = 3, temperature: float = 3.0,
                 distill_weight: float = 1.0, rgb_dim: int = 1024, audio_dim: int = 128,
                 **nextvlad_args):
        super().__init__()
        self.temperature, self.distill_weight = temperature, distill_weight
        self.branches = nn.ModuleList(
            NeXtVLADModel(num_classes, classifier="logistic", rgb_dim=rgb_dim, audio_dim=audio_dim,
                          **nextvlad_args) for _ in range(branches))
        self.mix_bn = MaskedBatchNorm1d(rgb_dim + audio_dim)
        self.mix = nn.Linear(rgb_dim + audio_dim, branches)

    def forward(self, rgb: torch.Tensor, audio: torch.Tensor, mask: torch.Tensor,
                labels: torch.Tensor | None = None):
        weights = self.mix(self.mix_bn(masked_mean(torch.cat([rgb, audio], -1), mask)))
        weights = weights.float().softmax(-1)  # [B, branches]
        logits = torch.stack([b.classifier.logits(b.features(rgb, audio, mask))
                              for b in self.branches], 1)  # [B, branches, C]
        mixed = (weights.unsqueeze(-1) * logits).sum(1)
        probs = torch.sigmoid(mixed)
        if labels is None:
            return probs, None
        loss = logistic_loss(mixed, labels)
        loss = loss + sum(logistic_loss(logits[:, i], labels) for i in range(logits.shape[1]))
        teacher = (mixed / self.temperature).log_softmax(-1).unsqueeze(1)
        students = (logits / self.temperature).log_softmax(-1)
        kl = (teacher.exp() * (teacher - students)).sum(-1)  # [B, branches]
        return probs, loss + self.distill_weight * kl.sum(1).mean()
