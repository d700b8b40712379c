"""PaddlePaddle's published NeXtVLAD, converted: the same probabilities as Paddle's
inference (NumPy reference in paddle_reference.py), safe loading, structural checks."""
from __future__ import annotations

import json
import os
import pickle

import numpy as np
import pytest
import torch

from conftest import run_pipeline
from model.apps.paddle_nextvlad import PaddleLayout, convert_file, load_pdparams
from model.training.checkpoint import Checkpoint, load_for_inference
from paddle_reference import paddle_probabilities, write_python2_pdparams
from synthetic.paddle import random_params, write_pdparams
from yt8m.errors import UsageError
from yt8m.representation import OFFICIAL
from yt8m.vocabulary import Vocabulary

SMALL = PaddleLayout(clusters=6, groups=4, expansion=2, hidden_size=12,
                     gating_reduction=3, num_classes=7)


def _vocab(n: int) -> Vocabulary:
    return Vocabulary([f"class {i}" for i in range(n)])


def _ragged_videos(layout: PaddleLayout, lengths, seed=1):
    rng = np.random.default_rng(seed)
    return [(rng.integers(0, 256, (t, layout.rgb_dim), dtype=np.uint8),
             rng.integers(0, 256, (t, layout.audio_dim), dtype=np.uint8)) for t in lengths]


def _ours(loaded, videos, pad_to: int | None = None):
    """Our model on a zero-padded batch (uint8 0 dequantizes to -2, not 0)."""
    t = pad_to or max(len(r) for r, _ in videos)
    b = len(videos)
    rgb = torch.zeros(b, t, videos[0][0].shape[1], dtype=torch.uint8)
    audio = torch.zeros(b, t, videos[0][1].shape[1], dtype=torch.uint8)
    mask = torch.zeros(b, t)
    for i, (r, a) in enumerate(videos):
        rgb[i, :len(r)], audio[i, :len(a)], mask[i, :len(r)] = torch.from_numpy(r), torch.from_numpy(a), 1
    return loaded.predict(rgb, audio, mask).numpy()


@pytest.fixture
def small_model(tmp_path):
    params = random_params(SMALL)
    path = write_pdparams(params, str(tmp_path / "NEXTVLAD.pdparams"))
    converted = convert_file(path, str(tmp_path / "model"), _vocab(SMALL.num_classes))
    return params, converted


def test_converted_model_computes_paddles_probabilities_on_ragged_batches(small_model):
    params, converted = small_model
    loaded = load_for_inference(converted.folder)
    loaded.max_frames = 300
    videos = _ragged_videos(SMALL, [1, 2, 7, 30, 151, 300])
    ours = _ours(loaded, videos)
    for i, (rgb, audio) in enumerate(videos):
        expected = paddle_probabilities(params, rgb, audio, SMALL)
        np.testing.assert_allclose(ours[i], expected, atol=1e-4, rtol=0, err_msg=f"video {i}")
    # Padding frames never change a result: the same videos alone and padded further.
    alone = np.concatenate([_ours(loaded, [v]) for v in videos])
    padded = _ours(loaded, videos, pad_to=320)
    np.testing.assert_allclose(alone, ours, atol=1e-6, rtol=0)
    np.testing.assert_allclose(padded, ours, atol=1e-6, rtol=0)


def test_conversion_records_where_the_model_came_from(small_model, tmp_path):
    _, converted = small_model
    ckpt = Checkpoint.load(converted.folder)
    assert ckpt.representation == OFFICIAL
    assert ckpt.training is None
    assert ckpt.origin["converted_from"] == "paddle"
    assert ckpt.origin["sha256"] == converted.sha256 and len(converted.sha256) == 64
    assert ckpt.config.audio_clusters == SMALL.clusters and ckpt.config.audio_groups == SMALL.groups
    summary = json.loads(open(os.path.join(converted.folder, "config.json")).read())
    assert summary["paddle_layout"]["clusters"] == SMALL.clusters
    assert Vocabulary.load(os.path.join(converted.folder, "vocabulary.csv")).names[3] == "class 3"


def test_python2_pickles_load(tmp_path):
    """Python 2's cPickle writes arrays' bytes as str; latin1 restores them exactly."""
    params = random_params(SMALL)
    path = write_python2_pdparams(params, str(tmp_path / "py2.pdparams"))
    with pytest.raises(UnicodeDecodeError):  # what a plain pickle.load does with it
        pickle.load(open(path, "rb"))
    loaded = load_pdparams(path)
    for name, value in params.items():
        np.testing.assert_array_equal(loaded[name], value)


class _Boom:
    def __reduce__(self):
        return (os.system, ("echo pwned > pwned.txt",))


@pytest.mark.parametrize("case", ["missing", "extra", "shape", "truncated", "callable", "not-dict",
                                  "object-array", "input-size"])
