"""Opt-in: the whole chain against published reference values, on a machine where
`python pipeline.py download` has put the real assets in place (skipped otherwise).

- the YouTube-8M starter code's PCA test vector (feature_extractor/testdata/
  sports1m_frame.pkl) and its Inception features of a frame (AO7u7fwGzJQ_at_second_0);
- the VGGish reference's smoke test (vggish_smoke_test.py): a 3 s, 1 kHz sine at
  44.1 kHz gives embeddings of mean 0.131 and std 0.238, and post-processed (PCA +
  8-bit) ones of mean 123 and std 75, each within 10 %;
- the published NeXtVLAD, converted: real YouTube-8M labels for a cartoon clip.
"""
from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch

from conftest import ROOT, run_pipeline
from extract.assets import REFERENCE_DATA, reference_dir, resolve_weights
from yt8m.assets import DEFAULT_PCA_DIR
from yt8m.errors import UsageError

PCA_DIR = os.path.join(ROOT, DEFAULT_PCA_DIR)


def _missing() -> str | None:
    try:
        resolve_weights(None, random_weights=False)
        from extract.pca import load_pca
        load_pca(PCA_DIR)
    except UsageError as e:
        return str(e).splitlines()[0]
    absent = [a.filename for a in REFERENCE_DATA
              if not os.path.isfile(os.path.join(reference_dir(), a.filename))]
    return f"reference data not downloaded: {', '.join(absent)}" if absent else None


pytestmark = pytest.mark.skipif(_missing() is not None,
                                reason=f"needs `python pipeline.py download` ({_missing()})")


def _mean_elementwise_difference(a: np.ndarray, b: np.ndarray) -> float:
    """The starter code's measure: |a - b| / (0.01 + max(|a|, |b|)), averaged."""
    return float((np.abs(a - b) / (0.01 + np.maximum(np.abs(a), np.abs(b)))).mean())


@pytest.fixture(scope="module")
def backbones():
    from extract.features import load_backbones
    return load_backbones(pca_dir=PCA_DIR)


def test_starter_code_pca_vector(backbones):
    from model.paddle_nextvlad import load_pdparams  # a restricted unpickler for named arrays

    data = load_pdparams(os.path.join(reference_dir(), "sports1m_frame.pkl"))
    ours = backbones.pca.rgb.apply(data["original"].reshape(1, -1))
    assert _mean_elementwise_difference(ours.reshape(-1), data["pca"].reshape(-1)) < 1e-5


def test_starter_code_inception_features_of_a_frame(backbones):
    from PIL import Image

    from extract.features import inception_pool3

    image = np.array(Image.open(os.path.join(reference_dir(), "AO7u7fwGzJQ_at_second_0.jpg")))
    ours = inception_pool3(backbones, torch.from_numpy(image[None, ..., :3])).cpu().numpy()[0]
    expected = np.array(json.load(open(os.path.join(reference_dir(),
                                                    "AO7u7fwGzJQ_at_second_0_feats.json"))))
    assert _mean_elementwise_difference(ours, expected.reshape(-1)) < 0.1  # the starter's bound


def test_vggish_reference_smoke_test(backbones):
    from extract.features import quantize_audio, vggish_fc2
    from extract.logmel import waveform_to_examples
    from extract.resample import to_mono_16k

    t = np.linspace(0, 3, 3 * 44100)
    wave = to_mono_16k(np.sin(2 * np.pi * 1000 * t), 44100)
    embedding = vggish_fc2(backbones, waveform_to_examples(wave))
    e = embedding.cpu().numpy()
    np.testing.assert_allclose([e.mean(), e.std()], [0.131, 0.238], rtol=0.1)
    q = quantize_audio(backbones, embedding).astype(np.float64)
    np.testing.assert_allclose([q.mean(), q.std()], [123.0, 75.0], rtol=0.1)


def test_published_model_labels_a_cartoon(sample_clips):
    from model.pretrained import pretrained_dir

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
