"""The Python API: the README's example as written, and the same answers as the commands."""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys

import pytest

from conftest import ROOT, run_pipeline
from inference_setup import LABELS, MAX_FRAMES, tiny_model

pytestmark = pytest.mark.slow


def readme_example() -> str:
    text = open(os.path.join(ROOT, "README.md"), encoding="utf-8").read()
    section = text[text.index("## Python API"):]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_the_readme_example_runs_as_written(tmp_path_factory, tmp_path):
    """In a folder laid out as the README assumes: runs/latest, pca_params, data/features
    and my_clip.mp4 (the tiny model, its PCA and shards, a real clip)."""
    tiny = tiny_model(tmp_path_factory)
    os.makedirs(tmp_path / "runs")
    os.makedirs(tmp_path / "data")
    os.symlink(os.path.realpath(tiny.run_dir), tmp_path / "runs" / "latest")
    os.symlink(tiny.pca_dir, tmp_path / "pca_params")
    os.symlink(tiny.data_dir, tmp_path / "data" / "features")
    shutil.copy(tiny.clip("carphone_distorted.mp4"), tmp_path / "my_clip.mp4")
    code = readme_example()
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True,
                          env=dict(os.environ, PYTHONPATH=ROOT), timeout=600)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.strip().splitlines()
    assert lines[0].startswith("my_clip.mp4 [(") and lines[-1] == f"{len(LABELS)} custom", lines
    top = run_pipeline("classify", os.path.join(tmp_path, "my_clip.mp4"), "--model", tiny.run_dir,
                       "--pca-dir", tiny.pca_dir, "--top-k", "5", "--json", cwd=str(tmp_path))
    assert top.returncode == 0, top.stderr
    names = [label["name"] for label in json.loads(top.stdout)[0]["labels"]]
    assert [n for n, _ in eval(lines[0].split(" ", 1)[1])] == names  # the same ranking as the command


def test_api_answers_as_classify_and_features_as_the_clip(tmp_path_factory, tmp_path):
    from model.apps import api
    from yt8m.errors import RejectedInput, UsageError

    tiny = tiny_model(tmp_path_factory)
    clip = tiny.clip("bikes.mp4")
    model = api.load_model(tiny.run_dir, device="cpu")
    extractor = api.load_extractor(model, pca_dir=tiny.pca_dir, max_frames=MAX_FRAMES, workers=1)
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"\0" * 64)
    got = api.classify_clips([clip, str(bad)], model, extractor, top_k=3)
    assert isinstance(got[1], RejectedInput) and got[1].name == str(bad)
    command = run_pipeline("classify", clip, "--model", tiny.run_dir, "--pca-dir", tiny.pca_dir,
                           "--max-frames", str(MAX_FRAMES), "--top-k", "3", "--json")
    assert command.returncode == 0, command.stderr
    expected = json.loads(command.stdout)[0]["labels"]
    assert [label["id"] for label in got[0].labels] == [label["id"] for label in expected]
    assert [label["score"] for label in got[0].labels] == pytest.approx(
        [label["score"] for label in expected], abs=1e-6)
    record = api.extract_clip(clip, extractor)
    assert record.rgb.shape == (MAX_FRAMES, 1024) and record.audio.shape == (MAX_FRAMES, 128)
    assert api.classify_features([record], model, top_k=3)[0].labels == got[0].labels
    with pytest.raises(RejectedInput):
        api.extract_clip(str(bad), extractor)
    with api.open_data(tiny.data_dir) as source:
        videos = [v.video.id for v in source.read()]
    assert len(videos) == len(source) == 4
    with pytest.raises(UsageError):  # features made with other PCA: refused, as classify does
        api.load_extractor(model, pca_dir=str(tmp_path / "no-pca"), max_frames=MAX_FRAMES)
