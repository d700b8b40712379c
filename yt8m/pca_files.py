"""The PCA parameter files as both stages see them: their published names, and the
identity a shard records for the parameters in a folder (the published names, or the
fitted files' fingerprints). Extraction loads and fits them (extract/pca.py); training
checks --reverse-whitening's eigenvalues against the shards' identity with this alone."""
from __future__ import annotations

import hashlib
import os

RGB_FILES = ("mean.npy", "eigenvals.npy", "eigenvecs.npy")
AUDIO_NPZ = "vggish_pca_params.npz"
AUDIO_PTH = "vggish_pca_params-970ea276.pth"
FITTED_MARKER = "FITTED.json"
PUBLISHED_RGB = "yt8m_pca"
PUBLISHED_AUDIO = "vggish_pca_params"


def sha256_files(paths: list[str]) -> str:
    digest = hashlib.sha256()
    for p in paths:
        with open(p, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def audio_file(pca_dir: str) -> str | None:
    """The audio PCA file in `pca_dir`: the AudioSet release's, else the PyTorch port's."""
    for name in (AUDIO_NPZ, AUDIO_PTH):
        if os.path.isfile(os.path.join(pca_dir, name)):
            return os.path.join(pca_dir, name)
    return None


def identities(pca_dir: str, audio_path: str | None = None) -> tuple[str, str]:
    """What shards record as rgb_pca / audio_pca for the parameters in `pca_dir`: the
    published names, or the fitted files' fingerprints."""
    if os.path.isfile(os.path.join(pca_dir, FITTED_MARKER)):
        return fingerprints(pca_dir, audio_path)
    return PUBLISHED_RGB, PUBLISHED_AUDIO


def fingerprints(pca_dir: str, audio_path: str | None = None) -> tuple[str, str]:
    """("fitted:<sha256[:12]>", ...) of the visual files and of the audio file."""
    audio_path = audio_path or audio_file(pca_dir) or os.path.join(pca_dir, AUDIO_NPZ)
    rgb = sha256_files([os.path.join(pca_dir, n) for n in RGB_FILES])
    audio = sha256_files([audio_path])
    return f"fitted:{rgb[:12]}", f"fitted:{audio[:12]}"