def test_bad_files_are_refused_with_exit_2_naming_the_file(tmp_path, case):
    params = random_params(SMALL)
    path = str(tmp_path / f"{case}.pdparams")
    if case == "missing":
        del params["batch_norm_3.w_2"]
    elif case == "extra":
        params["video_something_else"] = np.zeros(3, np.float32)
    elif case == "shape":
        params["gating_fc2_weights"] = np.zeros((4, 13), np.float32)
    elif case == "input-size":
        params["video_fc_expansion_w"] = np.zeros((512, 1024), np.float32)
    elif case == "callable":
        params["eigen_param"] = _Boom()
    elif case == "not-dict":
        params = list(params.values())
    elif case == "object-array":
        params["eigen_param"] = np.array([1, "x"], dtype=object)
    write_pdparams(params, path)
    if case == "truncated":
        data = open(path, "rb").read()
        open(path, "wb").write(data[:len(data) // 2])
    result = run_pipeline("convert-checkpoint", "--from", "paddle", path, "--out",
                          str(tmp_path / "out"), "--vocabulary", _vocab_file(tmp_path, 7))
    assert result.returncode == 2, result.stderr
    assert path in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "out").exists() and not (tmp_path / "pwned.txt").exists()
    expected = {"missing": "missing batch_norm_3.w_2", "extra": "unexpected video_something_else",
                "shape": "gating_fc2_weights has shape (4, 13)", "truncated": "truncated",
                "callable": "posix.system", "not-dict": "not named parameters",
                "object-array": "not a plain number type", "input-size": "512-d rgb"}[case]
    assert expected in result.stderr


def _vocab_file(tmp_path, n: int) -> str:
    _vocab(n).save(str(tmp_path))
    return str(tmp_path / "vocabulary.csv")


def test_convert_checkpoint_command_then_classify_ready_model(tmp_path):
    path = write_pdparams(random_params(SMALL), str(tmp_path / "NEXTVLAD.pdparams"))
    out = tmp_path / "converted"
    result = run_pipeline("convert-checkpoint", "--from", "paddle", path, "--out", str(out),
                          "--vocabulary", _vocab_file(tmp_path, 7))
    assert result.returncode == 0, result.stderr
    assert (out / "checkpoint.pt").exists() and (out / "config.json").exists()
    # Converting again replaces the folder whole.
    again = run_pipeline("convert-checkpoint", "--from", "paddle", path, "--out", str(out),
                         "--vocabulary", _vocab_file(tmp_path, 7))
    assert again.returncode == 0, again.stderr
    assert sorted(os.listdir(tmp_path)) == sorted(["NEXTVLAD.pdparams", "converted", "vocabulary.csv"])


def test_wrong_vocabulary_size_is_refused(tmp_path):
    path = write_pdparams(random_params(SMALL), str(tmp_path / "NEXTVLAD.pdparams"))
    with pytest.raises(UsageError, match="7 classes"):
        convert_file(path, str(tmp_path / "m"), _vocab(5))


def test_published_layout_is_required_for_the_download(tmp_path):
    path = write_pdparams(random_params(SMALL), str(tmp_path / "NEXTVLAD.pdparams"))
    with pytest.raises(UsageError, match="missing|shape"):
        convert_file(path, str(tmp_path / "m"), _vocab(7), require=PaddleLayout())


@pytest.mark.slow
def test_published_size_layout_converts_and_matches_paddle(tmp_path):
    """The real file's layout (K=128, G=8 for both streams, H=2048, 3862 classes), random values."""
    layout = PaddleLayout()
    params = random_params(layout, seed=3)
    assert sum(v.size for v in params.values()) * 4 / 2**20 == pytest.approx(341, rel=0.01)  # MiB
    path = write_pdparams(params, str(tmp_path / "NEXTVLAD.pdparams"))
    converted = convert_file(path, str(tmp_path / "model"), Vocabulary.official_unnamed(),
                             require=layout)
    loaded = load_for_inference(converted.folder)
    videos = _ragged_videos(layout, [1, 300, 45])
    ours = _ours(loaded, videos)
    for i, (rgb, audio) in enumerate(videos):
        np.testing.assert_allclose(ours[i], paddle_probabilities(params, rgb, audio, layout),
                                   atol=1e-4, rtol=0, err_msg=f"video {i}")


def test_restricted_unpickler_refuses_before_anything_runs(tmp_path):
    path = tmp_path / "evil.pdparams"
    path.write_bytes(pickle.dumps({"eigen_param": _Boom()}, protocol=2))
    with pytest.raises(UsageError, match="refused"):
        load_pdparams(str(path))
    assert not (tmp_path / "pwned.txt").exists() and not os.path.exists("pwned.txt")
