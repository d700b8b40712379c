"""A trained model on new inputs: raw clips -> ranked labels, shards -> a Kaggle CSV.

Clips go through the extraction code path (an `extract` Extractor, loaded once
and reusable by a long-running server) and then the model, many clips per
batch. Features are only comparable when made the same way, so a clip is
refused (UsageError, exit 2) when the extractor would make it differently from
the model's training data: other backbone weights (random vs published), other
PCA parameters, other quantization.

`--segments` scores every 5-frame window (5 seconds at 1 frame/s) on its own, as
the 2019 segment-rated challenge rates segments; the last window may be shorter.
"""
from __future__ import annotations

import csv
import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Iterator, Sequence

import numpy as np
import torch

from model.training.checkpoint import LoadedModel
from model.training.data import pad_frames
from model.training.evaluate import SEGMENT_FRAMES, check_compatible
from model.training.sources import DataSource, SourceVideo, open_source
from yt8m.errors import Problem, RejectedInput, UsageError
from yt8m.iterate import batched
from yt8m.representation import Representation, dequantize
from yt8m.store import VideoRecord
from yt8m.vocabulary import Vocabulary

from .config import KAGGLE_TOP_K, LABELS_PER_CLIP

if TYPE_CHECKING:  # extraction is loaded only where clips are classified
    from extract.extractor import Cancellation

KAGGLE_HEADER = ("VideoId", "LabelConfidencePairs")


# --------------------------------------------------------------------------- ranking

def top_labels(probs: np.ndarray, vocabulary: Vocabulary, k: int) -> list[dict[str, Any]]:
    """One video's probabilities [C] -> the k best as {"id", "name", "score"}, best first.

    Ties keep the lower class id first (a stable sort), so the output is deterministic.
    """
    order = np.argsort(-probs, kind="stable")[:max(0, k)]
    return [{"id": int(i), "name": vocabulary.name_of(int(i)), "score": float(probs[i])}
            for i in order]


def kaggle_pairs(probs: np.ndarray, k: int = KAGGLE_TOP_K) -> str:
    """Probabilities [C] -> `"id score id score ..."` with `"%i %g"` pairs, best first.

    A vocabulary with fewer than k classes gives one pair per class.
    """
    order = np.argsort(-probs, kind="stable")[:k]
    return " ".join("%i %g" % (int(i), float(probs[i])) for i in order)


# --------------------------------------------------------------------------- model on records

def predict_records(loaded: LoadedModel, records: Sequence[VideoRecord]) -> np.ndarray:
    """Probabilities [B, C] for frame-level or video-level records, as float32 NumPy."""
    if not records:
        return np.zeros((0, len(loaded.vocabulary)), np.float32)
    if loaded.video_level:
        rgb = torch.from_numpy(np.stack([_mean(r, "rgb") for r in records]))
        audio = torch.from_numpy(np.stack([_mean(r, "audio") for r in records]))
        return loaded.predict(rgb, audio).cpu().numpy()
    t = loaded.max_frames
    return loaded.predict(*pad_frames([r.rgb[:t] for r in records],
                                      [r.audio[:t] for r in records])).cpu().numpy()


def _mean(record: VideoRecord, stream: str) -> np.ndarray:
    """A video-level model on a clip: the mean of its dequantized frames, as in the dataset."""
    stored = getattr(record, f"mean_{stream}")
    if stored is not None:
        return np.asarray(stored, np.float32)
    frames = getattr(record, stream)
    return dequantize(frames).mean(axis=0) if len(frames) else \
        np.zeros(frames.shape[1], np.float32)


def segment_windows(n_frames: int, length: int = SEGMENT_FRAMES) -> list[tuple[int, int]]:
    """(start, end) frame ranges of consecutive `length`-frame segments; the last may be shorter."""
    return [(s, min(s + length, n_frames)) for s in range(0, n_frames, length)]


