"""PaddlePaddle's YouTube-8M NeXtVLAD (`NEXTVLAD.pdparams`) as a model of this toolkit.

PaddlePaddle published a NeXtVLAD trained on YouTube-8M 2018 (PaddleCV/video,
`models/nextvlad/`, `configs/nextvlad.yaml`). Its forward pass is ours; what
differs is folded into the converted weights, so the project keeps one
NeXtVLAD (`model/nextvlad.py`):

- Fully connected weights are stored [in, out] (torch: [out, in]).
- Paddle dequantizes rgb as `q * 4/255 - 2` (no half-bin offset; audio has it,
  as ours) and then multiplies rgb by `eigen_param = sqrt(eigenvals[:1024]) + 1e-4`
  (the paper's reverse whitening). Both are affine in the input of the first
  layer: a column scale of `video_fc_expansion_w` and a bias correction.
- The VLAD is flattened feature-major ([F, K]; ours is [K, F]): a permutation of
  the VLAD batch norm's channels and of the rows of `hidden1_fc_weights`.
- The audio stream uses the same K and G as the video stream (recorded as
  `audio_clusters`, `audio_groups`).
- Dropout's default mode in Paddle ("downgrade_in_infer") multiplies by 1 - p at
  inference: a scale of `hidden1_fc_weights`.
- Batch norms are unnamed (`batch_norm_0` ... `batch_norm_5`, in creation order:
  video assignment, video VLAD, audio assignment, audio VLAD, hidden, gating),
  each with scale `w_0`, bias `b_0`, moving mean `w_1`, moving variance `w_2`,
  epsilon 1e-5 (ours too).
Only a video's real frames enter Paddle's sums (LoD sequences); ours masks
padding out of the same sums, so padding never changes a result.

The file is a pickle from the internet: it is read with an unpickler that builds
NumPy arrays and plain containers only, after a pass that bounds its nesting, and
checks each array (name, dimensions, dtype, byte size against the bytes the file
holds) before NumPy allocates it (see `load_pdparams`). No checksum is published,
so the file is then validated by structure: every expected name with its exact
shape, nothing missing, nothing else.
"""
from __future__ import annotations

import os
import pickle
import reprlib
import shutil
import tempfile
from dataclasses import asdict, dataclass

import numpy as np
import torch

from model.architectures.config import ModelConfig, build_model
from model.training.checkpoint import CHECKPOINT, Checkpoint, write_summary
from yt8m.assets import Asset, Weights, sha256_of
from yt8m.errors import UsageError
from yt8m.representation import AUDIO_DIM, OFFICIAL, QUANT_MAX, QUANT_MIN, RGB_DIM
from yt8m.safe_pickle import Refused, Unexpected, load_arrays
from yt8m.vocabulary import Vocabulary

PADDLE_NEXTVLAD = Weights(
    asset=Asset(
        filename="NEXTVLAD.pdparams",
        url="https://paddlemodels.bj.bcebos.com/video_classification/NEXTVLAD.pdparams",
        description="PaddlePaddle's NeXtVLAD trained on YouTube-8M 2018 (3862 classes); no "
                    "checksum is published: validated by its parameter names and shapes",
    ),
    name="paddle-nextvlad-youtube8m-2018",
    preprocessing="official YouTube-8M frame features (rgb 1024 + audio 128, uint8), "
                  "dequantized and reverse-whitened inside the converted weights",
    meta={"reported_on": "YouTube-8M 2018 validation set", "gap": 0.8709, "hit_at_1": 0.8960,
          "perr": 0.8132, "approx_size_mb": 341,
          "source": "PaddlePaddle/models PaddleCV/video/models/nextvlad (configs/nextvlad.yaml)"},
)
PRETRAINED_FOLDER = "nextvlad-youtube8m-paddle"  # under the cache's models/ folder

_BIN = (QUANT_MAX - QUANT_MIN) / 512.0  # the half-bin Paddle leaves out of rgb
_NOT_PARAMETERS = ("StructuredToParameterName@@",)  # bookkeeping some Paddle versions add
_MAX_NAME = 200  # characters; Paddle's names are under 40


