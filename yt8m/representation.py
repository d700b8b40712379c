"""The YouTube-8M frame representation (docs/reference.md, "Representation") in one place.

Constants, the 8-bit quantizer, and `Representation`: the provenance record that
says how features were made, so that a model refuses features made differently.
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from typing import Any

import numpy as np

RGB_DIM = 1024  # after PCA; Inception-v3 pool_3 is 2048-d before it
AUDIO_DIM = 128
INCEPTION_DIM = 2048
FPS = 1
DEFAULT_MAX_FRAMES = 300
MAX_FRAMES_LIMIT = 360



def check_max_frames(n: int) -> None:
    """The one check of --max-frames (UsageError, exit 2)."""
    from .errors import UsageError
    if not 1 <= n <= MAX_FRAMES_LIMIT:
        raise UsageError(f"--max-frames {n}: must be between 1 and {MAX_FRAMES_LIMIT} "
                         f"(YouTube-8M uses {DEFAULT_MAX_FRAMES})")


QUANT_MIN = -2.0
QUANT_MAX = 2.0
_RANGE = QUANT_MAX - QUANT_MIN
# Bin centres: the starter code's Dequantize adds half a bin (range / 512).
_SCALE = _RANGE / 255.0
_BIAS = _RANGE / 512.0 + QUANT_MIN

QUANTIZATION = "uniform-8bit:clip[-2,2]:floor((v+2)*255/4)"
FORMAT_VERSION = 2  # 2: a CRC32C per video; 1 (no checksums) is still read


def quantize(values: np.ndarray) -> np.ndarray:
    """float features -> uint8 codes: clip to [-2, 2], q = floor((v + 2) * 255 / 4)."""
    v = np.clip(np.asarray(values, dtype=np.float32), QUANT_MIN, QUANT_MAX)
    q = np.floor((v - QUANT_MIN) * np.float32(255.0 / _RANGE))
    return np.minimum(q, 255).astype(np.uint8)  # v == 2.0 lands exactly on 255


def dequantize(codes: Any) -> Any:
    """uint8 codes -> float32: v = q * 4 / 255 + 4 / 512 - 2.

    Works on NumPy arrays and on torch tensors (on any device), so the model can
    keep frames in uint8 until they reach the GPU.
    """
    if hasattr(codes, "float"):  # torch.Tensor
        return codes.float() * _SCALE + _BIAS
    return np.asarray(codes, dtype=np.float32) * np.float32(_SCALE) + np.float32(_BIAS)


QUANTIZED_ZERO = quantize(np.zeros(1))[0]  # the audio of a video without sound


@dataclass(frozen=True)
class Representation:
    """How a set of features was made. Two sets are interchangeable iff equal.

    `source` (raw video or the official dataset) is informative only and is not
    compared: the point of the product is that both sources give equal features.
    """

    rgb_backbone: str = "inception-2015-12-05"
    audio_backbone: str = "vggish"
    rgb_pca: str = "yt8m_pca"
    audio_pca: str = "vggish_pca_params"
    quantization: str = QUANTIZATION
    fps: int = FPS
    random_weights: bool = False
    source: str = "youtube-8m"

    COMPARED = ("rgb_backbone", "audio_backbone", "rgb_pca", "audio_pca",
                "quantization", "fps", "random_weights")

    def differences(self, other: "Representation") -> list[str]:
        """Human-readable list of compared fields that differ (empty if compatible)."""
        return [f"{name}: {getattr(self, name)!r} vs {getattr(other, name)!r}"
                for name in self.COMPARED if getattr(self, name) != getattr(other, name)]

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "Representation":
        data = json.loads(text)
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


# What Google's pipeline produced for the official dataset.
OFFICIAL = Representation()
