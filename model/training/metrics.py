"""The YouTube-8M metrics, as the starter code defines them (eval_util.py,
average_precision_calculator.py, mean_average_precision_calculator.py).

`predictions` are [videos, classes] scores, `labels` the same shape in {0, 1}.
Two things the starter code leaves to chance are fixed here so results are
reproducible: a video's top k keeps, among equal scores, the lower class ids;
and average precision scores entries with equal scores by its expectation over
every order of the tied entries, which the starter code's seeded shuffle only
estimates (scikit-learn's rule, a tied group ranked as one threshold, is
systematically pessimistic).
"""
from __future__ import annotations

import numpy as np

TOP_K = 20
SEGMENT_TOP_N = 100_000  # the 2019 challenge's mAP@100,000


def average_precision(scores: np.ndarray, labels: np.ndarray, num_positives: int | None = None) -> float:
    """Non-interpolated AP of a ranked list, recall measured against `num_positives`.

    AP = sum over the positives of the precision at their rank / num_positives.
    Entries with equal scores have no order: each tied group contributes its
    expected value over all orders of its entries (see `_tied_group_precision`).
    With num_positives = the positives in the list and no ties this is scikit-learn's
    average_precision_score; the starter code passes every ground-truth positive,
    so positives that never made the list count as misses. 0 without positives.
    """
    scores = np.asarray(scores, dtype=np.float64).ravel()
    labels = (np.asarray(labels).ravel() > 0).astype(np.float64)
    total = labels.sum() if num_positives is None else float(num_positives)
    if total <= 0 or scores.size == 0:
        return 0.0
    order = np.argsort(-scores, kind="stable")
    scores, labels = scores[order], labels[order]
    return float(_tied_group_precision(scores, labels).sum() / total)


