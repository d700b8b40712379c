"""The published model out of the box: downloaded (resumable) and converted on arrival,
chosen by default when there is no training run, and clear offline errors."""
from __future__ import annotations

import dataclasses
import os

import pytest

from conftest import run_pipeline
from model.apps.paddle_nextvlad import PADDLE_NEXTVLAD
from model.apps.pretrained import download_pretrained, pretrained_dir, resolve_model
from model.training.checkpoint import Checkpoint
from synthetic.paddle import random_params, write_pdparams
from test_paddle_convert import SMALL, _vocab
from yt8m.errors import UsageError

# Every URL of the product points at a port where nothing listens: offline, at once.
OFFLINE = {"http_proxy": "http://127.0.0.1:9", "https_proxy": "http://127.0.0.1:9",
           "HTTP_PROXY": "http://127.0.0.1:9", "HTTPS_PROXY": "http://127.0.0.1:9",
           "no_proxy": "", "NO_PROXY": ""}



@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    return tmp_path / "cache" / "yt8m-toolkit"


def test_download_resumes_a_cut_transfer_then_converts(mirror, cache, tmp_path):
    body = open(write_pdparams(random_params(SMALL), str(tmp_path / "src.pdparams")), "rb").read()
    mirror.files["/NEXTVLAD.pdparams"] = body
    mirror.cut_after["/NEXTVLAD.pdparams"] = len(body) // 3
    published = dataclasses.replace(
        PADDLE_NEXTVLAD, asset=dataclasses.replace(PADDLE_NEXTVLAD.asset,
                                                   url=f"{mirror.url}/NEXTVLAD.pdparams"))
    args = dict(published=published, layout=SMALL, vocabulary=_vocab(SMALL.num_classes), quiet=True)
    with pytest.raises(UsageError, match="connection"):
        download_pretrained(**args)
    assert not (cache / "NEXTVLAD.pdparams").exists()  # only the hidden part
    folder = download_pretrained(**args)
    assert mirror.requests[-1] == ("/NEXTVLAD.pdparams", f"bytes={len(body) // 3}-")
    assert folder == pretrained_dir() and (cache / "NEXTVLAD.pdparams").read_bytes() == body
    ckpt = Checkpoint.load(folder)
    assert ckpt.origin["file"] == "NEXTVLAD.pdparams" and ckpt.vocabulary.names[0] == "class 0"
    # A second download finds file and conversion in place: no request, no new conversion.
    before, mtime = len(mirror.requests), os.path.getmtime(os.path.join(folder, "checkpoint.pt"))
    assert download_pretrained(**args) == folder
    assert len(mirror.requests) == before
    assert os.path.getmtime(os.path.join(folder, "checkpoint.pt")) == mtime


def test_offline_download_exits_2_naming_every_file_and_the_model(tmp_path):
    result = run_pipeline("download", "--weights-dir", str(tmp_path / "w"), "--pca-dir",
                          str(tmp_path / "pca"), "--vocabulary-dir", str(tmp_path / "v"),
                          "--quiet", env=OFFLINE, timeout=120)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    for name in ("pt_inception-2015-12-05-6726825d.pth", "vocabulary.csv", "NEXTVLAD.pdparams",
                 PADDLE_NEXTVLAD.asset.url, str(tmp_path / "w")):
        assert name in result.stdout + result.stderr, name  # the table, then the message


def test_default_model_is_the_latest_run_else_the_published_one(tmp_path, monkeypatch, cache,
                                                                capsys):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(UsageError, match="python pipeline.py download"):
        resolve_model(None)
    path = write_pdparams(random_params(SMALL), str(tmp_path / "x.pdparams"))
    from model.apps.paddle_nextvlad import convert_file
    convert_file(path, pretrained_dir(), _vocab(SMALL.num_classes))
    assert resolve_model(None) == pretrained_dir()
    assert "published YouTube-8M NeXtVLAD" in capsys.readouterr().err
    convert_file(path, str(tmp_path / "runs" / "first"), _vocab(SMALL.num_classes))
    os.symlink("first", tmp_path / "runs" / "latest")
    assert resolve_model(None) == "runs/latest"
    assert "latest training run" in capsys.readouterr().err
    assert resolve_model("elsewhere") == "elsewhere"


def test_classify_without_model_uses_the_published_one_and_says_so(tmp_path, cache, sample_clips):
    path = write_pdparams(random_params(SMALL), str(tmp_path / "x.pdparams"))
    from model.apps.paddle_nextvlad import convert_file
    convert_file(path, str(cache / "models" / "nextvlad-youtube8m-paddle"), _vocab(SMALL.num_classes))
    env = {"XDG_CACHE_HOME": str(tmp_path / "cache")}
    result = run_pipeline("classify", sample_clips["carphone_distorted"], "--quiet",
                          env=env, cwd=str(tmp_path))
    # The published model expects the published backbones and PCA, not on this machine.
    assert result.returncode == 2, result.stderr
    assert "model: the published YouTube-8M NeXtVLAD" in result.stderr
    assert "python pipeline.py download" in result.stderr
    assert "Traceback" not in result.stderr
