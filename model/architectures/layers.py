"""Pieces shared by the architectures: masked batch norm, gating, classifiers, losses.

Frame-level models take dequantized frames `rgb` [B, T, 1024], `audio` [B, T, 128]
and `mask` [B, T] (1 for real frames, 0 for padding) and return
`(probabilities [B, C], loss or None)` as nanoGPT's models return (logits, loss):
the loss lives in the model so DistributedDataParallel sees one forward call,
and so mix-nextvlad can add its distillation term.
"""
from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

# The starter code's cross entropy adds this inside the logs.
PROB_EPSILON = 1e-5


class MaskedBatchNorm1d(nn.BatchNorm1d):
    """BatchNorm1d whose training statistics come from real frames only.

    Takes [N, C] or [B, T, C] (+ mask [B, T]); padded rows get zeros. In eval mode
    it is plain per-element BatchNorm, so padding can never change an output; in
    training mode padding does not change the statistics either. Under
    torch.distributed the statistics are reduced over all ranks (synchronised
    batch norm), so N processes with batch b train like one with batch N*b.
    State-dict keys are BatchNorm1d's.
    """

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        shape = x.shape
        flat = x.reshape(-1, shape[-1])
        if not self.training:
            return F.batch_norm(flat, self.running_mean, self.running_var, self.weight,
                                self.bias, False, 0.0, self.eps).reshape(shape)
        flat = flat.float()
        w = torch.ones(flat.shape[0], 1, device=x.device) if mask is None \
            else mask.reshape(-1, 1).to(torch.float32)
        stats = torch.cat([(flat * w).sum(0), (flat * flat * w).sum(0), w.sum(0)])
        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            from torch.distributed.nn.functional import all_reduce
            stats = all_reduce(stats)
        c = shape[-1]
        n = stats[2 * c].clamp_min(1.0)
        mean = stats[:c] / n
        var = (stats[c:2 * c] / n - mean * mean).clamp_min(0.0)
        with torch.no_grad():
            unbiased = var * (n / (n - 1).clamp_min(1.0))
            self.running_mean.lerp_(mean.detach(), self.momentum)
            self.running_var.lerp_(unbiased.detach(), self.momentum)
            self.num_batches_tracked += 1
        out = (flat - mean) * torch.rsqrt(var + self.eps) * self.weight + self.bias
        return (out * w).to(x.dtype).reshape(shape)


def masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean over real frames: x [B, T, D], mask [B, T] -> [B, D]."""
    m = mask.to(x.dtype).unsqueeze(-1)
    return (x * m).sum(1) / m.sum(1).clamp_min(1.0)


class SEContextGating(nn.Module):
    """NeXtVLAD's squeeze-and-excitation gating: x * sigmoid(W2 relu(BN(W1 x)))."""

    def __init__(self, dim: int, reduction: int):
        super().__init__()
        self.squeeze = nn.Linear(dim, dim // reduction, bias=False)
        self.bn = MaskedBatchNorm1d(dim // reduction)
        self.excite = nn.Linear(dim // reduction, dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(self.excite(F.relu(self.bn(self.squeeze(x)))))


class ContextGating(nn.Module):
    """The 2017 winners' context gating: x * sigmoid(BN(W x))."""

    def __init__(self, dim: int):
        super().__init__()
        self.fc = nn.Linear(dim, dim, bias=False)
        self.bn = MaskedBatchNorm1d(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(self.bn(self.fc(x)))


class LogisticClassifier(nn.Module):
    """One sigmoid per class (the starter code's LogisticModel)."""

    def __init__(self, dim: int, num_classes: int):
        super().__init__()
        self.fc = nn.Linear(dim, num_classes)

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x).float()  # probabilities and losses in float32 under autocast

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None = None):
        logits = self.logits(x)
        loss = None if labels is None else logistic_loss(logits, labels)
        return torch.sigmoid(logits), loss


class MoeClassifier(nn.Module):
    """Mixture of logistic experts per class (the starter code's MoeModel).

    A softmax over `mixtures + 1` gates per class, the extra gate belonging to a
    silent expert that always says 0.
    """

    def __init__(self, dim: int, num_classes: int, mixtures: int = 2):
        super().__init__()
        self.num_classes, self.mixtures = num_classes, mixtures
        self.gates = nn.Linear(dim, num_classes * (mixtures + 1), bias=False)
        self.experts = nn.Linear(dim, num_classes * mixtures)

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None = None):
        gates = self.gates(x).float().view(-1, self.num_classes, self.mixtures + 1).softmax(-1)
        experts = torch.sigmoid(self.experts(x).float().view(-1, self.num_classes, self.mixtures))
        probs = (gates[..., :self.mixtures] * experts).sum(-1)
        loss = None if labels is None else probability_loss(probs, labels)
        return probs, loss


def make_classifier(kind: str, dim: int, num_classes: int, mixtures: int) -> nn.Module:
    if kind == "logistic":
        return LogisticClassifier(dim, num_classes)
    if kind == "moe":
        return MoeClassifier(dim, num_classes, mixtures)
    raise ValueError(f"unknown classifier {kind!r} (logistic or moe)")


def logistic_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Binary cross entropy summed over classes, averaged over videos (starter code's scale)."""
    return F.binary_cross_entropy_with_logits(logits, labels, reduction="none").sum(1).mean()


def probability_loss(probs: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """The same cross entropy on probabilities (for MoE), with the starter code's epsilon."""
    ce = labels * torch.log(probs + PROB_EPSILON) + (1 - labels) * torch.log(1 - probs + PROB_EPSILON)
    return -ce.sum(1).mean()