def predict_segments(loaded: LoadedModel, record: VideoRecord,
                     length: int = SEGMENT_FRAMES) -> tuple[list[tuple[int, int]], np.ndarray]:
    """Each segment of a clip scored on its own frames: (windows, probabilities [S, C])."""
    if loaded.video_level:
        raise UsageError(f"--segments needs a frame-level model; {loaded.path} is the video-level "
                         f"{loaded.config.name!r}, which sees only whole-video means.")
    windows = segment_windows(record.n_frames, length)
    pieces = [VideoRecord(f"{record.id}@{s}", rgb=record.rgb[s:e], audio=record.audio[s:e])
              for s, e in windows]
    return windows, predict_records(loaded, pieces)


# --------------------------------------------------------------------------- classify

@dataclass
class ClipResult:
    """One classified clip: what `classify --json` prints and `serve` answers, as a dict."""

    video: str
    labels: list[dict[str, Any]]
    random_weights: bool
    n_frames: int
    has_audio: bool
    segments: list[dict[str, Any]] | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"video": self.video, "labels": self.labels,
                               "random_weights": self.random_weights}
        if self.segments is not None:
            out["segments"] = self.segments
        return out


def check_clip_representation(loaded: LoadedModel, clip: Representation,
                              how: str = "these clips would be") -> None:
    """UsageError (exit 2) unless clips extracted as `clip` are what the model was trained on."""
    problems = loaded.representation.differences(clip)
    if not problems:
        return
    hint = []
    if loaded.representation.random_weights and not clip.random_weights:
        hint.append("the model was trained on features from randomly initialised backbones "
                    "(--random-weights), which only suit smoke tests; pass --random-weights to "
                    "classify with it, or train on features from the published weights")
    elif clip.random_weights and not loaded.representation.random_weights:
        hint.append("random-weights features mean nothing to a model trained on features from "
                    "the published weights: drop --random-weights and give --weights-dir "
                    "(or run `python pipeline.py download`)")
    if loaded.representation.rgb_pca != clip.rgb_pca or loaded.representation.audio_pca != clip.audio_pca:
        hint.append("give --pca-dir the PCA parameters the training shards were made with")
    raise UsageError(
        f"the model {loaded.path} was trained on features made differently from how {how} "
        f"extracted (model vs clip): " + "; ".join(problems) + ". "
        + ("; ".join(hint) + "." if hint else "Extract with the settings of the training data."))


def results_for_records(loaded: LoadedModel, records: Sequence[VideoRecord], names: Sequence[str],
                        top_k: int, segments: bool, random_weights: bool) -> list[ClipResult]:
    """Extracted clips -> ClipResults, one model call for the whole list (plus one per clip
    for its segments)."""
    probs = predict_records(loaded, records)
    out = []
    for name, record, p in zip(names, records, probs):
        result = ClipResult(name, top_labels(p, loaded.vocabulary, top_k), random_weights,
                            record.n_frames, record.has_audio)
        if segments:
            windows, seg_probs = predict_segments(loaded, record)
            result.segments = [{"start_time": s, "end_time": e,
                                "labels": top_labels(sp, loaded.vocabulary, top_k)}
                               for (s, e), sp in zip(windows, seg_probs)]
        out.append(result)
    return out


@dataclass
class ClassifyOptions:
    top_k: int = LABELS_PER_CLIP
    segments: bool = False
    batch_size: int = 16  # clips per model call


