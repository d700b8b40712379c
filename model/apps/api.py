"""The Python API, for notebooks: the objects the commands use, without the command line.

    from model.apps import api

    model = api.load_model()                    # runs/latest, else the published model
    extractor = api.load_extractor(model)       # made like the model's training data
    for result in api.classify_clips(["my_clip.mp4"], model, extractor, top_k=5):
        print(result.video, [(label["name"], round(label["score"], 3)) for label in result.labels])

    record = api.extract_clip("my_clip.mp4", extractor)   # its features (VideoRecord)
    results = api.classify_features([record], model)       # ClipResult per record
    with api.open_data("data/features") as source:         # shards or official TFRecords
        first = next(iter(source.read())).video             # in order; damage in its place

Each function is what a command does for one step: `load_model` is `--model`
(`classify`, `serve`, `evaluate`), `load_extractor` the extraction that `classify`
sets up, `classify_clips` is `classify`, `classify_features` scores features already
extracted (a shard's videos, `extract_clip`'s record), `open_data` is `--data`.
Expected failures raise `yt8m.errors.UsageError` (a command's exit 2) with the
command's message; a clip that cannot be used gives a `RejectedInput` in its place.
"""
from __future__ import annotations

from typing import Sequence

from extract.config import ExtractConfig
from extract.extractor import Extractor
from yt8m.assets import DEFAULT_PCA_DIR
from yt8m.cli_util import resolve_device
from yt8m.errors import RejectedInput
from yt8m.record import VideoRecord
from yt8m.representation import DEFAULT_MAX_FRAMES

from ..training.checkpoint import LoadedModel, load_for_inference
from ..training.sources import DataSource, open_source
from .config import LABELS_PER_CLIP
from .inference import Classifier, ClassifyOptions, ClipResult, check_clip_representation, results_for_records
from .pretrained import resolve_model


def load_model(path: str | None = None, device: str = "auto") -> LoadedModel:
    """A model folder or checkpoint (default: runs/latest when it exists, else the published
    model that `download` converted), on `device` (auto: CUDA when present)."""
    return load_for_inference(resolve_model(path), resolve_device(device))


def load_extractor(model: LoadedModel, pca_dir: str = DEFAULT_PCA_DIR,
                   weights_dir: str | None = None, max_frames: int = DEFAULT_MAX_FRAMES,
                   random_weights: bool | None = None, workers: int = 2) -> Extractor:
    """Extraction with the backbones loaded once, on the model's device. `random_weights`
    None: as the model's training data were made. UsageError if clips extracted so would
    not be what the model was trained on (other backbones or PCA)."""
    if random_weights is None:
        random_weights = model.representation.random_weights
    extractor = Extractor(ExtractConfig(max_frames=max_frames, workers=workers,
                                        device=str(model.device), weights_dir=weights_dir,
                                        random_weights=random_weights, pca_dir=pca_dir))
    check_clip_representation(model, extractor.representation)
    return extractor


def extract_clip(path: str, extractor: Extractor) -> VideoRecord:
    """One clip's quantized features (rgb [T, 1024], audio [T, 128] uint8); RejectedInput
    when it is not a usable video."""
    (_, got), = list(extractor.extract_paths([path]))
    if isinstance(got, RejectedInput):
        raise got
    return got


def classify_clips(paths: Sequence[str], model: LoadedModel, extractor: Extractor,
                   top_k: int = LABELS_PER_CLIP, segments: bool = False
                   ) -> list[ClipResult | RejectedInput]:
    """Raw clips -> their ranked labels (what `classify --json` prints, as objects), in
    order; a clip that cannot be used gives its RejectedInput in its place."""
    classifier = Classifier(model, extractor, ClassifyOptions(top_k=top_k, segments=segments))
    return [got for _, got in classifier.classify(list(paths))]


def classify_features(records: Sequence[VideoRecord], model: LoadedModel,
                      top_k: int = LABELS_PER_CLIP, segments: bool = False) -> list[ClipResult]:
    """Features already extracted (from `extract_clip`, or a data source) -> ranked labels."""
    return results_for_records(model, list(records), [r.id for r in records], top_k, segments,
                               model.representation.random_weights)


def open_data(path: str) -> DataSource:
    """A folder of shards, or official TFRecords (a folder or a glob), behind one interface:
    `.vocabulary`, `.representation`, `len()`, `.read()` in order; close it when done."""
    return open_source(path)