@dataclass(frozen=True)
class PaddleLayout:
    """The hyper-parameters that fix the file's shapes; defaults are the published ones."""

    rgb_dim: int = RGB_DIM
    audio_dim: int = AUDIO_DIM
    clusters: int = 128
    groups: int = 8
    expansion: int = 2
    hidden_size: int = 2048
    gating_reduction: int = 8
    num_classes: int = 3862

    def expected_shapes(self) -> dict[str, tuple[int, ...]]:
        """Every parameter name of Paddle's program with its shape."""
        shapes: dict[str, tuple[int, ...]] = {"eigen_param": (self.rgb_dim,)}
        vlad_dims = 0
        for i, (stream, dim) in enumerate((("video", self.rgb_dim), ("audio", self.audio_dim))):
            wide, k, g = self.expansion * dim, self.clusters, self.groups
            shapes.update({
                f"{stream}_fc_expansion_w": (dim, wide), f"{stream}_fc_expansion_b": (wide,),
                f"{stream}_fc_group_attention_w": (wide, g), f"{stream}_fc_group_attention_b": (g,),
                f"{stream}_cluster_weights": (wide, g * k),
                f"{stream}_cluster_weights2": (k, wide // g)})
            shapes.update(_bn_shapes(2 * i, g * k))
            shapes.update(_bn_shapes(2 * i + 1, k * wide // g))
            vlad_dims += k * wide // g
        h, r = self.hidden_size, self.hidden_size // self.gating_reduction
        shapes.update({"hidden1_fc_weights": (vlad_dims, h), "gating_fc1_weights": (h, r),
                       "gating_fc2_weights": (r, h), "logits_clf_weights": (h, self.num_classes),
                       "logits_clf_bias": (self.num_classes,)})
        shapes.update(_bn_shapes(4, h))
        shapes.update(_bn_shapes(5, r))
        return shapes

    @classmethod
    def infer(cls, params: dict[str, np.ndarray], source: str) -> "PaddleLayout":
        """Read the hyper-parameters off the shapes; `validate` then checks every name."""
        needed = ("video_fc_expansion_w", "audio_fc_expansion_w", "video_cluster_weights2",
                  "video_fc_group_attention_w", "gating_fc1_weights", "logits_clf_bias")
        missing = [n for n in needed if n not in params]
        if missing:
            raise UsageError(f"{source} is not PaddlePaddle's NeXtVLAD: it has no "
                             f"{', '.join(missing)}.\n{_WHAT_TO_DO}")
        try:
            rgb_dim, wide = params["video_fc_expansion_w"].shape
            hidden, reduced = params["gating_fc1_weights"].shape
            audio_dim = params["audio_fc_expansion_w"].shape[0]
            if (rgb_dim, audio_dim) != (RGB_DIM, AUDIO_DIM):
                raise UsageError(f"{source} takes {rgb_dim}-d rgb and {audio_dim}-d audio frames; "
                                 f"YouTube-8M features are {RGB_DIM}-d and {AUDIO_DIM}-d.\n"
                                 f"{_WHAT_TO_DO}")
            return cls(rgb_dim=rgb_dim, audio_dim=audio_dim,
                       clusters=params["video_cluster_weights2"].shape[0],
                       groups=params["video_fc_group_attention_w"].shape[1],
                       expansion=wide // rgb_dim, hidden_size=hidden,
                       gating_reduction=hidden // max(reduced, 1),
                       num_classes=params["logits_clf_bias"].shape[0])
        except (ValueError, IndexError):
            raise UsageError(f"{source}: NeXtVLAD parameters of impossible shapes "
                             f"({', '.join(f'{n} {params[n].shape}' for n in needed)}).\n"
                             f"{_WHAT_TO_DO}") from None

    def validate(self, params: dict[str, np.ndarray], source: str) -> None:
        """Exactly the expected names with exactly the expected shapes, or UsageError."""
        expected = self.expected_shapes()
        problems = [f"missing {n}" for n in sorted(expected) if n not in params]
        problems += [f"unexpected {n}" for n in sorted(params) if n not in expected]
        problems += [f"{n} has shape {tuple(params[n].shape)}, expected {shape}"
                     for n, shape in sorted(expected.items())
                     if n in params and tuple(params[n].shape) != shape]
        if problems:
            shown = "; ".join(problems[:8]) + (f"; and {len(problems) - 8} more"
                                               if len(problems) > 8 else "")
            raise UsageError(f"{source} does not have the layout of PaddlePaddle's NeXtVLAD "
                             f"({self}): {shown}.\n{_WHAT_TO_DO}")


_WHAT_TO_DO = (f"Download it again ({PADDLE_NEXTVLAD.asset.url}), or pass the .pdparams file "
               "of PaddlePaddle's NeXtVLAD (PaddleCV/video, configs/nextvlad.yaml).")


def _bn_shapes(i: int, channels: int) -> dict[str, tuple[int, ...]]:
    return {f"batch_norm_{i}.{s}": (channels,) for s in ("w_0", "b_0", "w_1", "w_2")}


# --------------------------------------------------------------------------- safe loading

def load_pdparams(path: str, layout: bool = False) -> dict[str, np.ndarray]:
    """A `.pdparams` file -> {name: float32 array}. Nothing in the file runs, and nothing is
    built beyond what the file's own bytes hold (yt8m/safe_pickle.py).

    `layout`: refuse, before it is built, any array whose name is not a parameter of
    Paddle's NeXtVLAD or whose number of dimensions is not that parameter's (the exact
    shapes depend on the hyper-parameters and are checked by `PaddleLayout.validate`).
    """
    names = {n: len(s) for n, s in PaddleLayout().expected_shapes().items()} if layout else None
    try:
        data = load_arrays(path, names)
    except OSError as e:
        raise UsageError(f"cannot read {path}: {e.strerror or e}.") from None
    except Unexpected as e:
        raise UsageError(f"{path} does not have the layout of PaddlePaddle's NeXtVLAD: {e}."
                         f"\n{_WHAT_TO_DO}") from None
    except (Refused, pickle.UnpicklingError) as e:
        raise UsageError(f"{path} was refused: {e}. A .pdparams file holds only named arrays; "
                         f"this one is not safe to load.\n{_WHAT_TO_DO}") from None
    except Exception as e:  # noqa: BLE001 - the scan passed, yet the objects do not fit together
        raise UsageError(f"{path} is truncated or not a PaddlePaddle parameter file "
                         f"({type(e).__name__}: {reprlib.repr(str(e))}).\n{_WHAT_TO_DO}") from None
    if not isinstance(data, dict):
        raise UsageError(f"{path} holds a {type(data).__name__}, not named parameters.\n{_WHAT_TO_DO}")
    params = {}
    for name, value in data.items():
        if name in _NOT_PARAMETERS:
            continue
        if not isinstance(name, str) or len(name) > _MAX_NAME or not isinstance(value, np.ndarray) \
                or value.dtype.kind not in "fiu":
            raise UsageError(f"{path}: entry {reprlib.repr(name)} is not a numeric array with a "
                             f"name.\n{_WHAT_TO_DO}")
        params[name] = value.astype(np.float32, copy=False)
    return params


# --------------------------------------------------------------------------- conversion

def _vlad_order(clusters: int, group_dim: int) -> np.ndarray:
    """Our flat VLAD index k*F + f -> Paddle's f*K + k."""
    k, f = np.meshgrid(np.arange(clusters), np.arange(group_dim), indexing="ij")
    return (f * clusters + k).ravel()


def _bn(p: dict[str, np.ndarray], i: int, order: np.ndarray | None = None) -> dict[str, np.ndarray]:
    values = {"weight": p[f"batch_norm_{i}.w_0"], "bias": p[f"batch_norm_{i}.b_0"],
              "running_mean": p[f"batch_norm_{i}.w_1"], "running_var": p[f"batch_norm_{i}.w_2"]}
    return {k: v if order is None else v[order] for k, v in values.items()}


def _stream(p: dict[str, np.ndarray], stream: str, bn: int, layout: PaddleLayout,
            scale: np.ndarray, shift: float) -> dict[str, np.ndarray]:
    """One NeXtVLAD stream. Paddle's input is (ours + shift) * scale, folded into the expansion:
    ((v + shift) * scale) @ W + b = v @ (scale[:, None] * W) + ((shift * scale) @ W + b)."""
    w = p[f"{stream}_fc_expansion_w"].astype(np.float64)
    weights = {
        "expand.weight": (scale[:, None] * w).T,
        "expand.bias": p[f"{stream}_fc_expansion_b"] + (shift * scale) @ w,
        "attention.weight": p[f"{stream}_fc_group_attention_w"].T,
        "attention.bias": p[f"{stream}_fc_group_attention_b"],
        "assign.weight": p[f"{stream}_cluster_weights"].T,
        "centers": p[f"{stream}_cluster_weights2"],
    }
    centers = p[f"{stream}_cluster_weights2"]
    order = _vlad_order(*centers.shape)
    weights.update({f"assign_bn.{k}": v for k, v in _bn(p, bn).items()})
    weights.update({f"vlad_bn.{k}": v for k, v in _bn(p, bn + 1, order).items()})
    return {f"{stream}.{k}": v for k, v in weights.items()}


def convert(params: dict[str, np.ndarray], layout: PaddleLayout,
            drop_rate: float = 0.5) -> tuple[ModelConfig, dict[str, torch.Tensor]]:
    """Validated Paddle parameters -> (our ModelConfig, a state dict computing the same).

    `drop_rate` is the training dropout (configs/nextvlad.yaml: 0.5); it is not in
    the file, and Paddle's inference multiplies by 1 - drop_rate.
    """
    p = params
    eigen = p["eigen_param"].astype(np.float64)
    weights = _stream(p, "video", 0, layout, eigen, -_BIN)
    weights.update(_stream(p, "audio", 2, layout, np.ones(layout.audio_dim), 0.0))
    video_dims = layout.clusters * layout.expansion * layout.rgb_dim // layout.groups
    rows = np.concatenate([
        _vlad_order(layout.clusters, layout.expansion * layout.rgb_dim // layout.groups),
        video_dims + _vlad_order(layout.clusters, layout.expansion * layout.audio_dim // layout.groups)])
    weights["hidden.weight"] = (p["hidden1_fc_weights"][rows] * (1.0 - drop_rate)).T
    weights.update({f"hidden_bn.{k}": v for k, v in _bn(p, 4).items()})
    weights["gating.squeeze.weight"] = p["gating_fc1_weights"].T
    weights.update({f"gating.bn.{k}": v for k, v in _bn(p, 5).items()})
    weights["gating.excite.weight"] = p["gating_fc2_weights"].T
    weights["classifier.fc.weight"] = p["logits_clf_weights"].T
    weights["classifier.fc.bias"] = p["logits_clf_bias"]
    config = ModelConfig("nextvlad", num_classes=layout.num_classes, clusters=layout.clusters,
                         groups=layout.groups, expansion=layout.expansion,
                         hidden_size=layout.hidden_size, gating_reduction=layout.gating_reduction,
                         dropout=drop_rate, classifier="logistic",
                         audio_clusters=layout.clusters, audio_groups=layout.groups)
    state = {k: torch.from_numpy(np.ascontiguousarray(v, dtype=np.float32)) for k, v in weights.items()}
    model = build_model(config)
    for key, value in model.state_dict().items():  # buffers we do not convert: their defaults
        state.setdefault(key, value)
    model.load_state_dict(state, strict=True)  # any naming slip fails here, not at inference
    return config, model.state_dict()


@dataclass
class Converted:
    folder: str
    layout: PaddleLayout
    sha256: str


def convert_file(path: str, out_dir: str, vocabulary: Vocabulary, drop_rate: float = 0.5,
                 require: PaddleLayout | None = None) -> Converted:
    """A `.pdparams` on disk -> a model folder at `out_dir` (written whole, then renamed).

    `require`: refuse any other layout (the published one, for `download`).
    """
    params = load_pdparams(path, layout=True)
    layout = PaddleLayout.infer(params, path)
    (require or layout).validate(params, path)
    if len(vocabulary) != layout.num_classes:
        raise UsageError(f"{path} has {layout.num_classes} classes but the vocabulary "
                         f"{vocabulary.name!r} has {len(vocabulary)}; pass --vocabulary with "
                         "the vocabulary.csv it was trained with.")
    config, state = convert(params, layout, drop_rate)
    digest = sha256_of(path)
    origin = {"converted_from": "paddle", "file": os.path.basename(path), "sha256": digest,
              "url": PADDLE_NEXTVLAD.asset.url, "drop_rate": str(drop_rate)}
    parent = os.path.dirname(os.path.abspath(out_dir))
    os.makedirs(parent, exist_ok=True)
    staging = tempfile.mkdtemp(prefix=f".{os.path.basename(out_dir)}.", dir=parent)
    try:
        Checkpoint(state, config, OFFICIAL, vocabulary, "frame", origin=origin).save(
            os.path.join(staging, CHECKPOINT))
        write_summary(staging, config, OFFICIAL, vocabulary, "frame",
                      {"origin": origin, "paddle_layout": asdict(layout),
                       "published_results": PADDLE_NEXTVLAD.meta})
        _replace_folder(staging, out_dir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return Converted(out_dir, layout, digest)


def _replace_folder(new: str, target: str) -> None:
    """Put `new` at `target`; an existing model folder there is replaced, never merged."""
    if os.path.lexists(target):
        if not os.path.isfile(os.path.join(target, CHECKPOINT)) and os.listdir(target):
            raise UsageError(f"{target} exists and is not a model folder; pass another --out.")
        old = f"{target}.old-{os.getpid()}"
        os.replace(target, old)
        os.replace(new, target)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(new, target)
