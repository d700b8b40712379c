import numpy as np

from yt8m.representation import OFFICIAL, QUANTIZED_ZERO, Representation, dequantize, quantize


def test_quantize_follows_spec_formula():
    v = np.array([-5, -2, -1.99, -0.01, 0, 0.01, 1.0, 1.999, 2.0, 7], dtype=np.float32)
    expected = np.floor((np.clip(v, -2, 2) + 2) * 255 / 4).clip(0, 255).astype(np.uint8)
    np.testing.assert_array_equal(quantize(v), expected)
    assert quantize(np.float32([-2.0]))[0] == 0 and quantize(np.float32([2.0]))[0] == 255
    assert QUANTIZED_ZERO == 127


def test_dequantize_is_bin_centre_and_within_one_step():
    q = np.arange(256, dtype=np.uint8)
    v = dequantize(q)
    np.testing.assert_allclose(v, q.astype(np.float64) * 4 / 255 + 4 / 512 - 2, atol=1e-6)
    x = np.random.default_rng(0).uniform(-2, 2, 10000).astype(np.float32)
    assert np.abs(dequantize(quantize(x)) - x).max() <= 4 / 255


def test_dequantize_torch_matches_numpy():
    import torch
    q = np.arange(256, dtype=np.uint8)
    np.testing.assert_allclose(dequantize(torch.from_numpy(q)).numpy(), dequantize(q), atol=1e-6)


def test_representation_differences_ignore_source():
    raw = Representation(source="raw-video")
    assert raw.differences(OFFICIAL) == []
    fitted = Representation(rgb_pca="fitted:abc", random_weights=True)
    diffs = fitted.differences(OFFICIAL)
    assert len(diffs) == 2 and any("rgb_pca" in d for d in diffs)
    assert Representation.from_json(fitted.to_json()) == fitted
