"""PCA + whitening of both streams (docs/reference.md, "Representation"), with the published parameters
or ones fitted on a user's own videos.

Visual (YouTube-8M `yt8m_pca.tgz`): `mean.npy` (2048, 1), `eigenvals.npy` (2048, 1),
`eigenvecs.npy` (2048, 2048) with one eigenvector per ROW (Google's extractor
transposes it: `eigenvecs.T[:, :1024]`; that transposed matrix is the reference's
`eigenvecs`). Applied as

    ((x - mean) @ eigenvecs.T[:, :1024]) / sqrt(eigenvals[:1024] + 1e-4)

Audio (AudioSet `vggish_pca_params.npz`, or the PyTorch port's
`vggish_pca_params-970ea276.pth`): `pca_eigen_vectors` (128, 128), one whitened
eigenvector per row, and `pca_means` (128,) or (128, 1); applied as
`(x - pca_means) @ pca_eigen_vectors.T` (vggish_postprocess.py).

`apply_rgb_pca` / `apply_audio_pca` take NumPy arrays (-> NumPy) or torch tensors
(-> torch, on the input's device), always computing in float32.

`fit_pca` writes the same layout plus `FITTED.json`; fitted parameters are
identified as "fitted:<sha256[:12]>" so shards made with them never mix with
shards made with the published ones. With fewer frames than output dimensions
(< 1024 visual, < 128 audio) the missing components are written as zero
eigenvectors with eigenvalue 0: those output coordinates are always 0 (the
quantized zero), and FITTED.json records how many components are real. Silent
videos only (< 2 audio vectors) give an all-zero audio PCA the same way.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from yt8m.assets import DEFAULT_PCA_DIR, DOWNLOAD_HINT, Asset, missing_message
from yt8m.atomic import replacing, write_json
from yt8m.errors import UsageError
from yt8m.pca_files import (
    AUDIO_NPZ,
    AUDIO_PTH,
    FITTED_MARKER,
    PUBLISHED_AUDIO,
    PUBLISHED_RGB,
    RGB_FILES,
    audio_file,
    fingerprints,
    identities,
)
from yt8m.representation import AUDIO_DIM, INCEPTION_DIM, RGB_DIM
from yt8m.safe_pickle import ArrayBudget, scan_torch_file

EIGENVAL_EPS = 1e-4

# The published files, next to their loaders (as inception.py and vggish.py keep theirs);
# their structure check is loading them.
YT8M_PCA = Asset(  # data.yt8m.org serves it as published (no Git history to pin)
    filename="yt8m_pca.tgz",
    url="http://data.yt8m.org/yt8m_pca.tgz",
    description="YouTube-8M visual PCA (Inception pool_3 2048 -> 1024)",
    members=RGB_FILES,
    check=lambda folder: load_rgb_pca(folder) and None,
)
VGGISH_PCA = Asset(
    filename=AUDIO_NPZ,
    url=f"https://storage.googleapis.com/audioset/{AUDIO_NPZ}",
    description="AudioSet VGGish PCA + whitening (128 -> 128)",
    accepted=(AUDIO_PTH,),
    check=lambda path: load_audio_pca(path) and None,
)
VGGISH_PCA_TORCH = Asset(  # accepted in place of VGGISH_PCA; not downloaded by default
    filename=AUDIO_PTH,
    url=f"https://github.com/harritaylor/torchvggish/releases/download/v0.1/{AUDIO_PTH}",
    sha256="970ea276",
    description="VGGish PCA parameters, PyTorch port",
)
PCA_ASSETS = (YT8M_PCA, VGGISH_PCA)


@dataclass
class RgbPCA:
    """Visual PCA, already cut to the 1024 output dimensions."""

    mean: np.ndarray  # float32 [2048]
    components: np.ndarray  # float32 [2048, 1024]: eigenvecs.T[:, :1024]
    scale: np.ndarray  # float32 [1024]: 1 / sqrt(eigenvals[:1024] + 1e-4)
    identity: str = PUBLISHED_RGB
    _torch: dict = field(default_factory=dict, repr=False, compare=False)

    def apply(self, feats: Any) -> Any:
        """[N, 2048] pool_3 -> [N, 1024] whitened float32 (NumPy or torch in, same out)."""
        return _project(self, feats, self.mean, self.components, self.scale)


@dataclass
class AudioPCA:
    means: np.ndarray  # float32 [128]
    components: np.ndarray  # float32 [128, 128]: pca_eigen_vectors.T
    identity: str = PUBLISHED_AUDIO
    _torch: dict = field(default_factory=dict, repr=False, compare=False)

    def apply(self, feats: Any) -> Any:
        """[N, 128] VGGish fc2 -> [N, 128] float32 (NumPy or torch in, same out)."""
        return _project(self, feats, self.means, self.components, None)


@dataclass
class PCAParams:
    rgb: RgbPCA
    audio: AudioPCA
    directory: str = ""
    fitted: bool = False


def _project(owner: RgbPCA | AudioPCA, feats: Any, mean: np.ndarray, components: np.ndarray,
             scale: np.ndarray | None) -> Any:
    if hasattr(feats, "detach"):  # torch: keep the work on the tensor's device
        import torch
        key = str(feats.device)
        if key not in owner._torch:
            owner._torch[key] = tuple(None if a is None else torch.from_numpy(a).to(feats.device)
                                      for a in (mean, components, scale))
        m, c, s = owner._torch[key]
        out = (feats.float() - m) @ c
        return out * s if s is not None else out
    x = np.asarray(feats, dtype=np.float32)
    out = (x - mean) @ components
    return out * scale if scale is not None else out


def apply_rgb_pca(params: PCAParams, feats2048: Any) -> Any:
    """[N, 2048] -> float32 [N, 1024]; see RgbPCA.apply."""
    return params.rgb.apply(feats2048)


def apply_audio_pca(params: PCAParams, feats128: Any) -> Any:
    """[N, 128] -> float32 [N, 128]; see AudioPCA.apply."""
    return params.audio.apply(feats128)


def pca_missing_message(pca_dir: str, names: list[str]) -> str:
    """What `load_pca` says when files are missing: the published files, and fit-pca."""
    return (f"PCA parameters missing in {pca_dir}: {', '.join(names)}.\n"
            + missing_message(PCA_ASSETS, [pca_dir])
            + f"\nOr fit your own with `python pipeline.py fit-pca --videos DIR` "
              f"(`{DOWNLOAD_HINT}` puts the published ones in {DEFAULT_PCA_DIR}/ by default; "
              "pass --pca-dir to use another folder).")


def _missing(pca_dir: str, names: list[str]) -> UsageError:
    return UsageError(pca_missing_message(pca_dir, names))


def _column(a: np.ndarray, path: str, length: int) -> np.ndarray:
    """(n,) or (n, 1) -> float32 (n,); n must be >= length."""
    if a.ndim == 2 and a.shape[1] == 1:
        a = a[:, 0]
    if a.ndim != 1 or a.shape[0] < length:
        raise UsageError(f"{path}: shape {a.shape}, expected ({length},) or ({length}, 1)")
    return a.astype(np.float32)


def _load_npy(path: str) -> np.ndarray:
    try:
        return np.load(path, allow_pickle=False)
    except (OSError, ValueError) as e:
        raise UsageError(f"{path}: not a readable .npy file ({e}); download it again or "
                         "re-run fit-pca") from None


def load_rgb_pca(pca_dir: str, identity: str = PUBLISHED_RGB) -> RgbPCA:
    paths = [os.path.join(pca_dir, n) for n in RGB_FILES]
    mean = _column(_load_npy(paths[0]), paths[0], INCEPTION_DIM)[:INCEPTION_DIM]
    eigenvals = _column(_load_npy(paths[1]), paths[1], RGB_DIM)[:RGB_DIM]
    vecs = _load_npy(paths[2])
    if vecs.ndim != 2 or vecs.shape[1] != INCEPTION_DIM or vecs.shape[0] < RGB_DIM:
        raise UsageError(f"{paths[2]}: shape {vecs.shape}, expected (2048, 2048) "
                         "(one eigenvector per row, as in yt8m_pca.tgz)")
    components = np.ascontiguousarray(vecs[:RGB_DIM].T, dtype=np.float32)
    # Eigenvalues of the padding (fitted on few frames) are 0 and stay finite here.
    scale = (1.0 / np.sqrt(np.maximum(eigenvals, 0.0) + EIGENVAL_EPS)).astype(np.float32)
    return RgbPCA(mean, components, scale, identity)


def _load_audio_arrays(path: str) -> tuple[np.ndarray, np.ndarray]:
    if path.endswith(".npz"):
        try:
            with np.load(path, allow_pickle=False) as z:
                return np.asarray(z["pca_eigen_vectors"]), np.asarray(z["pca_means"])
        except (OSError, ValueError, KeyError) as e:
            raise UsageError(f"{path}: not a VGGish PCA file with pca_eigen_vectors and "
                             f"pca_means ({e})") from None
    import torch
    # The port pickles NumPy arrays: allow exactly those, each checked before it is built,
    # after a pass that bounds the pickle's nesting (yt8m/safe_pickle.py).
    try:
        budget = ArrayBudget(os.path.getsize(path))
        scan_torch_file(path)
        with torch.serialization.safe_globals(budget.torch_safe_globals()):
            state = torch.load(path, map_location="cpu", weights_only=True)
        return (np.asarray(state["pca_eigen_vectors"], dtype=np.float64),
                np.asarray(state["pca_means"], dtype=np.float64))
    except Exception as e:  # noqa: BLE001 - any unreadable file is the user's to fix
        raise UsageError(f"{path}: not a readable VGGish PCA file ({e}); use {AUDIO_NPZ} "
                         "instead") from None


def load_audio_pca(path: str, identity: str = PUBLISHED_AUDIO) -> AudioPCA:
    vecs, means = _load_audio_arrays(path)
    if vecs.shape != (AUDIO_DIM, AUDIO_DIM):
        raise UsageError(f"{path}: pca_eigen_vectors has shape {vecs.shape}, expected (128, 128)")
    means = _column(np.asarray(means), path, AUDIO_DIM)
    return AudioPCA(means, np.ascontiguousarray(vecs.T, dtype=np.float32), identity)


def load_pca(pca_dir: str) -> PCAParams:
    """Both streams' PCA from `pca_dir` (default pca_params/). UsageError when missing."""
    missing = [n for n in RGB_FILES if not os.path.isfile(os.path.join(pca_dir, n))]
    audio_path = audio_file(pca_dir)
    if audio_path is None:
        missing.append(AUDIO_NPZ)
    if missing:
        raise _missing(pca_dir, missing)
    rgb_id, audio_id = identities(pca_dir, audio_path)
    fitted = os.path.isfile(os.path.join(pca_dir, FITTED_MARKER))
    if fitted:
        _check_one_set(pca_dir, rgb_id, audio_id)
    return PCAParams(load_rgb_pca(pca_dir, rgb_id), load_audio_pca(audio_path, audio_id),
                     directory=pca_dir, fitted=fitted)


