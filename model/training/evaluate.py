"""`python pipeline.py evaluate`: a trained model on shards or TFRecords -> GAP@20, mAP,
Hit@1, PERR (and the 2019 segment mAP on segment-rated data).

A model is refused on shards made differently from its training data
(representation or vocabulary): its scores would mean nothing there.
"""
from __future__ import annotations

from contextlib import nullcontext

import numpy as np
import torch

from yt8m.errors import NoUsableData, Problem, UsageError
from yt8m.store import FRAME, VIDEO, ShardMeta

from .checkpoint import LoadedModel
from .data import pad_frames, to_device
from .metrics import TOP_K, MetricsAccumulator, segment_map
from .sources import DataSource, SourceVideo, open_source

SEGMENT_FRAMES = 5  # the 2019 challenge rates 5-second segments


def check_compatible(loaded: LoadedModel, shards: DataSource) -> None:
    """UsageError unless the model has classes to score and the shards were made like
    its training data."""
    if len(loaded.vocabulary) == 0:
        raise UsageError(f"the model {loaded.path} has no classes (it was trained on shards "
                         "without labels), so there is nothing to evaluate. Train a model on "
                         "labelled shards (extract with --labels CSV) and evaluate that.")
    trained_on = ShardMeta(VIDEO if loaded.video_level else FRAME, loaded.representation,
                           loaded.vocabulary.ref)
    problems = trained_on.mismatch(shards.meta)  # the rule the store applies between shards
    if problems:
        raise UsageError(f"the model {loaded.path} was trained on features made differently from "
                         f"the shards in {shards.data_dir} (model vs shards): " + "; ".join(problems)
                         + ". Use shards made the same way, or train a model on these.")


@torch.no_grad()
def predict_shards(model: torch.nn.Module, shards: DataSource, device: torch.device, batch_size: int,
                   max_frames: int, workers: int = 0, autocast=None, quiet: bool = True,
                   accumulator: MetricsAccumulator | None = None,
                   damaged: list[Problem] | None = None):
    """Every video's probabilities, in the data's order: (predictions [N, C], labels [N, C]).

    With an accumulator the batches go into it instead and nothing is kept. Damaged
    videos are left out and named in `damaged`; NoUsableData when no video was usable.
    """
    from yt8m.cli_util import progress
    was_training = model.training
    model.eval()
    predictions, labels = [], []
    met: list[Problem] = []  # the damaged inputs
    used = 0
    with progress(total=len(shards), desc="evaluate", quiet=quiet, unit="video") as bar:
        for batch in shards.batches(batch_size, max_frames, workers):
            met.extend(batch.damaged)
            if damaged is not None:
                damaged.extend(batch.damaged)
            bar.update(len(batch) + len(batch.damaged))
            if len(batch) == 0:
                continue
            used += len(batch)
            b = to_device(batch, device)
            with autocast or nullcontext():
                probs = model(b.rgb, b.audio, b.mask)[0]
            p, y = probs.float().cpu().numpy(), batch.labels.numpy()
            if accumulator is not None:
                accumulator.add(p, y)
            else:
                predictions.append(p)
                labels.append(y)
    model.train(was_training)
    if not used:
        raise NoUsableData(f"--data {shards.data_dir}", met)
    if accumulator is not None:
        return None, None
    return np.concatenate(predictions), np.concatenate(labels)


@torch.no_grad()
def segment_entries(loaded: LoadedModel, shards: DataSource, quiet: bool = True):
    """(class, score, rating) for every rated segment: the model run on the segment's 5 frames."""
    from yt8m.cli_util import progress
    classes, scores, ratings = [], [], []
    videos = (got.video for got in shards.read() if isinstance(got, SourceVideo))
    for video in progress(videos, total=len(shards), desc="segments", quiet=quiet, unit="video"):
        if len(video.segment_start_times) == 0:
            continue
        starts = np.asarray(video.segment_start_times, dtype=np.int64)
        n = len(starts)
        rgb, audio, mask = pad_frames([video.rgb[s:s + SEGMENT_FRAMES] for s in starts],
                                      [video.audio[s:s + SEGMENT_FRAMES] for s in starts])
        probs = loaded.predict(rgb, audio, mask).cpu().numpy()
        seg_classes = np.asarray(video.segment_labels, dtype=np.int64)
        classes.append(seg_classes)
        scores.append(probs[np.arange(n), seg_classes])
        ratings.append(np.asarray(video.segment_scores) > 0)
    if not classes:
        return None
    return np.concatenate(classes), np.concatenate(scores), np.concatenate(ratings)


def evaluate(loaded: LoadedModel, data_dir: str, batch_size: int = 64, workers: int = 0,
             top_k: int = TOP_K, quiet: bool = True,
             damaged: list[Problem] | None = None) -> dict[str, float]:
    """The metrics of a loaded model on shards or TFRecords (refused if made differently).
    Damaged videos are left out of the metrics and named in `damaged`."""
    with open_source(data_dir) as data:
        check_compatible(loaded, data)
        acc = MetricsAccumulator(len(loaded.vocabulary), top_k)
        predict_shards(loaded.model, data, loaded.device, batch_size, loaded.max_frames, workers,
                       quiet=quiet, accumulator=acc, damaged=damaged)
        result = acc.result()
        entries = None if loaded.video_level else segment_entries(loaded, data, quiet)
    if entries is not None:
        result["segment_map"] = segment_map(*entries)
    return result
