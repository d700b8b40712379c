"""VGGish, AudioSet's audio embedding network and the audio backbone of YouTube-8M,
in the layout of its published PyTorch port (harritaylor/torchvggish,
`vggish-10086976.pth`: `features.*` convolutions, `embeddings.*` fully connected).

Input: log-mel examples [N, 96, 64] (extract/logmel.py). Output: the 128-d `fc2`
before any activation. The TF model's fc2 has no activation; the port appends a
ReLU after it (`embeddings.5`), which would zero every negative coordinate, so
we stop before it. PCA and quantization are applied later (extract/pca.py).
"""
from __future__ import annotations

import os

import torch
from torch import nn

from yt8m.assets import Asset, Weights
from yt8m.errors import UsageError

from .inception import init_random, load_checked_state_dict
from .logmel import EXAMPLE_FRAMES, NUM_BANDS

VGGISH_AUDIOSET = Weights(
    asset=Asset(
        filename="vggish-10086976.pth",
        url="https://github.com/harritaylor/torchvggish/releases/download/v0.1/"
            "vggish-10086976.pth",
        sha256="10086976",  # torch hub convention: sha256 prefix in the file name
        description="VGGish (AudioSet), ported by torchvggish",
    ),
    name="vggish",
    preprocessing="mono 16 kHz -> log-mel examples [96, 64] (25 ms periodic Hann, 10 ms hop, "
                  "512-point FFT, 64 HTK mel bands 125-7500 Hz, log(mel + 0.01)), "
                  "0.96 s examples every 1.0 s",
    meta={"source_checkpoint": "https://storage.googleapis.com/audioset/vggish_model.ckpt",
          "output": "fc2 before activation, 128-d"},
)
EMBEDDING_DIM = 128

# (out_channels or "M" for a 2x2 max pool): VGG configuration "A"-like, 4 pools.
_LAYERS = (64, "M", 128, "M", 256, 256, "M", 512, 512, "M")


def _features() -> nn.Sequential:
    layers: list[nn.Module] = []
    c_in = 1
    for spec in _LAYERS:
        if spec == "M":
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
        else:
            layers += [nn.Conv2d(c_in, spec, kernel_size=3, padding=1), nn.ReLU(inplace=True)]
            c_in = spec
    return nn.Sequential(*layers)


class VGGish(nn.Module):
    """[N, 96, 64] float32 log-mel examples -> [N, 128] float32 embeddings (fc2, no ReLU)."""

    def __init__(self, random_weights: bool = True, weights_path: str | None = None):
        super().__init__()
        self.features = _features()
        # After 4 pools: 512 channels x 6 (time) x 4 (mel).
        self.embeddings = nn.Sequential(
            nn.Linear(512 * 4 * 6, 4096), nn.ReLU(inplace=True),
            nn.Linear(4096, 4096), nn.ReLU(inplace=True),
            nn.Linear(4096, EMBEDDING_DIM),
        )
        self.random_weights = random_weights
        self.weights_path = weights_path

    @property
    def name(self) -> str:
        """What the shards record as audio_backbone."""
        return VGGISH_AUDIOSET.recorded_name(self.random_weights)

    @torch.inference_mode()
    def forward(self, examples: torch.Tensor) -> torch.Tensor:
        if examples.dim() != 3 or tuple(examples.shape[1:]) != (EXAMPLE_FRAMES, NUM_BANDS):
            raise ValueError(f"expected log-mel examples [N, {EXAMPLE_FRAMES}, {NUM_BANDS}], "
                             f"got {tuple(examples.shape)}")
        p = next(self.parameters())
        x = self.features(examples.to(device=p.device, dtype=p.dtype).unsqueeze(1))
        # The TF model flattens NHWC (time, mel, channels); the port's fc weights expect that.
        x = x.permute(0, 2, 3, 1).flatten(1)
        return self.embeddings(x).float()


def build_vggish(weights_path: str | None) -> VGGish:
    """The audio backbone on CPU in float32, eval mode. `weights_path` None -> random
    initialisation (smoke tests only; `.random_weights` is True)."""
    if weights_path is None:
        model = VGGish(random_weights=True)
        init_random(model)
        return model.eval()
    if not os.path.isfile(weights_path):
        from yt8m.assets import missing_message
        raise UsageError(missing_message([VGGISH_AUDIOSET.asset],
                                         [os.path.dirname(weights_path) or "."]))
    model = VGGish(random_weights=False, weights_path=weights_path)
    load_checked_state_dict(model, weights_path)
    return model.eval()