def _check_one_set(pca_dir: str, rgb_id: str, audio_id: str) -> None:
    """Fitted files are one set: those FITTED.json was written for (fit-pca writes it
    last). Files replaced since (a fit-pca stopped mid-way, files copied in by hand)
    would make features no recorded identity describes."""
    path = os.path.join(pca_dir, FITTED_MARKER)
    try:
        with open(path, encoding="utf-8") as f:
            recorded = json.load(f)
    except (OSError, ValueError) as e:
        raise UsageError(f"{path}: unreadable ({e}); run fit-pca again into {pca_dir}") from None
    have = {"rgb_pca": rgb_id, "audio_pca": audio_id}
    changed = [k for k, v in have.items() if recorded.get(k, v) != v]
    if changed:
        raise UsageError(f"{pca_dir}: the PCA files are not the set {FITTED_MARKER} was written "
                         f"for ({', '.join(changed)} differ: a fit-pca stopped while writing, or "
                         "files replaced by hand). Run fit-pca again into that folder, or pass "
                         "another --pca-dir.")


def _fit_one(x: np.ndarray, n_out: int, n_components_max: int) -> tuple[np.ndarray, np.ndarray,
                                                                        np.ndarray, int]:
    """mean [D], eigenvalues [n_out], eigenvectors as rows [n_out, D] (zero-padded), k real."""
    from sklearn.decomposition import PCA

    x = np.asarray(x, dtype=np.float64)
    n, d = x.shape
    k = min(n_components_max, n - 1 if n > 1 else 0, d)  # n points span n - 1 directions
    vals = np.zeros(n_out)
    vecs = np.zeros((n_out, d))
    mean = x.mean(axis=0) if n else np.zeros(d)
    if k > 0:
        # covariance_eigh: one d x d eigendecomposition, cheap when frames >> dimensions.
        pca = PCA(n_components=k, svd_solver="covariance_eigh" if n >= d else "full")
        pca.fit(x)
        mean = pca.mean_
        vals[:k] = pca.explained_variance_  # variance along each component (ddof=1)
        vecs[:k] = pca.components_
    return mean, vals, vecs, k


