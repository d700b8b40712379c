"""PaddlePaddle NeXtVLAD checkpoints (`.pdparams`) with Paddle's parameter names and
shapes and random values."""
from __future__ import annotations

import pickle

import numpy as np

from model.apps.paddle_nextvlad import PaddleLayout


def random_params(layout: PaddleLayout, seed: int = 0) -> dict[str, np.ndarray]:
    """Random parameters with Paddle's names and shapes, scaled like trained ones
    (fan-in-scaled weights, positive variances, eigen_param like sqrt(eigenvalues))."""
    rng = np.random.default_rng(seed)
    params = {}
    for name, shape in layout.expected_shapes().items():
        if name.startswith("batch_norm_"):
            kind = name.rsplit(".", 1)[1]
            value = {"w_0": rng.uniform(0.5, 1.5, shape), "b_0": rng.normal(0, 0.1, shape),
                     "w_1": rng.normal(0, 0.1, shape), "w_2": rng.uniform(0.05, 0.5, shape)}[kind]
        elif name == "eigen_param":
            value = np.sqrt(np.sort(rng.uniform(0.01, 10.0, shape))[::-1]) + 1e-4
        elif len(shape) == 1:
            value = rng.normal(0, 0.1, shape)
        else:
            value = rng.normal(0, 1.0 / np.sqrt(shape[0]), shape)
        params[name] = value.astype(np.float32)
    return params


def write_pdparams(params: dict, path: str, protocol: int = 2) -> str:
    """As fluid.save writes `.pdparams`: a pickled {name: ndarray} (protocol 2)."""
    with open(path, "wb") as f:
        pickle.dump(params, f, protocol=protocol)
    return path
