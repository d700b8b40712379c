"""PaddlePaddle's NeXtVLAD inference in NumPy, written from Paddle's program
(PaddleCV/video models/nextvlad: nextvlad.py build_model, nextvlad_model.py,
clf_model.py), not from this toolkit's model. One video at a time, real frames
only (Paddle's LoD sequences have no padding), float64.

Also writes `.pdparams` as Python 2's cPickle did (`write_python2_pdparams`); the
random parameters and Python 3's `.pdparams` come from synthetic/paddle.py.
"""
from __future__ import annotations

import struct

import numpy as np

from model.apps.paddle_nextvlad import PaddleLayout

BN_EPSILON = 1e-5  # fluid.layers.batch_norm's default
L2_EPSILON = 1e-12  # fluid.layers.l2_normalize's default; its norm op adds it: x / sqrt(sum x^2 + eps)


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def _batch_norm(x, p, i):
    """Inference batch norm (is_test=True) over the last axis."""
    scale, bias = p[f"batch_norm_{i}.w_0"], p[f"batch_norm_{i}.b_0"]
    mean, var = p[f"batch_norm_{i}.w_1"], p[f"batch_norm_{i}.w_2"]
    return (x - mean) / np.sqrt(var + BN_EPSILON) * scale + bias


def _nextvlad(x, p, name, clusters, groups, bn):
    """NeXtVLAD.forward for one sequence x [T, N]."""
    x = x @ p[f"{name}_fc_expansion_w"] + p[f"{name}_fc_expansion_b"]  # [T, lambda N]
    attention = _sigmoid(x @ p[f"{name}_fc_group_attention_w"] + p[f"{name}_fc_group_attention_b"])
    feature_size = x.shape[1] // groups
    activation = _batch_norm(x @ p[f"{name}_cluster_weights"], p, bn)  # [T, G K]
    activation = activation.reshape(-1, groups, clusters)
    activation = np.exp(activation - activation.max(-1, keepdims=True))
    activation /= activation.sum(-1, keepdims=True)  # softmax over clusters
    activation = activation * attention[:, :, None]  # elementwise_mul(axis=0)
    a_sum = activation.sum(0).sum(0)  # sequence_pool sum, then reduce_sum over groups: [K]
    a = a_sum[:, None] * p[f"{name}_cluster_weights2"]  # [K, F]
    activation = activation.transpose(0, 2, 1)  # [T, K, G]
    reshaped = x.reshape(-1, groups, feature_size)  # [T, G, F]
    vlad = (activation @ reshaped).sum(0) - a  # [K, F]
    vlad = vlad.T  # [F, K]
    vlad = vlad / np.sqrt((vlad ** 2).sum(0, keepdims=True) + L2_EPSILON)  # l2_normalize(axis=1)
    return _batch_norm(vlad.reshape(-1), p, bn + 1)  # flattened F-major


def paddle_probabilities(p: dict, rgb_q: np.ndarray, audio_q: np.ndarray,
                         layout: PaddleLayout, drop_rate: float = 0.5) -> np.ndarray:
    """One video's uint8 frames (real frames only) -> Paddle's predictions [C]."""
    p = {k: np.asarray(v, np.float64) for k, v in p.items()}
    rgb = rgb_q.astype(np.float64) * (4.0 / 255) - 2.0  # fluid.layers.scale(bias=-2)
    audio = audio_q.astype(np.float64) * (4.0 / 255) - 2.0 + 4.0 / 512
    rgb = rgb * p["eigen_param"]
    vlad = np.concatenate([
        _nextvlad(rgb, p, "video", layout.clusters, layout.groups, 0),
        _nextvlad(audio, p, "audio", layout.clusters, layout.groups, 2)])
    vlad = vlad * (1.0 - drop_rate)  # dropout, downgrade_in_infer, is_test
    activation = _batch_norm(vlad @ p["hidden1_fc_weights"], p, 4)
    gates = np.maximum(_batch_norm(activation @ p["gating_fc1_weights"], p, 5), 0.0)
    gates = _sigmoid(gates @ p["gating_fc2_weights"])
    activation = activation * gates
    return _sigmoid(activation @ p["logits_clf_weights"] + p["logits_clf_bias"])


def _py2_str(data: bytes) -> bytes:
    """A Python 2 `str` (BINSTRING / SHORT_BINSTRING opcode)."""
    if len(data) < 256:
        return b"U" + bytes([len(data)]) + data
    return b"T" + struct.pack("<i", len(data)) + data


def _py2_int(n: int) -> bytes:
    return b"K" + bytes([n]) if 0 <= n < 256 else b"J" + struct.pack("<i", n)


def _py2_array(a: np.ndarray) -> bytes:
    """An ndarray as Python 2's NumPy pickled it: raw bytes as a `str`."""
    a = np.ascontiguousarray(a, dtype="<f4")
    shape = b"(" + b"".join(_py2_int(n) for n in a.shape) + b"t"
    dtype = (b"cnumpy\ndtype\n" + _py2_str(b"f4") + _py2_int(0) + _py2_int(1) + b"\x87R"
             + b"(" + _py2_int(3) + _py2_str(b"<") + b"NNN" + _py2_int(-1) + _py2_int(-1)
             + _py2_int(0) + b"tb")
    return (b"cnumpy.core.multiarray\n_reconstruct\ncnumpy\nndarray\n" + _py2_int(0) + b"\x85"
            + _py2_str(b"b") + b"\x87R" + b"(" + _py2_int(1) + shape + dtype + b"\x89"
            + _py2_str(a.tobytes()) + b"tb")


def write_python2_pdparams(params: dict, path: str) -> str:
    """A `.pdparams` as Python 2's cPickle (protocol 2) wrote it: names and array bytes are
    `str`, which Python 3 reads only with encoding="latin1"."""
    body = b"".join(_py2_str(k.encode()) + _py2_array(v) for k, v in params.items())
    with open(path, "wb") as f:
        f.write(b"\x80\x02}(" + body + b"u.")
    return path