def _tied_group_precision(scores: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Per rank p of a list sorted by score: the expected precision-at-p times P(positive
    at p), over the uniformly random orders of p's tied group.

    A group of m entries with h positives, after b entries holding c positives: its
    j-th place holds a positive with probability h/m, and given that, the j - 1 places
    before it hold (j - 1)(h - 1)/(m - 1) positives on average (hypergeometric), so it
    contributes (h/m) (c + 1 + (j - 1)(h - 1)/(m - 1)) / (b + j). Without ties (m = 1)
    this is the plain precision at each positive.
    """
    n = len(scores)
    starts = np.flatnonzero(np.r_[True, scores[1:] != scores[:-1]])
    sizes = np.diff(np.r_[starts, n])
    group = np.repeat(np.arange(len(starts)), sizes)
    hits_in = np.add.reduceat(labels, starts)  # h per group
    hits_before = np.r_[0.0, np.cumsum(hits_in)[:-1]]  # c per group
    m, h = sizes[group].astype(np.float64), hits_in[group]
    j = np.arange(n) - starts[group] + 1.0
    others = np.where(m > 1, (j - 1) * (h - 1) / np.maximum(m - 1, 1), 0.0)
    return (h / m) * (hits_before[group] + 1 + others) / (starts[group] + j)


def top_k_mask(predictions: np.ndarray, k: int = TOP_K) -> np.ndarray:
    """Boolean [videos, classes]: each video's k highest scores (ties: lower class id)."""
    predictions = np.asarray(predictions)
    k = min(k, predictions.shape[1])
    top = np.argsort(-predictions, axis=1, kind="stable")[:, :k]
    mask = np.zeros(predictions.shape, dtype=bool)
    np.put_along_axis(mask, top, True, axis=1)
    return mask


def gap(predictions: np.ndarray, labels: np.ndarray, top_k: int = TOP_K) -> float:
    """Global average precision (starter code's calculate_gap).

    Every video's top_k (class, score) entries pooled into one list, ranked by
    score; AP with every ground-truth positive of every video in the denominator.
    """
    keep = top_k_mask(predictions, top_k)
    return average_precision(np.asarray(predictions)[keep], np.asarray(labels)[keep],
                             int((np.asarray(labels) > 0).sum()))


def class_average_precisions(predictions: np.ndarray, labels: np.ndarray,
                             top_k: int = TOP_K) -> np.ndarray:
    """Per-class AP over the entries in videos' top_k (NaN for classes with no positives).

    Class c's list holds the videos whose top_k contains c; the denominator is
    every positive of c (starter code's MeanAveragePrecisionCalculator fed by
    top_k_by_class).
    """
    predictions, labels = np.asarray(predictions), np.asarray(labels) > 0
    keep = top_k_mask(predictions, top_k)
    positives = labels.sum(0)
    aps = np.full(predictions.shape[1], np.nan)
    for c in np.flatnonzero(positives):
        rows = keep[:, c]
        aps[c] = average_precision(predictions[rows, c], labels[rows, c], int(positives[c]))
    return aps


def mean_ap(predictions: np.ndarray, labels: np.ndarray, top_k: int = TOP_K) -> float:
    """Mean of class_average_precisions over the classes that have positives."""
    aps = class_average_precisions(predictions, labels, top_k)
    return float(np.nanmean(aps)) if np.isfinite(aps).any() else 0.0


def hit_at_one(predictions: np.ndarray, labels: np.ndarray) -> float:
    """Share of videos whose highest-scored class (first on ties) is a true label."""
    top = np.argmax(predictions, axis=1)
    return float(np.mean(np.asarray(labels)[np.arange(len(top)), top] > 0))


def perr(predictions: np.ndarray, labels: np.ndarray) -> float:
    """Precision at equal recall rate (starter code's calculate_precision_at_equal_recall_rate).

    Per video with n labels: the share of its n highest-scored classes that are
    true labels (a hit needs a score > 0). Averaged over all videos; as in the
    starter code a video without labels contributes 0.
    """
    predictions, labels = np.asarray(predictions), np.asarray(labels) > 0
    order = np.argsort(-predictions, axis=1, kind="stable")
    total = 0.0
    for row in range(len(predictions)):
        n = int(labels[row].sum())
        if n == 0:
            continue
        top = order[row, :n]
        total += np.sum(labels[row, top] & (predictions[row, top] > 0)) / n
    return float(total / max(len(predictions), 1))


def segment_map(classes: np.ndarray, scores: np.ndarray, ratings: np.ndarray,
                top_n: int = SEGMENT_TOP_N) -> float:
    """The 2019 segment-level mAP over rated segments.

    One entry per rated (segment, class): the model's score for that class on
    that 5-second segment, and its rating (1 positive, 0 negative). Per class,
    entries ranked by score and cut at top_n; AP with all of the class's positive
    segments in the denominator; the mean over classes that have positives.
    """
    classes, scores, ratings = np.asarray(classes), np.asarray(scores), np.asarray(ratings) > 0
    aps = []
    for c in np.unique(classes):
        sel = classes == c
        n_pos = int(ratings[sel].sum())
        if n_pos == 0:
            continue
        s, r = scores[sel], ratings[sel]
        top = np.argsort(-s, kind="stable")[:top_n]
        aps.append(average_precision(s[top], r[top], n_pos))
    return float(np.mean(aps)) if aps else 0.0


def all_metrics(predictions: np.ndarray, labels: np.ndarray, top_k: int = TOP_K) -> dict[str, float]:
    return {"gap": gap(predictions, labels, top_k), "map": mean_ap(predictions, labels, top_k),
            "hit_at_1": hit_at_one(predictions, labels), "perr": perr(predictions, labels)}


class MetricsAccumulator:
    """The same four metrics over batches, keeping only each video's top_k entries.

    Memory is videos * top_k, not videos * classes, so a full validation set fits.
    Gives exactly what all_metrics gives on the concatenated batches.
    """

    def __init__(self, num_classes: int, top_k: int = TOP_K):
        self.num_classes, self.top_k = num_classes, min(top_k, num_classes)
        self.classes: list[np.ndarray] = []
        self.scores: list[np.ndarray] = []
        self.hits: list[np.ndarray] = []
        self.positives = np.zeros(num_classes, dtype=np.int64)
        self.videos, self.sum_hit_at_1, self.sum_perr = 0, 0.0, 0.0

    def add(self, predictions: np.ndarray, labels: np.ndarray) -> None:
        predictions, labels = np.asarray(predictions, dtype=np.float32), np.asarray(labels) > 0
        top = np.argsort(-predictions, axis=1, kind="stable")[:, :self.top_k]
        self.classes.append(top.astype(np.int32))
        self.scores.append(np.take_along_axis(predictions, top, 1))
        self.hits.append(np.take_along_axis(labels, top, 1))
        self.positives += labels.sum(0)
        n = len(predictions)
        self.sum_hit_at_1 += hit_at_one(predictions, labels) * n
        self.sum_perr += perr(predictions, labels) * n
        self.videos += n

    def result(self) -> dict[str, float]:
        if not self.videos:
            return {"gap": 0.0, "map": 0.0, "hit_at_1": 0.0, "perr": 0.0}
        classes, scores, hits = (np.concatenate(x).ravel() for x in (self.classes, self.scores, self.hits))
        aps = []
        order = np.argsort(classes, kind="stable")
        bounds = np.searchsorted(classes[order], np.arange(self.num_classes + 1))
        for c in np.flatnonzero(self.positives):
            rows = order[bounds[c]:bounds[c + 1]]
            aps.append(average_precision(scores[rows], hits[rows], int(self.positives[c])))
        return {"gap": average_precision(scores, hits, int(self.positives.sum())),
                "map": float(np.mean(aps)) if aps else 0.0,
                "hit_at_1": self.sum_hit_at_1 / self.videos, "perr": self.sum_perr / self.videos}
