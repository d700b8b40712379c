"""Run folders and checkpoints.

A model folder (a training run, `runs/<time>-<model>/`, or a converted published
model) holds `checkpoint.pt` (a `Checkpoint`, rewritten atomically: temporary
name, fsync, rename), `config.json` (a readable summary: model and training
configuration, representation, vocabulary reference), `vocabulary.csv`, and for
runs `metrics.csv` and TensorBoard event files. `runs/latest` is a symlink to
the newest run, replaced atomically.

A checkpoint is self-contained (it carries the vocabulary names and the
representation), holds only tensors and plain Python values, and loads with
`torch.load(weights_only=True)`, after a pass over its pickle that refuses deep
nesting and compressed entries (`yt8m.safe_pickle.scan_torch_file`).
"""
from __future__ import annotations

import dataclasses
import os
import time
from dataclasses import dataclass, field

import torch

from model.architectures.config import ModelConfig, build_model
from yt8m.atomic import remove_stale_partials, replacing, write_json
from yt8m.errors import UsageError
from yt8m.representation import DEFAULT_MAX_FRAMES, Representation, dequantize
from yt8m.safe_pickle import scan_torch_file
from yt8m.vocabulary import Vocabulary

CHECKPOINT = "checkpoint.pt"
FORMAT = 2  # the layout of the saved dict (Checkpoint.save)
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
    tmp = os.path.join(out, f".{LATEST}.{os.getpid()}.partial")  # named as remove_stale_files knows
    if os.path.lexists(tmp):
        os.remove(tmp)
    os.symlink(os.path.basename(os.path.normpath(run_dir)), tmp)
    os.replace(tmp, link)


def remove_stale_files(out: str, *folders: str) -> list[str]:
    """The temporary files (a checkpoint being written is the size of the model) that
    processes killed mid-write left in `out`, in every run folder under it and in
    `folders`: those named for a process that no longer runs. Returns what was removed."""
    places = {out, *folders}
    if os.path.isdir(out):
        places.update(e.path for e in os.scandir(out) if e.is_dir(follow_symlinks=False))
    return [path for folder in sorted(places) if os.path.isdir(folder)
            for path in remove_stale_partials(folder)]


def atomic_save(obj: dict, path: str) -> None:
    with replacing(path, "wb") as f:
        torch.save(obj, f)


def write_summary(folder: str, config: ModelConfig, representation: Representation,
                  vocabulary: Vocabulary, data_kind: str, extra: dict) -> None:
    """config.json (what a person or another tool reads first) and vocabulary.csv."""
    ref = vocabulary.ref
    write_json(os.path.join(folder, CONFIG), {
        "model": dataclasses.asdict(config), "data_kind": data_kind,
        "representation": dataclasses.asdict(representation),
        "vocabulary": {"name": ref.name, "fingerprint": ref.fingerprint, "num_classes": ref.num_classes},
        **extra}, indent=1, sort_keys=True)
    vocabulary.save(folder)


def checkpoint_path(path: str) -> str:
    """A checkpoint file, or the checkpoint of a run folder (runs/latest included)."""
    if os.path.isdir(path):
        return os.path.join(path, CHECKPOINT)
    return path


@dataclass
class TrainingState:
    """What `train --resume` needs beyond the weights."""

    optimizer: dict
    scheduler: dict
    step: int
    train_config: dict


@dataclass
class Checkpoint:
    """A model with everything needed to use it (or resume training it).

    Self-contained: the vocabulary names and the representation of the features
    the model expects travel with the weights. `origin` says where the weights
    came from when they were not trained here (a converted published model: the
    source file's name and sha256).
    """

    weights: dict[str, torch.Tensor]
    config: ModelConfig
    representation: Representation
    vocabulary: Vocabulary
    data_kind: str = "frame"
    max_frames: int = DEFAULT_MAX_FRAMES
    training: TrainingState | None = None
    origin: dict[str, str] = field(default_factory=dict)

    def save(self, path: str) -> None:
        """Write atomically (temporary name, fsync, rename); plain values and tensors only."""
        atomic_save({
            "format": FORMAT, "model": self.weights, "model_config": dataclasses.asdict(self.config),
            "representation": self.representation.to_json(), "data_kind": self.data_kind,
            "max_frames": self.max_frames, "vocabulary_name": self.vocabulary.name,
            "vocabulary_names": list(self.vocabulary.names), "origin": dict(self.origin),
            "training": dataclasses.asdict(self.training) if self.training else None,
        }, path)

    @classmethod
    def load(cls, path: str, map_location: str | torch.device = "cpu") -> "Checkpoint":
        """A checkpoint file or a run/model folder; UsageError naming the file if unusable."""
        file = checkpoint_path(path)
        if not os.path.exists(file):
            raise UsageError(f"no trained model at {path}: train one with `python pipeline.py "
                             "train` (it writes runs/latest), get the published YouTube-8M model "
                             "with `python pipeline.py download`, or pass --model with a model "
                             f"folder or a {CHECKPOINT} file.")
        try:
            scan_torch_file(file)  # bounded nesting, no inflating entries: before torch builds it
            state = torch.load(file, map_location=map_location, weights_only=True)
        except Exception as e:  # truncated, not a torch file, unpicklable content
            raise UsageError(f"{file} is not a readable checkpoint ({type(e).__name__}: {e}). "
                             "Pass --model with another model folder or checkpoint file.") from None
        if not isinstance(state, dict) or state.get("format") != FORMAT:
            raise UsageError(f"{file} is not a checkpoint of this version of the toolkit. Pass "
                             "--model with a folder written by `train`, `download` or "
                             "`convert-checkpoint`.")
        training = state["training"]
        return cls(state["model"], ModelConfig.from_dict(state["model_config"]),
                   Representation.from_json(state["representation"]),
                   Vocabulary(list(state["vocabulary_names"]), name=state["vocabulary_name"]),
                   state["data_kind"], int(state["max_frames"]),
                   TrainingState(**training) if training else None, dict(state["origin"]))


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
    def predict(self, rgb: torch.Tensor, audio: torch.Tensor,
                mask: torch.Tensor | None = None) -> torch.Tensor:
        """Probabilities [B, C]. Frame-level: uint8 frames [B, T, 1024] / [B, T, 128] and
        mask [B, T]; video-level: float means [B, 1024] / [B, 128] and no mask."""
        d = self.device
        rgb, audio = rgb.to(d), audio.to(d)
        if rgb.dtype == torch.uint8:
            rgb, audio = dequantize(rgb), dequantize(audio)
        if mask is not None:
            t = self.max_frames
            rgb, audio, mask = rgb[:, :t], audio[:, :t], mask[:, :t].to(d, torch.float32)
        return self.model(rgb.float(), audio.float(), mask)[0].float()


def load_for_inference(path: str, device: str | torch.device = "cpu") -> LoadedModel:
    """A checkpoint file or model folder -> LoadedModel in eval mode; UsageError if unusable."""
    device = torch.device(device)
    ckpt = Checkpoint.load(path)
    with torch.device("meta"):  # no random init and no second copy: the loaded tensors are used
        model = build_model(ckpt.config)
    try:
        model.load_state_dict(ckpt.weights, assign=True)
    except RuntimeError as e:
        raise UsageError(f"{checkpoint_path(path)} does not match its own model configuration "
                         f"({str(e).splitlines()[0]}). Retrain or pass another --model.") from None
    model.to(device).eval()
    return LoadedModel(model, ckpt.config, ckpt.representation, ckpt.vocabulary, ckpt.max_frames,
                       device, checkpoint_path(path))
