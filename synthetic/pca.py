"""Random PCA parameters in the published layout."""
from __future__ import annotations

import os

import numpy as np


def write_random_pca(d: str, seed: int = 0) -> str:
    """PCA files in the published layout (mean.npy (2048, 1), eigenvals.npy (2048, 1),
    eigenvecs.npy (2048, 2048) one eigenvector per row, vggish_pca_params.npz), random."""
    rng = np.random.default_rng(seed)
    os.makedirs(d, exist_ok=True)
    np.save(os.path.join(d, "mean.npy"), rng.normal(size=(2048, 1)).astype(np.float32))
    np.save(os.path.join(d, "eigenvals.npy"), rng.uniform(0.5, 2, (2048, 1)).astype(np.float32))
    q, _ = np.linalg.qr(rng.normal(size=(2048, 2048)))
    np.save(os.path.join(d, "eigenvecs.npy"), q.T.astype(np.float32))
    np.savez(os.path.join(d, "vggish_pca_params.npz"),
             pca_eigen_vectors=rng.normal(size=(128, 128)).astype(np.float32),
             pca_means=rng.normal(size=(128, 1)).astype(np.float32))
    return d
