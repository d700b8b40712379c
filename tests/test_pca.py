"""PCA: the published formulas on random parameters, and fit_pca -> load_pca round trips."""
import json
import os
import shutil

import numpy as np
import pytest
import torch

from extract import pca
from yt8m.errors import UsageError


def write_published_like(d, rng, column_shapes=True):
    """Random parameters in yt8m_pca.tgz's layout (+ a VGGish npz)."""
    mean = rng.standard_normal(2048).astype(np.float32)
    vals = rng.uniform(0.01, 2.0, 2048).astype(np.float32)
    vecs = rng.standard_normal((2048, 2048)).astype(np.float32) / 45
    np.save(d / "mean.npy", mean[:, None] if column_shapes else mean)
    np.save(d / "eigenvals.npy", vals[:, None] if column_shapes else vals)
    np.save(d / "eigenvecs.npy", vecs)
    a_vecs = rng.standard_normal((128, 128)).astype(np.float32) / 11
    a_means = rng.standard_normal(128).astype(np.float32)
    np.savez(d / "vggish_pca_params.npz", pca_eigen_vectors=a_vecs,
             pca_means=a_means[:, None] if column_shapes else a_means)
    return mean, vals, vecs, a_vecs, a_means


@pytest.mark.parametrize("column_shapes", [True, False])
def test_apply_matches_published_formulas(tmp_path, column_shapes):
    rng = np.random.default_rng(0)
    mean, vals, vecs, a_vecs, a_means = write_published_like(tmp_path, rng, column_shapes)
    params = pca.load_pca(str(tmp_path))
    assert params.rgb.identity == "yt8m_pca" and params.audio.identity == "vggish_pca_params"
    assert not params.fitted

    x = rng.standard_normal((5, 2048)).astype(np.float32) + mean
    # Google's feature_extractor.py: eigenvecs.T[:, :1024], eigenvals[:1024], + 1e-4.
    want = ((x.astype(np.float64) - mean) @ vecs.T[:, :1024].astype(np.float64)) \
        / np.sqrt(vals[:1024].astype(np.float64) + 1e-4)
    got = pca.apply_rgb_pca(params, x)
    assert got.dtype == np.float32 and got.shape == (5, 1024)
    assert np.allclose(got, want, rtol=1e-4, atol=1e-4)

    a = rng.standard_normal((7, 128)).astype(np.float32)
    # vggish_postprocess.py: dot(pca_eigen_vectors, (x.T - pca_means)).T
    want_a = (a_vecs.astype(np.float64) @ (a.T - a_means[:, None])).T
    got_a = pca.apply_audio_pca(params, a)
    assert got_a.dtype == np.float32 and got_a.shape == (7, 128)
    assert np.allclose(got_a, want_a, rtol=1e-4, atol=1e-4)

    # torch in -> torch out, same numbers.
    t = pca.apply_rgb_pca(params, torch.from_numpy(x))
    assert isinstance(t, torch.Tensor) and torch.allclose(t, torch.from_numpy(got), atol=1e-4)
    ta = pca.apply_audio_pca(params, torch.from_numpy(a))
    assert torch.allclose(ta, torch.from_numpy(got_a), atol=1e-4)


def test_pytorch_port_audio_file_is_accepted(tmp_path):
    rng = np.random.default_rng(1)
    _, _, _, a_vecs, a_means = write_published_like(tmp_path, rng)
    os.remove(tmp_path / "vggish_pca_params.npz")
    # The port stores the AudioSet arrays as NumPy arrays in a torch pickle.
    torch.save({"pca_eigen_vectors": a_vecs.astype(np.float64),
                "pca_means": a_means.astype(np.float64)},
               tmp_path / "vggish_pca_params-970ea276.pth")
    params = pca.load_pca(str(tmp_path))
    a = rng.standard_normal((3, 128)).astype(np.float32)
    assert np.allclose(params.audio.apply(a), (a - a_means) @ a_vecs.T, atol=1e-4)
    assert params.audio.identity == "vggish_pca_params"


