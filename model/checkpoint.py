"""Run folders and checkpoints.

A run folder (`runs/<time>-<model>/`) holds `config.json` (model and training
configuration, representation provenance, vocabulary reference),
`vocabulary.csv`, `representation.json`, `checkpoint.pt` (rewritten atomically:
temporary name, fsync, rename), `metrics.csv` and TensorBoard event files.
`runs/latest` is a symlink to the newest run, replaced atomically.

A checkpoint is self-contained (it carries the vocabulary names and the
representation), holds only tensors and plain Python values, and loads with
`torch.load(weights_only=True)`.
"""
from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass

import torch

from yt8m.errors import UsageError
from yt8m.representation import DEFAULT_MAX_FRAMES, Representation, dequantize
from yt8m.vocabulary import Vocabulary

from .config import ModelConfig, build_model

CHECKPOINT = "checkpoint.pt"
CONFIG = "config.json"
LATEST = "latest"


def new_run_dir(out: str, model_name: str) -> str:
    os.makedirs(out, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    path, n = os.path.join(out, f"{stamp}-{model_name}"), 1
    while os.path.exists(path):
        n += 1
        path = os.path.join(out, f"{stamp}-{model_name}-{n}")
    os.makedirs(path)
    return path


def point_latest(out: str, run_dir: str) -> None:
    """Make out/latest a symlink to run_dir, atomically (symlink under a temp name, rename)."""
    link = os.path.join(out, LATEST)
    tmp = os.path.join(out, f".{LATEST}.{os.getpid()}")
    if os.path.lexists(tmp):
        os.remove(tmp)
    os.symlink(os.path.basename(os.path.normpath(run_dir)), tmp)
    os.replace(tmp, link)


def atomic_save(obj: dict, path: str) -> None:
    tmp = f"{path}.partial"
    with open(tmp, "wb") as f:
        torch.save(obj, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def write_json(path: str, data: dict) -> None:
    tmp = f"{path}.partial"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=1, sort_keys=True)
        f.write("\n")
    os.replace(tmp, path)


def checkpoint_path(path: str) -> str:
    """A checkpoint file, or the checkpoint of a run folder (runs/latest included)."""
    if os.path.isdir(path):
        return os.path.join(path, CHECKPOINT)
    return path


def read_checkpoint(path: str, map_location: str | torch.device = "cpu") -> dict:
    file = checkpoint_path(path)
    if not os.path.exists(file):
        raise UsageError(f"no trained model at {path}: train one with `python pipeline.py train` "
                         "(it writes runs/latest), or pass --model with a run folder or a "
                         f"{CHECKPOINT} file.")
    try:
        state = torch.load(file, map_location=map_location, weights_only=True)
    except Exception as e:  # truncated, not a torch file, unpicklable content
        raise UsageError(f"{file} is not a readable checkpoint ({type(e).__name__}: {e}). "
                         "Pass --model with another run folder or checkpoint file.") from None
    if not isinstance(state, dict) or "model" not in state or "model_config" not in state:
        raise UsageError(f"{file} is a torch file but not a checkpoint of this toolkit. "
                         "Pass --model with a run folder written by `python pipeline.py train`.")
    return state


@dataclass
class LoadedModel:
    """A trained model ready for prediction, with what it was trained on."""

    model: torch.nn.Module
    config: ModelConfig
    representation: Representation
    vocabulary: Vocabulary
    max_frames: int
    device: torch.device
    path: str

    @property
    def video_level(self) -> bool:
        return self.config.video_level

    @torch.no_grad()
    def predict(self, rgb_uint8: torch.Tensor, audio_uint8: torch.Tensor,
                mask: torch.Tensor) -> torch.Tensor:
        """Quantized frames [B, T, 1024] / [B, T, 128] (uint8) + mask [B, T] -> probabilities [B, C]."""
        if self.video_level:
            raise ValueError("a video-level model takes mean features: use predict_video_level")
        d = self.device
        rgb, audio = dequantize(rgb_uint8.to(d)), dequantize(audio_uint8.to(d))
        mask = mask.to(d, torch.float32)
        return self.model(rgb[:, :self.max_frames], audio[:, :self.max_frames],
                          mask[:, :self.max_frames])[0].float()

    @torch.no_grad()
    def predict_video_level(self, mean_rgb: torch.Tensor, mean_audio: torch.Tensor) -> torch.Tensor:
        """Mean features [B, 1024] / [B, 128] (float) -> probabilities [B, C]."""
        if not self.video_level:
            raise ValueError("a frame-level model takes frames: use predict")
        d = self.device
        return self.model(mean_rgb.to(d, torch.float32), mean_audio.to(d, torch.float32))[0].float()


def load_for_inference(path: str, device: str | torch.device = "cpu") -> LoadedModel:
    """A checkpoint file or run folder -> LoadedModel in eval mode; UsageError if unusable."""
    device = torch.device(device)
    state = read_checkpoint(path)
    config = ModelConfig.from_dict(state["model_config"])
    model = build_model(config)
    try:
        model.load_state_dict(state["model"])
    except RuntimeError as e:
        raise UsageError(f"{checkpoint_path(path)} does not match its own model configuration "
                         f"({str(e).splitlines()[0]}). Retrain or pass another --model.") from None
    model.to(device).eval()
    vocabulary = Vocabulary(list(state["vocabulary_names"]), name=state["vocabulary_name"])
    return LoadedModel(model, config, Representation.from_json(state["representation"]), vocabulary,
                       int(state.get("max_frames", DEFAULT_MAX_FRAMES)), device, checkpoint_path(path))