class Classifier:
    """A loaded model and an extractor, both loaded once: paths -> ClipResult | RejectedInput.

    `extractor` is extraction's in-process API (extract.extractor.Extractor):
    `.representation` (how it makes features) and `.extract_paths(paths, names)`
    yielding (path, VideoRecord | RejectedInput) in input order.
    The representation is checked once, here, before any clip is decoded.
    """

    def __init__(self, loaded: LoadedModel, extractor: Any, options: ClassifyOptions | None = None):
        self.loaded, self.extractor = loaded, extractor
        self.options = options or ClassifyOptions()
        self.representation: Representation = extractor.representation
        check_clip_representation(loaded, self.representation)

    @property
    def random_weights(self) -> bool:
        return bool(self.representation.random_weights)

    def classify(self, paths: Sequence[str], names: Sequence[str] | None = None,
                 options: ClassifyOptions | None = None,
                 cancels: Sequence[Cancellation] | None = None
                 ) -> Iterator[tuple[str, ClipResult | RejectedInput]]:
        """(name, result or rejection) for each path, in input order; `names` default to the
        paths. Clips are extracted one after another and scored `batch_size` at a time.
        `cancels[i]` set: clip i's extraction stops (rejected as cancelled)."""
        opt = options or self.options
        names = list(paths) if names is None else list(names)
        pending: list[tuple[str, VideoRecord | RejectedInput]] = []  # in input order

        def flush() -> Iterator[tuple[str, ClipResult | RejectedInput]]:
            clips = [(n, got) for n, got in pending if isinstance(got, VideoRecord)]
            results = iter(results_for_records(self.loaded, [r for _, r in clips],
                                               [n for n, _ in clips], opt.top_k, opt.segments,
                                               self.random_weights))
            for name, got in pending:
                yield name, (got if isinstance(got, RejectedInput) else next(results))
            pending.clear()

        for name, (_, got) in zip(names, self.extractor.extract_paths(list(paths), names,
                                                                     cancels)):
            if isinstance(got, VideoRecord) and got.n_frames == 0:
                got = RejectedInput(name, "no frames were decoded (zero duration)")
            pending.append((name, got))
            if sum(isinstance(g, VideoRecord) for _, g in pending) >= opt.batch_size:
                yield from flush()
        if pending:
            yield from flush()


# --------------------------------------------------------------------------- predict

@dataclass
class PredictSummary:
    videos: int = 0
    rejected: list[Problem] = field(default_factory=list)  # damaged or duplicate inputs


def _videos(source: DataSource, summary: PredictSummary) -> Iterator[tuple[str, VideoRecord]]:
    """(where it is, video) for every readable video, in order; damaged ones go into the
    summary."""
    for got in source.read():
        if isinstance(got, SourceVideo):
            yield got.where, got.video
        else:
            summary.rejected.append(got)


def predict_to_csv(loaded: LoadedModel, data_dir: str, out_path: str, batch_size: int = 64,
                   top_k: int = KAGGLE_TOP_K, quiet: bool = True) -> PredictSummary:
    """Every video of shards or TFRecords -> one `VideoId,LabelConfidencePairs` row of `out_path`.

    Streams: shards are read sequentially a block at a time and rows written as
    each batch is scored, so memory holds one batch whatever the folder's size.
    The CSV appears under its name only when complete. Damaged shards are skipped
    and listed in the summary; shards made differently from the model's training
    data refuse the whole job (UsageError) before anything is written.
    """
    from yt8m.cli_util import progress

    source = open_source(data_dir, strict=False)
    check_compatible(loaded, source)
    summary = PredictSummary(rejected=list(source.refused))
    os.makedirs(os.path.dirname(os.path.abspath(out_path)), exist_ok=True)
    tmp = f"{out_path}.partial"
    seen: set[str] = set()
    try:
        with open(tmp, "w", newline="", encoding="utf-8") as f, \
                progress(total=len(source), desc="predict", quiet=quiet, unit="video") as bar:
            writer = csv.writer(f)
            writer.writerow(KAGGLE_HEADER)
            for batch in batched(_videos(source, summary), batch_size):
                probs = predict_records(loaded, [v for _, v in batch])
                for (where, video), p in zip(batch, probs):
                    if video.id in seen:  # the same video twice: its first copy wins
                        summary.rejected.append(Problem(f"{where}: {video.id}",
                                                        "duplicate video id; predicted once"))
                        continue
                    seen.add(video.id)
                    writer.writerow((video.id, kaggle_pairs(p, top_k)))
                summary.videos = len(seen)
                bar.update(len(batch))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, out_path)
    finally:
        source.close()
        if os.path.exists(tmp):
            os.remove(tmp)
    return summary
