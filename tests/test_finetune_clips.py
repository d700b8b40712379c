"""The whole path for a user's own videos, on real clips, through `python pipeline.py`:
extract with a labels.csv of one's own classes, train --init-from a trained model,
classify (with --segments) and serve in those classes.

The "pretrained" model is the tiny one the classify and serve tests train on the same
clips (randomly initialised backbones, PCA fitted on them; no published weights here);
the published model's layout, converted from a stand-in `.pdparams`, is refused on these
features with each difference named.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys

import httpx
import pytest

from conftest import ROOT, run_pipeline
from inference_setup import MAX_FRAMES, tiny_model
from model.apps.paddle_nextvlad import convert_file
from model.training.checkpoint import Checkpoint
from synthetic.paddle import random_params, write_pdparams
from test_paddle_convert import SMALL, _vocab
from test_serve import free_port, wait_until_up
from yt8m.assets import sha256_of
from yt8m.samples import sample_clip_dir

pytestmark = pytest.mark.slow
ENV = {"OMP_NUM_THREADS": "1"}
MY_LABELS = {  # the user's classes; "Bicycle" is one the initial model has too
    "bigbuckbunny.mp4": "cartoon",
    "bikes.mp4": "Bicycle;outdoors",
    "carphone_pristine.mp4": "phone call",
    "carphone_distorted.mp4": "phone call",
}
MY_CLASSES = sorted({n for names in MY_LABELS.values() for n in names.split(";")})


@pytest.fixture(scope="module")
def fine_tuned(tmp_path_factory):
    """extract --videos my/ --labels my.csv, then train --init-from the tiny model."""
    tiny = tiny_model(tmp_path_factory)
    work = tmp_path_factory.mktemp("my-videos")
    videos = work / "my"
    videos.mkdir()
    for name in MY_LABELS:
        os.symlink(os.path.join(sample_clip_dir(), name), videos / name)
    (work / "my.csv").write_text("video,labels\n" + "".join(f"{v},{l}\n" for v, l in MY_LABELS.items()))
    features = str(work / "features")
    extract = run_pipeline("extract", "--videos", str(videos), "--labels", str(work / "my.csv"),
                           "--out", features, "--random-weights", "--pca-dir", tiny.pca_dir,
                           "--max-frames", str(MAX_FRAMES), "--workers", "1", "--quiet", env=ENV)
    assert extract.returncode == 0, extract.stderr
    train = run_pipeline("train", "--data", features, "--init-from", tiny.run_dir, "--steps", "4",
                         "--batch-size", "2", "--max-frames", str(MAX_FRAMES), "--out",
                         str(work / "runs"), "--workers", "0", "--device", "cpu", "--quiet", env=ENV)
    assert train.returncode == 0, train.stderr
    assert "1 of them from the initial model's rows: Bicycle (name)" in train.stderr
    return tiny, features, str(work / "runs" / "latest")


def test_classify_gives_the_users_classes_per_clip_and_per_segment(fine_tuned):
    tiny, _, run = fine_tuned
    origin = Checkpoint.load(run).origin
    assert origin["init_from_sha256"] == sha256_of(os.path.join(tiny.run_dir, "checkpoint.pt"))
    result = run_pipeline("classify", tiny.clip("bikes.mp4"), tiny.clip("bigbuckbunny.mp4"),
                          "--model", run, "--pca-dir", tiny.pca_dir, "--max-frames",
                          str(MAX_FRAMES), "--workers", "1", "--json", "--segments", "--quiet",
                          env=ENV)
    assert result.returncode == 0, result.stderr
    clips = json.loads(result.stdout)
    assert [c["video"] for c in clips] == [tiny.clip("bikes.mp4"), tiny.clip("bigbuckbunny.mp4")]
    for clip in clips:
        assert sorted(l["name"] for l in clip["labels"]) == MY_CLASSES  # all 4, best first
        assert all(l["name"] == MY_CLASSES[l["id"]] for l in clip["labels"])
        assert clip["segments"] and all({l["name"] for l in s["labels"]} == set(MY_CLASSES)
                                        for s in clip["segments"])


def test_serve_lists_and_answers_in_the_users_classes(fine_tuned, tmp_path):
    tiny, _, run = fine_tuned
    port = free_port()
    log = open(tmp_path / "serve.log", "w+")
    proc = subprocess.Popen(
        [sys.executable, os.path.join(ROOT, "pipeline.py"), "serve", "--model", run, "--pca-dir",
         tiny.pca_dir, "--max-frames", str(MAX_FRAMES), "--workers", "1", "--port", str(port)],
        cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, env=dict(os.environ, **ENV))
    try:
        base = wait_until_up(port, proc, log)
        labels = httpx.get(f"{base}/labels").json()["labels"]
        assert labels == [{"id": i, "name": n} for i, n in enumerate(MY_CLASSES)]
        with open(tiny.clip("carphone_pristine.mp4"), "rb") as f:
            answer = httpx.post(f"{base}/classify", files={"video": ("call.mp4", f)}, timeout=120)
        assert answer.status_code == 200, answer.text
        assert sorted(l["name"] for l in answer.json()["labels"]) == MY_CLASSES
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()


def test_the_published_models_layout_refuses_these_features(fine_tuned, tmp_path):
    """Features from random backbones and fitted PCA mean nothing to a model trained on the
    official features: refused before training, each difference named."""
    _, features, _ = fine_tuned
    source = write_pdparams(random_params(SMALL), str(tmp_path / "NEXTVLAD.pdparams"))
    published = convert_file(source, str(tmp_path / "published"), _vocab(SMALL.num_classes)).folder
    result = run_pipeline("train", "--data", features, "--init-from", published, "--batch-size", "2",
                          "--out", str(tmp_path / "runs"), "--workers", "0", "--device", "cpu",
                          "--quiet", env=ENV)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert "random_weights: True vs False" in result.stderr
    assert "rgb_pca: 'fitted:" in result.stderr and "vs 'yt8m_pca'" in result.stderr
    assert not (tmp_path / "runs").exists() or os.listdir(tmp_path / "runs") == []
