"""`python pipeline.py classify` on real clips with a tiny model trained in the session."""
from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch

from conftest import run_pipeline
from inference_setup import MAX_FRAMES, tiny_model
from model_synthetic import write_random_frames
from yt8m.representation import OFFICIAL
from yt8m.store import ShardSet

pytestmark = pytest.mark.slow
ENV = {"OMP_NUM_THREADS": "1"}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return tiny_model(tmp_path_factory)


def classify(tiny, *args: str, max_frames: int = MAX_FRAMES):
    return run_pipeline("classify", *args, "--model", tiny.run_dir, "--pca-dir", tiny.pca_dir,
                        "--max-frames", str(max_frames), "--workers", "1", "--quiet", env=ENV)


def test_json_ranks_names_scores_and_a_rejected_clip(tiny, tmp_path):
    bad = tmp_path / "notes.mp4"
    bad.write_text("this is not a video\n")
    clips = [tiny.clip("carphone_pristine.mp4"), str(bad), tiny.clip("bigbuckbunny.mp4")]
    result = classify(tiny, *clips, "--json", "--top-k", "5", "--report-dir", str(tmp_path))
    assert result.returncode == 3, result.stderr
    assert "Traceback" not in result.stderr
    assert "--random-weights" in result.stderr  # says how the clips were extracted, and why

    out = json.loads(result.stdout)
    assert [o["video"] for o in out] == [clips[0], clips[2]]
    shards = ShardSet(tiny.data_dir)
    from model.training.checkpoint import load_for_inference
    loaded = load_for_inference(tiny.run_dir)
    for obj in out:
        assert set(obj) == {"video", "labels", "random_weights"}
        assert obj["random_weights"] is True
        labels = obj["labels"]
        assert len(labels) == 5 and sorted(l["id"] for l in labels) == list(range(5))
        for label in labels:
            assert set(label) == {"id", "name", "score"}
            assert label["name"] == tiny.names[label["id"]]
            assert 0.0 <= label["score"] <= 1.0
        scores = [l["score"] for l in labels]
        assert scores == sorted(scores, reverse=True)
        # The same clip extracted into the training shards, through the model: equal scores.
        record = shards[shards.ids.index(os.path.basename(obj["video"]))]
        probs = loaded.predict(torch.from_numpy(record.rgb[None]), torch.from_numpy(record.audio[None]),
                               torch.ones(1, record.n_frames))[0].numpy()
        np.testing.assert_allclose([probs[l["id"]] for l in labels], scores, rtol=1e-4, atol=1e-6)

    report = json.loads((tmp_path / "report-classify.json").read_text())
    assert report["done"] == 2
    assert [r["input"] for r in report["rejected"]] == [str(bad)]
    assert "text" in report["rejected"][0]["reason"]


def test_segments_every_5_seconds(tiny):
    # bikes.mp4 lasts 10 s: 6 frames -> segments [0, 5) and [5, 6).
    result = classify(tiny, tiny.clip("bikes.mp4"), "--json", "--segments", "--top-k", "3",
                      max_frames=6)
    assert result.returncode == 0, result.stderr
    (obj,) = json.loads(result.stdout)
    assert set(obj) == {"video", "labels", "random_weights", "segments"}
    segments = obj["segments"]
    assert [(s["start_time"], s["end_time"]) for s in segments] == [(0, 5), (5, 6)]
    for s in segments:
        assert len(s["labels"]) == 3
        assert [l["score"] for l in s["labels"]] == sorted((l["score"] for l in s["labels"]),
                                                           reverse=True)
    # Each segment is scored on its own frames, so the two segments differ.
    assert segments[0]["labels"] != segments[1]["labels"]


def test_text_output_ranks_names():
    from model.apps.inference import ClipResult
    from model.apps.inference_cli import format_result
    result = ClipResult("clip.mp4", [{"id": 3, "name": "Car", "score": 0.9},
                                     {"id": 0, "name": "Animation", "score": 0.25}],
                        random_weights=True, n_frames=4, has_audio=False)
    lines = format_result(result).splitlines()
    assert lines[0].startswith("clip.mp4") and "random weights" in lines[0]
    assert lines[1].split() == ["1.", "0.9000", "Car", "(3)"]
    assert lines[2].split() == ["2.", "0.2500", "Animation", "(0)"]


def test_refuses_random_weights_clips_for_a_model_trained_on_official_features(tiny, tmp_path):
    data = str(tmp_path / "official")
    write_random_frames(data, 4, num_classes=5, max_frames=4, representation=OFFICIAL)
    runs = str(tmp_path / "runs")
    trained = run_pipeline("train", "--data", data, "--out", runs, "--clusters", "4",
                           "--groups", "2", "--hidden-size", "16", "--steps", "1",
                           "--batch-size", "2", "--workers", "0", "--device", "cpu", "--quiet",
                           env=ENV)
    assert trained.returncode == 0, trained.stderr
    result = run_pipeline("classify", tiny.clip("carphone_distorted.mp4"), "--model",
                          os.path.join(runs, "latest"), "--random-weights", "--pca-dir",
                          tiny.pca_dir, "--max-frames", "2", env=ENV)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr and result.stdout == ""
    assert "random_weights: False vs True" in result.stderr
    assert "random-weights features mean nothing" in result.stderr


def test_refuses_clips_with_other_pca_parameters(tiny, tmp_path):
    other = fit_other_pca(str(tmp_path / "other-pca"))
    result = run_pipeline("classify", tiny.clip("carphone_distorted.mp4"), "--model", tiny.run_dir,
                          "--pca-dir", other, "--max-frames", "2", env=ENV)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert "rgb_pca" in result.stderr and "--pca-dir" in result.stderr


def fit_other_pca(out_dir: str) -> str:
    from extract.pca import fit_pca
    rng = np.random.default_rng(7)
    fit_pca(rng.normal(size=(16, 2048)), rng.normal(size=(16, 128)), out_dir)
    return out_dir


def test_missing_model_is_exit_2(tiny, tmp_path):
    result = run_pipeline("classify", tiny.clip("carphone_distorted.mp4"), "--model",
                          str(tmp_path / "no-run"))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "no trained model" in result.stderr
