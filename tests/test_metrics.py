"""The starter code's metrics against independent computations.

scikit-learn's average_precision_score gives AP over a list whose recall counts
only the positives in that list; GAP and per-class AP count every ground-truth
positive, so they equal sklearn's AP on the top-20 entries times
(positives in the top-20 entries / all positives). That holds without ties;
with ties, AP is the average over every order of the tied entries, checked by
brute force on small lists.
"""
from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import average_precision_score

from model.training import metrics


def random_case(seed: int, videos: int = 60, classes: int = 50, ties: bool = False):
    rng = np.random.default_rng(seed)
    predictions = rng.random((videos, classes))
    if ties:  # few distinct values: many ties, also across the top-20 cut
        predictions = np.round(predictions * 4) / 4
    labels = (rng.random((videos, classes)) < 0.08).astype(np.float32)
    labels[:, -5:] = 0  # classes that never occur
    labels[0] = 0  # a video without labels
    return predictions, labels


def top_k_python(row: np.ndarray, k: int) -> list[int]:
    """Highest k scores; equal scores in class-id order (the module's documented rule)."""
    return sorted(range(len(row)), key=lambda c: (-row[c], c))[:k]


def sklearn_ap_scaled(scores, labels, total_positives) -> float:
    scores, labels = np.asarray(scores), np.asarray(labels)
    if total_positives == 0 or labels.sum() == 0:
        return 0.0
    return average_precision_score(labels, scores) * labels.sum() / total_positives


def expected_ap(scores, labels, total_positives) -> float:
    """Brute force: AP averaged over every order of the entries with equal scores."""
    import itertools

    scores, labels = np.asarray(scores, float), np.asarray(labels) > 0
    groups = [np.flatnonzero(scores == v) for v in sorted(set(scores), reverse=True)]
    results = []
    for orders in itertools.product(*(itertools.permutations(g) for g in groups)):
        ranked = labels[np.concatenate(orders).astype(int)]
        hits = np.cumsum(ranked)
        results.append(np.sum(ranked * hits / np.arange(1, len(ranked) + 1)) / total_positives)
    return float(np.mean(results))


@pytest.mark.parametrize("seed", range(12))
def test_tied_scores_count_their_expected_precision_over_all_orders(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(2, 8))
    scores = rng.integers(0, 3, n) / 2  # few values: large tied groups
    labels = rng.random(n) < 0.5
    total = int(labels.sum()) + int(rng.integers(0, 2))  # sometimes a positive never listed
    if total == 0:
        total = 1
    assert metrics.average_precision(scores, labels, total) == pytest.approx(
        expected_ap(scores, labels, total), abs=1e-12)


def test_tied_ap_is_what_the_starter_codes_seeded_shuffle_estimates():
    """The starter code shuffles before sorting; the mean over shuffles is our value, and
    scikit-learn's tied-group rule is below it."""
    p, y = random_case(3, ties=True)
    scores, labels = p[:, :10].ravel(), y[:, :10].ravel()
    total = int(labels.sum())
    rng = np.random.default_rng(0)
    estimates = []
    for _ in range(400):
        order = rng.permutation(len(scores))
        ranked = labels[order][np.argsort(-scores[order], kind="stable")]
        estimates.append(np.sum(ranked * np.cumsum(ranked) / np.arange(1, len(ranked) + 1)) / total)
    ours = metrics.average_precision(scores, labels, total)
    assert ours == pytest.approx(np.mean(estimates), abs=3 * np.std(estimates) / 20 + 1e-9)
    assert sklearn_ap_scaled(scores, labels, total) < ours


@pytest.mark.parametrize("seed,ties", [(0, False), (1, False)])
def test_gap_is_sklearn_ap_over_top20_scaled_to_all_positives(seed, ties):
    p, y = random_case(seed, ties=ties)
    scores, labels = [], []
    for row in range(len(p)):
        for c in top_k_python(p[row], 20):
            scores.append(p[row, c])
            labels.append(y[row, c])
    expected = sklearn_ap_scaled(scores, labels, y.sum())
    assert metrics.gap(p, y) == pytest.approx(expected, rel=1e-7)
    assert 0 < expected < 1


