"""One video's features from decoded pixels and sound (docs/reference.md, "Representation").

    frames (uint8 RGB) -> TF1 resize 299x299 -> Inception-v3 pool_3 [T, 2048]
        -> YouTube-8M PCA [T, 1024] -> quantize -> uint8 rgb
    waveform (16 kHz mono) -> log-mel examples [T, 96, 64] -> VGGish fc2 [T, 128]
        -> VGGish PCA [T, 128] -> quantize -> uint8 audio

Audio alignment: a video with T frames gets exactly T audio vectors, the one for
second k from the sound of [k, k + 0.96) s. The waveform is cut or padded with
silence to exactly T seconds before framing: a track shorter than the video is
padded with silence at its end (those seconds hold the log-mel of silence, not
the quantized zero); a longer track is cut at T seconds. A video without an audio
track gets the quantized zero vector for every frame and has_audio = False.

`Backbones` holds the loaded networks and PCA so that a long-running process
(the HTTP server, the extraction job) loads them once. `features_of` is the whole
chain for one video, step after step: read it first. The engine that extraction
runs (extract/extractor.py) does the same work overlapped and batched across
videos, and is tested to give the same bytes.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import torch

from yt8m.assets import DEFAULT_PCA_DIR
from yt8m.errors import UsageError
from yt8m.record import VideoRecord
from yt8m.representation import AUDIO_DIM, DEFAULT_MAX_FRAMES, QUANTIZED_ZERO, Representation, quantize

from .logmel import SAMPLE_RATE, waveform_to_examples

RANDOM_SEED = 0  # random-init backbones are seeded: two runs make equal features


@dataclass
class Backbones:
    inception: torch.nn.Module  # extract.inception.InceptionPool3
    vggish: torch.nn.Module  # extract.vggish.VGGish
    device: torch.device
    pca: object | None = None  # extract.pca.PCAParams; None for fit-pca (raw features)
    weights: tuple[str | None, str | None] = (None, None)

    @property
    def random_weights(self) -> bool:
        return bool(self.inception.random_weights or self.vggish.random_weights)

    def representation(self) -> Representation:
        """What shards made with these backbones record (source: raw video)."""
        if self.pca is None:
            raise ValueError("no PCA loaded: raw features have no Representation")
        return representation_for(self.random_weights, self.pca)

    def provenance(self) -> dict:
        return provenance_of(self.weights, self.pca)


def representation_for(random_weights: bool, pca) -> Representation:
    """The Representation of features made with these weights (random or published) and PCA."""
    from .inception import INCEPTION_2015_12_05
    from .vggish import VGGISH_AUDIOSET

    return Representation(rgb_backbone=INCEPTION_2015_12_05.recorded_name(random_weights),
                          audio_backbone=VGGISH_AUDIOSET.recorded_name(random_weights),
                          rgb_pca=pca.rgb.identity, audio_pca=pca.audio.identity,
                          random_weights=random_weights, source="raw-video")


def provenance_of(weights: tuple[str | None, str | None], pca) -> dict:
    """Weights file names (and hash prefixes) and the PCA folder, for ShardMeta.extra."""
    from yt8m.assets import sha256_of

    out = {}
    for key, path in zip(("inception_weights", "vggish_weights"), weights):
        out[key] = ("random-init (seed %d): smoke tests only" % RANDOM_SEED if path is None
                    else f"{os.path.basename(path)} sha256:{sha256_of(path)[:16]}")
    if pca is not None:
        out["pca_dir"] = os.path.abspath(pca.directory)
    return out


def describe_backbones(weights_dir: str | None, random_weights: bool,
                       pca_dir: str) -> tuple[Representation, dict]:
    """What `load_backbones` would record, without building the networks (a Ray driver)."""
    from .assets import resolve_weights
    from .pca import load_pca

    pca = load_pca(pca_dir)
    weights = resolve_weights(weights_dir, random_weights)
    return representation_for(random_weights, pca), provenance_of(weights, pca)


def load_backbones(weights_dir: str | None = None, random_weights: bool = False,
                   pca_dir: str | None = DEFAULT_PCA_DIR, device: str | torch.device = "cpu",
                   ) -> Backbones:
    """Both networks (published weights, or seeded random ones) and, unless pca_dir is
    None, the PCA parameters. Missing files -> UsageError naming them (exit 2)."""
    from .assets import resolve_weights
    from .inception import build_inception
    from .pca import load_pca
    from .vggish import build_vggish

    device = torch.device(device)
    pca = load_pca(pca_dir) if pca_dir is not None else None  # cheap check first
    inception_path, vggish_path = resolve_weights(weights_dir, random_weights)
    torch.manual_seed(RANDOM_SEED)
    inception = build_inception(inception_path)
    vggish = build_vggish(vggish_path)
    cuda = device.type == "cuda"
    # Channels-last is the fast convolution layout on GPUs; on CPU it is no faster here.
    inception.configure(device, torch.float32, channels_last=cuda)
    vggish.to(device).eval()
    return Backbones(inception, vggish, device, pca, (inception_path, vggish_path))


def audio_examples(waveform: np.ndarray, n_frames: int) -> torch.Tensor:
    """16 kHz mono waveform -> exactly n_frames log-mel examples [T, 96, 64] (see the
    module docstring: cut or padded with silence to T seconds)."""
    target = n_frames * SAMPLE_RATE
    wave = np.zeros(target, dtype=np.float32)
    n = min(target, len(waveform))
    wave[:n] = waveform[:n]
    examples = waveform_to_examples(wave)
    assert examples.shape[0] == n_frames, (examples.shape, n_frames)
    return examples


@torch.inference_mode()
def inception_pool3(backbones: Backbones, frames: torch.Tensor) -> torch.Tensor:
    """[N, H, W, 3] frames (uint8, or float32 already resized to 299) -> float32 [N, 2048]."""
    return backbones.inception(frames.to(backbones.device, non_blocking=True))


@torch.inference_mode()
def vggish_fc2(backbones: Backbones, examples: torch.Tensor, batch_size: int = 64) -> torch.Tensor:
    """[T, 96, 64] log-mel examples -> float32 [T, 128] (on the backbones' device)."""
    outs = [backbones.vggish(examples[i:i + batch_size].to(backbones.device))
            for i in range(0, len(examples), batch_size)]
    return torch.cat(outs) if outs else torch.zeros(0, AUDIO_DIM, device=backbones.device)


def quantize_rgb(backbones: Backbones, pool3: torch.Tensor) -> np.ndarray:
    """[N, 2048] -> uint8 [N, 1024]: PCA + whitening, then the 8-bit quantizer."""
    if backbones.pca is None:
        raise UsageError("PCA parameters are needed to quantize features")
    return quantize(backbones.pca.rgb.apply(pool3).cpu().numpy())


def quantize_audio(backbones: Backbones, fc2: torch.Tensor) -> np.ndarray:
    """[N, 128] -> uint8 [N, 128]: VGGish PCA, then the 8-bit quantizer."""
    if backbones.pca is None:
        raise UsageError("PCA parameters are needed to quantize features")
    return quantize(backbones.pca.audio.apply(fc2).cpu().numpy())


def silent_audio(n_frames: int) -> np.ndarray:
    """The audio of a video without a sound track: the quantized zero vector per frame."""
    return np.full((n_frames, AUDIO_DIM), QUANTIZED_ZERO, dtype=np.uint8)


def features_of(path: str, backbones: Backbones, max_frames: int = DEFAULT_MAX_FRAMES,
                name: str | None = None) -> VideoRecord:
    """One video file -> its quantized features, sequentially (the reference path).

    Raises RejectedInput when the file is not a usable video."""
    from .decode import open_video, read_audio
    from .resize import INCEPTION_SIZE, resize_bilinear_tf1

    video = open_video(path, max_frames, name)  # decoder and the frames shown at 0, 1, 2, ... s
    n = video.info.n_frames
    pool3 = [inception_pool3(backbones, resize_bilinear_tf1(torch.from_numpy(chunk), INCEPTION_SIZE))
             for chunk in video.chunks()]
    rgb = quantize_rgb(backbones, torch.cat(pool3))  # PCA + whitening, then 8 bits
    wave = read_audio(path, n, name)  # mono 16 kHz, the first n seconds
    if wave is None:
        audio = silent_audio(n)
    else:
        audio = quantize_audio(backbones, vggish_fc2(backbones, audio_examples(wave, n)))
    return VideoRecord(id=name or path, rgb=rgb, audio=audio, has_audio=wave is not None)
