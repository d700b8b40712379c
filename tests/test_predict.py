"""`python pipeline.py predict`: shards -> a Kaggle CSV, checked with the csv module."""
from __future__ import annotations

import csv
import json
import os
import shutil

import numpy as np
import pytest
import torch

from conftest import run_pipeline
from model_synthetic import write_random_frames
from yt8m.representation import OFFICIAL
from yt8m.store import ShardSet

NUM_CLASSES = 25  # more than the 20 pairs of a row


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """Three shards of random frames (25 classes) and a tiny NeXtVLAD trained on them."""
    root = tmp_path_factory.mktemp("predict")
    data = str(root / "data")
    write_random_frames(data, 40, num_classes=NUM_CLASSES, max_frames=12)
    result = run_pipeline("train", "--data", data, "--out", str(root / "runs"), "--clusters", "4",
                          "--groups", "2", "--hidden-size", "16", "--steps", "3",
                          "--batch-size", "8", "--max-frames", "12", "--workers", "0",
                          "--device", "cpu", "--quiet", env={"OMP_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stderr
    return root, data, str(root / "runs" / "latest")


def read_submission(path: str) -> list[tuple[str, list[int], list[float]]]:
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["VideoId", "LabelConfidencePairs"]
    out = []
    for video_id, pairs in rows[1:]:
        fields = pairs.split(" ")
        assert len(fields) % 2 == 0
        out.append((video_id, [int(x) for x in fields[0::2]], [float(x) for x in fields[1::2]]))
    return out


@pytest.mark.slow
def test_predict_writes_every_video_once_with_20_sorted_pairs(trained, tmp_path):
    root, data, model = trained
    out = str(tmp_path / "sub" / "predictions.csv")
    result = run_pipeline("predict", "--model", model, "--data", data, "--out", out,
                          "--batch-size", "7", "--quiet")
    assert result.returncode == 0, result.stderr
    rows = read_submission(out)
    shards = ShardSet(data)
    assert len(shards.shards) == 3
    assert sorted(r[0] for r in rows) == sorted(shards.ids) and len(rows) == len(shards)
    for _, ids, scores in rows:
        assert len(ids) == 20 and len(set(ids)) == 20
        assert all(0 <= i < NUM_CLASSES for i in ids)
        assert scores == sorted(scores, reverse=True)
        assert all(0.0 <= s <= 1.0 for s in scores)
    assert not os.path.exists(out + ".partial")
    assert not os.path.exists(tmp_path / "sub" / "report-predict.json")

    # Each row is its own video's prediction: the model run on that video alone agrees.
    from model.training.checkpoint import load_for_inference
    loaded = load_for_inference(model)
    by_id = {r[0]: r for r in rows}
    for i in (0, 17, 39):
        video = shards[i]
        probs = loaded.predict(torch.from_numpy(video.rgb[None]), torch.from_numpy(video.audio[None]),
                               torch.ones(1, video.n_frames))[0].numpy()
        _, ids, scores = by_id[video.id]
        best = np.argsort(-probs, kind="stable")[:20]
        assert ids == best.tolist()
        np.testing.assert_allclose(scores, probs[best], rtol=1e-4, atol=1e-6)


def test_fewer_classes_than_20_gives_one_pair_per_class():
    from model.apps.inference import kaggle_pairs
    pairs = kaggle_pairs(np.array([0.1, 0.9, 0.25, 0.5, 0.05], np.float32)).split()
    assert pairs[0::2] == ["1", "3", "2", "0", "4"]
    assert pairs[1::2] == ["%g" % np.float32(x) for x in (0.9, 0.5, 0.25, 0.1, 0.05)]


@pytest.mark.slow
def test_refuses_shards_made_differently(trained, tmp_path):
    _, _, model = trained
    official = str(tmp_path / "official")
    write_random_frames(official, 5, num_classes=NUM_CLASSES, representation=OFFICIAL)
    out = str(tmp_path / "p.csv")
    result = run_pipeline("predict", "--model", model, "--data", official, "--out", out)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert "rgb_backbone" in result.stderr and "made differently" in result.stderr
    assert not os.path.exists(out)


@pytest.mark.slow
def test_damaged_shard_is_reported_and_the_rest_predicted(trained, tmp_path):
    _, data, model = trained
    copy = str(tmp_path / "data")
    shutil.copytree(data, copy)
    with open(os.path.join(copy, "shard-00009.h5"), "wb") as f:
        f.write(b"\x89HDF\r\n\x1a\n" + b"\0" * 100)  # an HDF5 signature and nothing else
    out = str(tmp_path / "p.csv")
    result = run_pipeline("predict", "--model", model, "--data", copy, "--out", out, "--quiet")
    assert result.returncode == 3, result.stderr
    report = json.load(open(tmp_path / "report-predict.json"))
    assert [r["input"] for r in report["rejected"]] == [os.path.join(copy, "shard-00009.h5")]
    assert len(read_submission(out)) == 40


@pytest.mark.slow
def test_missing_model_is_exit_2(tmp_path, trained):
    _, data, _ = trained
    result = run_pipeline("predict", "--model", str(tmp_path / "nothing"), "--data", data,
                          "--out", str(tmp_path / "p.csv"))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "no trained model" in result.stderr


@pytest.mark.slow
def test_video_level_model_on_video_level_shards(tmp_path):
    from model_synthetic import write_video_level
    data = str(tmp_path / "data")
    write_video_level(data, 30, num_classes=NUM_CLASSES)
    trained = run_pipeline("train", "--data", data, "--out", str(tmp_path / "runs"), "--model",
                           "logistic", "--steps", "2", "--batch-size", "8", "--workers", "0",
                           "--device", "cpu", "--quiet", env={"OMP_NUM_THREADS": "1"})
    assert trained.returncode == 0, trained.stderr
    out = str(tmp_path / "p.csv")
    result = run_pipeline("predict", "--model", str(tmp_path / "runs" / "latest"), "--data", data,
                          "--out", out, "--quiet")
    assert result.returncode == 0, result.stderr
    rows = read_submission(out)
    assert sorted(r[0] for r in rows) == sorted(ShardSet(data).ids)
    assert all(len(ids) == 20 and scores == sorted(scores, reverse=True) for _, ids, scores in rows)