def fit_pca(rgb_2048: np.ndarray, audio_128: np.ndarray, out_dir: str) -> dict:
    """Fit visual and audio PCA with whitening and write them in the published layout.

    rgb_2048: [n, 2048] Inception pool_3 frames (n >= 2); audio_128: [m, 128] VGGish fc2
    vectors (m may be < 2 when the videos are silent: the audio PCA is then all zeros,
    so every audio output is the quantized zero, as for a video without sound).
    Writes mean.npy, eigenvals.npy, eigenvecs.npy, vggish_pca_params.npz and, last,
    FITTED.json into `out_dir` (each via a temp name + rename; FITTED.json records the
    set's fingerprints, so `load_pca` refuses a set stopped half-way). One writer at a
    time: the `fit-pca` command holds a lock on `out_dir`. Returns the metadata.
    """
    rgb_2048 = np.asarray(rgb_2048)
    audio_128 = np.asarray(audio_128)
    if rgb_2048.ndim != 2 or rgb_2048.shape[1] != INCEPTION_DIM or len(rgb_2048) < 2:
        raise UsageError(f"fit-pca needs at least 2 visual frames of {INCEPTION_DIM} values, "
                         f"got shape {rgb_2048.shape}")
    if audio_128.ndim != 2 or audio_128.shape[1] != AUDIO_DIM:
        raise UsageError(f"fit-pca: audio vectors must be [n, {AUDIO_DIM}], got shape "
                         f"{audio_128.shape}")
    os.makedirs(out_dir, exist_ok=True)

    # Visual: the published layout keeps all 2048 rows; we fit the 1024 that are used.
    mean, vals, vecs, k_rgb = _fit_one(rgb_2048, INCEPTION_DIM, RGB_DIM)
    _save(out_dir, "mean.npy", mean.astype(np.float32)[:, None])
    _save(out_dir, "eigenvals.npy", vals.astype(np.float32)[:, None])
    _save(out_dir, "eigenvecs.npy", vecs.astype(np.float32))

    # Audio: VGGish's file stores whitened eigenvectors (rows / sqrt(eigenvalue)).
    a_mean, a_vals, a_vecs, k_audio = _fit_one(audio_128, AUDIO_DIM, AUDIO_DIM)
    whitened = np.zeros_like(a_vecs)
    whitened[:k_audio] = a_vecs[:k_audio] / np.sqrt(a_vals[:k_audio, None] + EIGENVAL_EPS)
    with replacing(os.path.join(out_dir, AUDIO_NPZ), "wb") as f:
        np.savez(f, pca_eigen_vectors=whitened.astype(np.float32),
                 pca_means=a_mean.astype(np.float32))

    rgb_id, audio_id = fingerprints(out_dir, os.path.join(out_dir, AUDIO_NPZ))
    meta = {"fitted": True, "rgb_pca": rgb_id, "audio_pca": audio_id,
            "rgb_frames": int(len(rgb_2048)), "audio_vectors": int(len(audio_128)),
            "rgb_components": int(k_rgb), "audio_components": int(k_audio),
            "note": "components beyond *_components are zero: those outputs are always 0"}
    write_json(os.path.join(out_dir, FITTED_MARKER), meta, indent=2)
    return meta


def _save(out_dir: str, name: str, array: np.ndarray) -> None:
    with replacing(os.path.join(out_dir, name), "wb") as f:
        np.save(f, array)
