"""Inception-v3 as in Google's `inception-2015-12-05` graph, the visual backbone of
YouTube-8M, in the layout of its published PyTorch port (pytorch-fid's
`pt_inception-2015-12-05-6726825d.pth`).

That graph differs from torchvision's ImageNet Inception-v3 in three ways the
port reproduces and so do we: a 1008-way classifier (`fc`), average pools that
do not count the zero padding (TF's `avg_pool` with SAME padding) in the mixed
blocks, and a max pool instead of an average pool in the pool branch of the
last mixed block (`Mixed_7c`). Module names follow torchvision's Inception3, so
the port's state dict loads with strict key and shape matching.

`InceptionPool3` is the whole frame path: uint8 RGB frames [N, H, W, 3] -> TF1
legacy bilinear resize to 299x299 -> (x - 128) / 128 -> network -> the 2048-d
`pool_3` (global average of Mixed_7c).
"""
from __future__ import annotations

import os

import torch
import torch.nn.functional as F
from torch import nn

from yt8m.assets import Asset, Weights
from yt8m.errors import UsageError

from .resize import INCEPTION_SIZE, resize_bilinear_tf1

INCEPTION_2015_12_05 = Weights(
    asset=Asset(
        filename="pt_inception-2015-12-05-6726825d.pth",
        url="https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/"
            "pt_inception-2015-12-05-6726825d.pth",
        sha256="6726825d",  # torch hub convention: sha256 prefix in the file name
        description="Inception-v3 of TF's inception-2015-12-05 graph, ported by pytorch-fid",
    ),
    name="inception-2015-12-05",
    preprocessing="RGB uint8 frame -> TF1 legacy bilinear resize to 299x299 "
                  "(align_corners=False, no half-pixel offset) -> (x - 128) / 128",
    meta={
        "source_graph": "http://download.tensorflow.org/models/image/imagenet/"
                        "inception-2015-12-05.tgz",
        "output": "pool_3:0, 2048-d",
        "num_classes": 1008,
        "input_size": INCEPTION_SIZE,
    },
)
POOL3_DIM = 2048
NUM_CLASSES = 1008


class BasicConv2d(nn.Module):
    """Conv (no bias) + batch norm (eps 0.001, as TF) + ReLU."""

    def __init__(self, c_in: int, c_out: int, kernel_size, stride=1, padding=0):
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out, kernel_size, stride=stride, padding=padding,
                              bias=False)
        self.bn = nn.BatchNorm2d(c_out, eps=0.001)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn(self.conv(x)), inplace=True)


def _tf_avg_pool(x: torch.Tensor) -> torch.Tensor:
    # TF's SAME average pool divides by the number of real (unpadded) pixels.
    return F.avg_pool2d(x, kernel_size=3, stride=1, padding=1, count_include_pad=False)


class InceptionA(nn.Module):  # Mixed_5b/5c/5d, 35x35
    def __init__(self, c_in: int, pool_features: int):
        super().__init__()
        self.branch1x1 = BasicConv2d(c_in, 64, 1)
        self.branch5x5_1 = BasicConv2d(c_in, 48, 1)
        self.branch5x5_2 = BasicConv2d(48, 64, 5, padding=2)
        self.branch3x3dbl_1 = BasicConv2d(c_in, 64, 1)
        self.branch3x3dbl_2 = BasicConv2d(64, 96, 3, padding=1)
        self.branch3x3dbl_3 = BasicConv2d(96, 96, 3, padding=1)
        self.branch_pool = BasicConv2d(c_in, pool_features, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([
            self.branch1x1(x),
            self.branch5x5_2(self.branch5x5_1(x)),
            self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x))),
            self.branch_pool(_tf_avg_pool(x)),
        ], 1)