@pytest.mark.parametrize("seed,ties", [(4, False)])
def test_map_is_per_class_sklearn_ap_over_top20_entries(seed, ties):
    p, y = random_case(seed, ties=ties)
    aps = []
    for c in range(p.shape[1]):
        if y[:, c].sum() == 0:
            continue  # classes without positives are left out
        rows = [r for r in range(len(p)) if c in top_k_python(p[r], 20)]
        aps.append(sklearn_ap_scaled(p[rows, c], y[rows, c], y[:, c].sum()))
    assert metrics.mean_ap(p, y) == pytest.approx(np.mean(aps), rel=1e-7)
    per_class = metrics.class_average_precisions(p, y)
    assert np.isnan(per_class[-5:]).all() and np.isfinite(per_class[:-5][y[:, :-5].sum(0) > 0]).all()


def test_average_precision_by_hand():
    # ranking: pos, neg, pos; 3 positives in all -> (1/1 + 2/3) / 3
    assert metrics.average_precision([0.9, 0.8, 0.7], [1, 0, 1], 3) == pytest.approx((1 + 2 / 3) / 3)
    # a tie of one positive and one negative at the top: first in half the orders (1),
    # second in the other half (1/2)
    assert metrics.average_precision([0.5, 0.5], [0, 1]) == pytest.approx(0.75)
    assert metrics.average_precision([0.5, 0.5], [1, 0]) == pytest.approx(0.75)
    assert metrics.average_precision([0.3, 0.2], [0, 0], 0) == 0.0


def test_gap_counts_positives_outside_the_top_k():
    p = np.array([[0.9, 0.1, 0.05]])
    y = np.array([[1, 0, 1]])
    # top 1: only class 0 (positive); the missed positive halves recall
    assert metrics.gap(p, y, top_k=1) == pytest.approx(0.5)
    assert metrics.gap(p, y, top_k=3) == pytest.approx((1 + 2 / 3) / 2)


def test_hit_at_one_and_perr_by_definition():
    p, y = random_case(6)
    hits = [y[r, int(np.argmax(p[r]))] for r in range(len(p))]
    assert metrics.hit_at_one(p, y) == pytest.approx(np.mean(hits))
    perrs = []
    for r in range(len(p)):
        n = int(y[r].sum())
        perrs.append(0.0 if n == 0 else sum(y[r, c] for c in top_k_python(p[r], n)) / n)
    assert metrics.perr(p, y) == pytest.approx(np.mean(perrs))


def test_perfect_and_inverted_predictions():
    _, y = random_case(7)
    assert metrics.gap(y + 0.0, y) == pytest.approx(1.0)
    assert metrics.mean_ap(y + 0.0, y) == pytest.approx(1.0)
    inverted = metrics.gap(1 - y, y)
    assert inverted < 0.2


@pytest.mark.parametrize("batch", [7, 25, 60])
def test_accumulator_equals_whole_set(batch):
    p, y = random_case(8, ties=True)
    acc = metrics.MetricsAccumulator(p.shape[1])
    for lo in range(0, len(p), batch):
        acc.add(p[lo:lo + batch], y[lo:lo + batch])
    whole = metrics.all_metrics(p, y)
    for key, value in acc.result().items():
        assert value == pytest.approx(whole[key], rel=1e-7), key


def test_segment_map_against_sklearn():
    rng = np.random.default_rng(9)
    classes = rng.integers(0, 5, 400)
    scores = rng.random(400)
    ratings = rng.random(400) < 0.3
    ratings[classes == 4] = False  # a class without positive segments is left out
    expected = np.mean([average_precision_score(ratings[classes == c], scores[classes == c])
                        for c in range(4)])
    assert metrics.segment_map(classes, scores, ratings) == pytest.approx(expected, rel=1e-7)
    # a top_n cut keeps every positive in the denominator
    c0 = classes == 0
    order = np.argsort(-scores[c0])[:10]
    cut = sklearn_ap_scaled(scores[c0][order], ratings[c0][order], ratings[c0].sum())
    only0 = metrics.segment_map(classes[c0], scores[c0], ratings[c0], top_n=10)
    assert only0 == pytest.approx(cut, rel=1e-7)