def test_numpy1_pickled_port_file_is_accepted(tmp_path):
    """The port's .pth predates NumPy 2: its pickle names numpy.core.multiarray."""
    import zipfile
    rng = np.random.default_rng(8)
    _, _, _, a_vecs, a_means = write_published_like(tmp_path, rng)
    os.remove(tmp_path / "vggish_pca_params.npz")
    modern = tmp_path / "modern.pth"
    torch.save({"pca_eigen_vectors": a_vecs, "pca_means": a_means}, modern)
    old = tmp_path / "vggish_pca_params-970ea276.pth"
    with zipfile.ZipFile(modern) as src, zipfile.ZipFile(old, "w") as dst:
        for info in src.infolist():
            data = src.read(info)
            if info.filename.endswith("data.pkl"):
                assert b"cnumpy._core.multiarray\n" in data
                data = data.replace(b"cnumpy._core.multiarray\n", b"cnumpy.core.multiarray\n")
            dst.writestr(info, data)
    os.remove(modern)
    params = pca.load_pca(str(tmp_path))
    a = rng.standard_normal((3, 128)).astype(np.float32)
    assert np.allclose(params.audio.apply(a), (a - a_means) @ a_vecs.T, atol=1e-4)


def test_missing_files_name_exact_files_and_where(tmp_path):
    np.save(tmp_path / "mean.npy", np.zeros((2048, 1), np.float32))
    with pytest.raises(UsageError) as e:
        pca.load_pca(str(tmp_path))
    msg = str(e.value)
    for name in ("eigenvals.npy", "eigenvecs.npy", "vggish_pca_params.npz"):
        assert name in msg
    assert "missing in " + str(tmp_path) + ": eigenvals.npy" in msg
    assert "python pipeline.py download" in msg and "fit-pca" in msg


def test_wrong_shape_is_a_usage_error(tmp_path):
    write_published_like(tmp_path, np.random.default_rng(2))
    np.save(tmp_path / "eigenvecs.npy", np.zeros((2048, 1024), np.float32))
    with pytest.raises(UsageError, match="eigenvecs.npy"):
        pca.load_pca(str(tmp_path))


def correlated(rng, n, d, scale):
    """n samples in d dims with a non-diagonal covariance (per-axis `scale`, then a
    random orthogonal mixing: a signed, permuted Sylvester-Hadamard matrix; d is a
    power of two) and a non-zero mean."""
    hadamard = np.ones((1, 1))
    while hadamard.shape[0] < d:
        hadamard = np.block([[hadamard, hadamard], [hadamard, -hadamard]])
    mixing = hadamard[rng.permutation(d)] * rng.choice([-1.0, 1.0], d) / np.sqrt(d)
    return (rng.standard_normal((n, d)) * scale) @ mixing + rng.standard_normal(d)


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    rng = np.random.default_rng(3)
    rgb = correlated(rng, 2600, 2048, np.linspace(3.0, 0.5, 2048)).astype(np.float32)
    audio = correlated(rng, 400, 128, np.linspace(2.0, 0.5, 128)).astype(np.float32)
    out = tmp_path_factory.mktemp("pca_params")
    meta = pca.fit_pca(rgb, audio, str(out))
    return rgb, audio, out, meta


def test_fit_writes_published_layout(fitted):
    _, _, out, meta = fitted
    assert np.load(out / "mean.npy").shape == (2048, 1)
    assert np.load(out / "eigenvals.npy").shape == (2048, 1)
    assert np.load(out / "eigenvecs.npy").shape == (2048, 2048)
    with np.load(out / "vggish_pca_params.npz") as z:
        assert z["pca_eigen_vectors"].shape == (128, 128) and z["pca_means"].shape == (128,)
    on_disk = json.loads((out / "FITTED.json").read_text())
    assert on_disk == meta and meta["rgb_components"] == 1024 and meta["audio_components"] == 128
    assert not [p for p in os.listdir(out) if "partial" in p]