class InceptionB(nn.Module):  # Mixed_6a: 35x35 -> 17x17
    def __init__(self, c_in: int):
        super().__init__()
        self.branch3x3 = BasicConv2d(c_in, 384, 3, stride=2)
        self.branch3x3dbl_1 = BasicConv2d(c_in, 64, 1)
        self.branch3x3dbl_2 = BasicConv2d(64, 96, 3, padding=1)
        self.branch3x3dbl_3 = BasicConv2d(96, 96, 3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([
            self.branch3x3(x),
            self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x))),
            F.max_pool2d(x, kernel_size=3, stride=2),
        ], 1)


class InceptionC(nn.Module):  # Mixed_6b..6e, 17x17, factorised 7x7
    def __init__(self, c_in: int, c7: int):
        super().__init__()
        self.branch1x1 = BasicConv2d(c_in, 192, 1)
        self.branch7x7_1 = BasicConv2d(c_in, c7, 1)
        self.branch7x7_2 = BasicConv2d(c7, c7, (1, 7), padding=(0, 3))
        self.branch7x7_3 = BasicConv2d(c7, 192, (7, 1), padding=(3, 0))
        self.branch7x7dbl_1 = BasicConv2d(c_in, c7, 1)
        self.branch7x7dbl_2 = BasicConv2d(c7, c7, (7, 1), padding=(3, 0))
        self.branch7x7dbl_3 = BasicConv2d(c7, c7, (1, 7), padding=(0, 3))
        self.branch7x7dbl_4 = BasicConv2d(c7, c7, (7, 1), padding=(3, 0))
        self.branch7x7dbl_5 = BasicConv2d(c7, 192, (1, 7), padding=(0, 3))
        self.branch_pool = BasicConv2d(c_in, 192, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b7 = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
        d = self.branch7x7dbl_1(x)
        for layer in (self.branch7x7dbl_2, self.branch7x7dbl_3, self.branch7x7dbl_4,
                      self.branch7x7dbl_5):
            d = layer(d)
        return torch.cat([self.branch1x1(x), b7, d, self.branch_pool(_tf_avg_pool(x))], 1)


class InceptionD(nn.Module):  # Mixed_7a: 17x17 -> 8x8
    def __init__(self, c_in: int):
        super().__init__()
        self.branch3x3_1 = BasicConv2d(c_in, 192, 1)
        self.branch3x3_2 = BasicConv2d(192, 320, 3, stride=2)
        self.branch7x7x3_1 = BasicConv2d(c_in, 192, 1)
        self.branch7x7x3_2 = BasicConv2d(192, 192, (1, 7), padding=(0, 3))
        self.branch7x7x3_3 = BasicConv2d(192, 192, (7, 1), padding=(3, 0))
        self.branch7x7x3_4 = BasicConv2d(192, 192, 3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b7 = self.branch7x7x3_1(x)
        for layer in (self.branch7x7x3_2, self.branch7x7x3_3, self.branch7x7x3_4):
            b7 = layer(b7)
        return torch.cat([self.branch3x3_2(self.branch3x3_1(x)), b7,
                          F.max_pool2d(x, kernel_size=3, stride=2)], 1)


class InceptionE(nn.Module):  # Mixed_7b/7c, 8x8, expanded filter banks
    def __init__(self, c_in: int, max_pool_branch: bool):
        super().__init__()
        # The graph's Mixed_7c pools its pool branch with max, Mixed_7b with average.
        self.max_pool_branch = max_pool_branch
        self.branch1x1 = BasicConv2d(c_in, 320, 1)
        self.branch3x3_1 = BasicConv2d(c_in, 384, 1)
        self.branch3x3_2a = BasicConv2d(384, 384, (1, 3), padding=(0, 1))
        self.branch3x3_2b = BasicConv2d(384, 384, (3, 1), padding=(1, 0))
        self.branch3x3dbl_1 = BasicConv2d(c_in, 448, 1)
        self.branch3x3dbl_2 = BasicConv2d(448, 384, 3, padding=1)
        self.branch3x3dbl_3a = BasicConv2d(384, 384, (1, 3), padding=(0, 1))
        self.branch3x3dbl_3b = BasicConv2d(384, 384, (3, 1), padding=(1, 0))
        self.branch_pool = BasicConv2d(c_in, 192, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b3 = self.branch3x3_1(x)
        d = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        pooled = (F.max_pool2d(x, kernel_size=3, stride=1, padding=1) if self.max_pool_branch
                  else _tf_avg_pool(x))
        return torch.cat([
            self.branch1x1(x),
            self.branch3x3_2a(b3), self.branch3x3_2b(b3),
            self.branch3x3dbl_3a(d), self.branch3x3dbl_3b(d),
            self.branch_pool(pooled),
        ], 1)


class InceptionV3(nn.Module):
    """The network on normalised 299x299 NCHW input; `pool3` gives the 2048-d features."""

    def __init__(self, num_classes: int = NUM_CLASSES):
        super().__init__()
        self.Conv2d_1a_3x3 = BasicConv2d(3, 32, 3, stride=2)
        self.Conv2d_2a_3x3 = BasicConv2d(32, 32, 3)
        self.Conv2d_2b_3x3 = BasicConv2d(32, 64, 3, padding=1)
        self.Conv2d_3b_1x1 = BasicConv2d(64, 80, 1)
        self.Conv2d_4a_3x3 = BasicConv2d(80, 192, 3)
        self.Mixed_5b = InceptionA(192, pool_features=32)
        self.Mixed_5c = InceptionA(256, pool_features=64)
        self.Mixed_5d = InceptionA(288, pool_features=64)
        self.Mixed_6a = InceptionB(288)
        self.Mixed_6b = InceptionC(768, c7=128)
        self.Mixed_6c = InceptionC(768, c7=160)
        self.Mixed_6d = InceptionC(768, c7=160)
        self.Mixed_6e = InceptionC(768, c7=192)
        self.Mixed_7a = InceptionD(768)
        self.Mixed_7b = InceptionE(1280, max_pool_branch=False)
        self.Mixed_7c = InceptionE(2048, max_pool_branch=True)
        self.fc = nn.Linear(POOL3_DIM, num_classes)  # unused for features; kept to load strictly

    def pool3(self, x: torch.Tensor) -> torch.Tensor:
        x = self.Conv2d_2b_3x3(self.Conv2d_2a_3x3(self.Conv2d_1a_3x3(x)))
        x = F.max_pool2d(x, kernel_size=3, stride=2)
        x = self.Conv2d_4a_3x3(self.Conv2d_3b_1x1(x))
        x = F.max_pool2d(x, kernel_size=3, stride=2)
        for block in (self.Mixed_5b, self.Mixed_5c, self.Mixed_5d, self.Mixed_6a,
                      self.Mixed_6b, self.Mixed_6c, self.Mixed_6d, self.Mixed_6e,
                      self.Mixed_7a, self.Mixed_7b, self.Mixed_7c):
            x = block(x)
        return x.mean(dim=(2, 3))  # pool_3: 8x8 average -> [N, 2048]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.pool3(x))


class InceptionPool3(nn.Module):
    """uint8 RGB frames [N, H, W, 3] on the model's device -> float32 pool_3 [N, 2048].

    Frames already resized to 299x299 (uint8 or float, by `resize_bilinear_tf1`) skip
    the resize: TF's resize from 299 to 299 is the identity.

    `dtype` (e.g. torch.float16 on a GPU) is the network's compute precision; the
    resize and the output stay float32. `channels_last` picks the faster
    convolution layout on GPUs. `random_weights` is True when no weights were
    loaded: such features are meaningless and everything made from them says so.
    """

    def __init__(self, net: InceptionV3, random_weights: bool, weights_path: str | None = None):
        super().__init__()
        self.net = net
        self.random_weights = random_weights
        self.weights_path = weights_path
        self.channels_last = False
        self.dtype = torch.float32

    @property
    def name(self) -> str:
        """What the shards record as rgb_backbone."""
        return INCEPTION_2015_12_05.recorded_name(self.random_weights)

    def configure(self, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32,
                  channels_last: bool = False) -> "InceptionPool3":
        """Move to `device`, compute in `dtype`, optionally in channels-last layout."""
        self.dtype = dtype
        self.channels_last = channels_last
        self.net.to(device=device, dtype=dtype,
                     memory_format=torch.channels_last if channels_last else torch.contiguous_format)
        return self.eval()

    @torch.inference_mode()
    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        if frames.dim() != 4 or frames.shape[-1] != 3:
            raise ValueError(f"expected RGB frames [N, H, W, 3], got {tuple(frames.shape)}")
        if frames.shape[1:3] == (INCEPTION_SIZE, INCEPTION_SIZE):
            x = frames.float()  # already resized (the decoder does it on CPU); 299 -> 299 is exact
        else:
            x = resize_bilinear_tf1(frames, INCEPTION_SIZE, channels_last=True)  # float32 NHWC
        x = (x - 128.0) / 128.0
        x = x.permute(0, 3, 1, 2)  # NCHW view of NHWC memory: already channels-last
        x = x.contiguous(memory_format=torch.channels_last if self.channels_last
                         else torch.contiguous_format).to(self.dtype)
        return self.net.pool3(x).float()


def load_checked_state_dict(module: nn.Module, path: str) -> None:
    """Load `path` into `module` with strict key and shape checking.

    Every problem becomes a UsageError naming the file and the key. BatchNorm's
    `num_batches_tracked` counters may be present or absent (torch < 0.4.1 did not
    save them; they do not affect inference).
    """
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unreadable file is the user's to fix
        raise UsageError(f"{path}: not a readable PyTorch weights file ({e}). Delete it and "
                         "run `python pipeline.py download`, or pass --random-weights "
                         "for a smoke test.") from None
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise UsageError(f"{path}: expected a state dict, found {type(state).__name__}")
    expected = module.state_dict()
    optional = {k for k in expected if k.endswith("num_batches_tracked")}
    missing = [k for k in expected if k not in state and k not in optional]
    unexpected = [k for k in state if k not in expected]
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"missing keys: {', '.join(missing[:5])}"
                         + (f" (+{len(missing) - 5} more)" if len(missing) > 5 else ""))
        if unexpected:
            parts.append(f"unexpected keys: {', '.join(unexpected[:5])}"
                         + (f" (+{len(unexpected) - 5} more)" if len(unexpected) > 5 else ""))
        raise UsageError(f"{path}: not the expected weights for {type(module).__name__} "
                         f"({'; '.join(parts)}).")
    for key, value in state.items():
        if not isinstance(value, torch.Tensor):
            raise UsageError(f"{path}: key {key} holds a {type(value).__name__}, not a tensor")
        if key not in optional and tuple(value.shape) != tuple(expected[key].shape):
            raise UsageError(f"{path}: key {key} has shape {tuple(value.shape)}, expected "
                             f"{tuple(expected[key].shape)}: not the published weights "
                             f"for {type(module).__name__}.")
    for key in optional - set(state):
        state[key] = expected[key]
    module.load_state_dict(state, strict=True)


def init_random(net: nn.Module) -> None:
    """He-normal convolutions: with BN at its (0, 1) running statistics, activations keep
    their scale through the depth, so random features are varied rather than ~1e-8."""
    for m in net.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")


def build_inception(weights_path: str | None) -> InceptionPool3:
    """The visual backbone on CPU in float32, eval mode. `weights_path` None -> random
    initialisation (smoke tests only; `.random_weights` is True)."""
    net = InceptionV3()
    if weights_path is None:
        init_random(net)
        return InceptionPool3(net, random_weights=True).eval()
    if not os.path.isfile(weights_path):
        from yt8m.assets import missing_message
        raise UsageError(missing_message([INCEPTION_2015_12_05.asset],
                                         [os.path.dirname(weights_path) or "."]))
    load_checked_state_dict(net, weights_path)
    return InceptionPool3(net, random_weights=False, weights_path=weights_path).eval()