def test_fit_round_trip_whitens_fitting_data(fitted):
    rgb, audio, out, meta = fitted
    params = pca.load_pca(str(out))
    assert params.fitted
    assert params.rgb.identity == meta["rgb_pca"] and params.rgb.identity.startswith("fitted:")
    assert params.audio.identity == meta["audio_pca"] and len(meta["audio_pca"]) == 7 + 12
    r = pca.apply_rgb_pca(params, rgb).astype(np.float64)
    assert np.abs(r.mean(axis=0)).max() < 1e-3
    assert np.allclose(r.var(axis=0, ddof=1), 1.0, atol=2e-3)
    # Whitened components are uncorrelated too.
    cov = np.cov(r[:, :64], rowvar=False)
    assert np.abs(cov - np.eye(64)).max() < 5e-3
    a = pca.apply_audio_pca(params, audio).astype(np.float64)
    assert np.abs(a.mean(axis=0)).max() < 1e-3
    assert np.allclose(a.var(axis=0, ddof=1), 1.0, atol=2e-3)


def test_fingerprint_changes_with_the_data(tmp_path):
    rng = np.random.default_rng(5)
    rgb = rng.standard_normal((40, 2048)).astype(np.float32)
    audio = rng.standard_normal((20, 128)).astype(np.float32)
    first = pca.fit_pca(rgb, audio, str(tmp_path / "a"))
    again = pca.fit_pca(rgb, audio, str(tmp_path / "b"))
    other = pca.fit_pca(rgb[:30], audio[:15], str(tmp_path / "c"))
    assert first["rgb_pca"] == again["rgb_pca"] and first["audio_pca"] == again["audio_pca"]
    assert other["rgb_pca"] != first["rgb_pca"] and other["audio_pca"] != first["audio_pca"]


def test_fit_with_fewer_frames_than_components_zero_pads(tmp_path):
    """60 frames span 59 directions: outputs 59..1023 are exactly 0 (the quantized zero)."""
    rng = np.random.default_rng(4)
    rgb = correlated(rng, 60, 2048, 1.0).astype(np.float32)
    audio = correlated(rng, 30, 128, 1.0).astype(np.float32)
    meta = pca.fit_pca(rgb, audio, str(tmp_path))
    assert meta["rgb_components"] == 59 and meta["audio_components"] == 29
    params = pca.load_pca(str(tmp_path))
    r = pca.apply_rgb_pca(params, rgb)
    assert np.all(np.isfinite(r)) and np.all(r[:, 59:] == 0)
    assert np.allclose(r[:, :59].var(axis=0, ddof=1), 1.0, atol=1e-2)
    a = pca.apply_audio_pca(params, audio)
    assert np.all(a[:, 29:] == 0) and np.allclose(a[:, :29].var(axis=0, ddof=1), 1.0, atol=1e-2)


def test_fit_refuses_too_little_data(tmp_path):
    with pytest.raises(UsageError, match="at least 2 visual frames"):
        pca.fit_pca(np.zeros((1, 2048)), np.zeros((5, 128)), str(tmp_path))
    with pytest.raises(UsageError, match="audio vectors must be"):
        pca.fit_pca(np.zeros((5, 2048)), np.zeros((5, 127)), str(tmp_path))


def test_fit_on_silent_videos_gives_zero_audio(tmp_path):
    rng = np.random.default_rng(7)
    meta = pca.fit_pca(rng.standard_normal((10, 2048)), np.zeros((0, 128)), str(tmp_path))
    assert meta["audio_components"] == 0 and meta["audio_vectors"] == 0
    params = pca.load_pca(str(tmp_path))
    out = pca.apply_audio_pca(params, rng.standard_normal((4, 128)))
    assert np.all(out == 0)


def test_a_fitted_set_mixed_with_other_files_is_refused(tmp_path):
    """FITTED.json is written last with the set's fingerprints: files replaced after it (a
    fit stopped while writing, a file copied in by hand) are not used."""
    rng = np.random.default_rng(8)
    rgb, audio = rng.standard_normal((40, 2048)), rng.standard_normal((20, 128))
    for name in ("a", "b"):
        pca.fit_pca(rgb[:30] if name == "b" else rgb, audio[:15] if name == "b" else audio,
                    str(tmp_path / name))
    pca.load_pca(str(tmp_path / "a"))  # the set as written is fine
    for copied, differs in [("eigenvecs.npy", "rgb_pca"), ("vggish_pca_params.npz", "audio_pca")]:
        shutil.copy(tmp_path / "b" / copied, tmp_path / "a" / copied)
        with pytest.raises(UsageError, match=f"not the set FITTED.json was written for "
                                             f"\\(.*{differs}"):
            pca.load_pca(str(tmp_path / "a"))
