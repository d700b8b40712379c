"""`train --init-from MODEL [--freeze body|none]`: fine-tuning a model on one's own labels.

A run starts from a model folder (the converted published model, or any run): it takes
that model's architecture, copies its feature layers (every parameter and buffer outside
the classifier: frame expansion, NeXtVLAD aggregation, hidden layer, context gating)
and rebuilds the classifier for the vocabulary of the training data. A class of the new
vocabulary that the old one has too (the same name, or the same KnowledgeGraph id, from
either vocabulary's `vocabulary.csv`) gets its old classifier row; the others start
from the usual random initialisation.

Before anything is trained, the model flags given and the data are compared with the
initial model, and every difference is named at once (exit 2): features made another
way would mean nothing to the copied layers.

`--freeze body` trains the classifier only, with the feature layers in inference mode
(batch norm keeps its statistics, dropout is off), so they stay bit-identical.
The run folder records the initial model (name, file, sha256 of its checkpoint) in
`config.json` and in the checkpoint's `origin`; `--resume` continues such a run like
any other (the initial model is not read again).
"""
from __future__ import annotations

import dataclasses
import os
import sys
from dataclasses import dataclass, field

import torch

from model.architectures.config import ModelConfig, build_model
from yt8m.assets import sha256_of
from yt8m.errors import UsageError
from yt8m.store import ShardMeta
from yt8m.vocabulary import FILENAME as VOCABULARY_FILE
from yt8m.vocabulary import Vocabulary

from . import checkpoint as ckpt
from .config import FINETUNE_DEFAULTS, FREEZE_CHOICES, FROZEN_LR, TrainConfig

# Settings that shape training only, not the weights' layout: a fine-tune may change them.
TRAINING_ONLY = ("dropout", "temperature", "distill_weight", "num_classes")


def is_classifier(key: str) -> bool:
    """A state-dict key of a classifier (every architecture names that module `classifier`)."""
    return "classifier" in key.split(".")


@dataclass
class Start:
    """The model a fine-tune starts from, and what the new run makes of it."""

    path: str  # its checkpoint file
    checkpoint: ckpt.Checkpoint
    config: ModelConfig  # the new run's architecture: the initial one, training settings as given
    problems: list[str] = field(default_factory=list)  # differences found so far

    @property
    def name(self) -> str:
        """The folder's name (`nextvlad-youtube8m-paddle`, a run's `<time>-<model>`)."""
        return os.path.basename(os.path.dirname(os.path.realpath(self.path)))


def check_flags(tc: TrainConfig, given: set[str]) -> None:
    """UsageError for --init-from / --freeze combinations that cannot mean anything."""
    if tc.freeze not in FREEZE_CHOICES:
        raise UsageError(f"--freeze {tc.freeze!r}: choose one of {', '.join(FREEZE_CHOICES)}.")
    if tc.resume and given & {"init_from", "freeze"}:
        raise UsageError("--init-from and --freeze start a fine-tune; --resume continues a run "
                         "(a fine-tune included) with its own. Give one or the other.")
    if not tc.resume and tc.freeze != "none" and not tc.init_from:
        raise UsageError(f"--freeze {tc.freeze} keeps a trained model's feature layers and needs "
                         "--init-from MODEL (a model folder, or `published`).")


def with_defaults(tc: TrainConfig, given: set[str]) -> TrainConfig:
    """The fine-tune defaults (FINETUNE_DEFAULTS, FROZEN_LR) for the settings not given."""
    # A frozen body has nothing a warm-up would protect: only the classifier learns.
    frozen = {"lr": FROZEN_LR, "warmup_steps": 0}
    defaults = dict(FINETUNE_DEFAULTS, **(frozen if tc.freeze == "body" else {}))
    return dataclasses.replace(tc, **{k: v for k, v in defaults.items() if k not in given})


def load_start(path: str, mc: ModelConfig, given: set[str]) -> Start:
    """The initial model (read as every model is: `Checkpoint.load`) and the new run's
    architecture; differences of the model flags given are collected, not raised."""
    file = ckpt.checkpoint_path(path)
    if not os.path.isfile(file):
        raise UsageError(f"--init-from {path}: there is no model there ({ckpt.CHECKPOINT} not "
                         "found). Give a model folder written by `train`, `download` or "
                         "`convert-checkpoint`, or `published` after `python pipeline.py download`.")
    initial = ckpt.Checkpoint.load(file)
    flags = sorted(n for n in given if n in {f.name for f in dataclasses.fields(ModelConfig)})
    problems = [f"{'--model' if n == 'name' else '--' + n.replace('_', '-')} {getattr(mc, n)} vs "
                f"the initial model's {getattr(initial.config, n)}"
                for n in flags if n not in TRAINING_ONLY and getattr(mc, n) != getattr(initial.config, n)]
    config = dataclasses.replace(initial.config, **{n: getattr(mc, n) for n in flags
                                                    if n in TRAINING_ONLY})
    problems += layout_differences(config, initial)
    return Start(file, initial, config, problems)


def layout_differences(config: ModelConfig, initial: ckpt.Checkpoint) -> list[str]:
    """Where the weights of `config`'s model cannot hold the initial weights: missing or
    extra tensors, other shapes (feature dimensions), classifier rows of another size."""
    with torch.device("meta"):  # shapes only: nothing allocated, nothing initialised
        shapes = {k: tuple(v.shape) for k, v in build_model(config).state_dict().items()}
    old = {k: tuple(v.shape) for k, v in initial.weights.items()}
    problems = [f"the initial model has no {k}" for k in sorted(shapes) if k not in old]
    problems += [f"the initial model has {k}, which this model has not" for k in sorted(old)
                 if k not in shapes]
    for key in sorted(shapes.keys() & old.keys()):
        new, have = shapes[key], old[key]
        if is_classifier(key):  # rows per class (MoE: one per expert and gate) and their width
            new = (new[0] // max(config.num_classes, 1), *new[1:])
            have = (have[0] // max(len(initial.vocabulary), 1), *have[1:])
        if new != have:
            problems.append(f"{key}: shape {list(old[key])} in the initial model, "
                            f"{list(shapes[key])} here")
    return problems


def check_data(start: Start, data) -> None:
    """UsageError naming every difference (flags, layout, the data's kind and representation)
    unless the data (shards or TFRecords) was made like the initial model's training data."""
    initial = start.checkpoint
    # The store's rule between data sets, the vocabulary aside (a fine-tune changes it).
    trained_on = ShardMeta(initial.data_kind, initial.representation, data.meta.vocabulary)
    data_problems = data.meta.mismatch(trained_on)
    problems = start.problems + [f"the data's {p}" for p in data_problems]
    if not problems:
        return
    hint = ("Extract your videos the way the initial model's training data was made (for the "
            "published model: the published backbone weights and PCA, which `python pipeline.py "
            "download` fetches; not --random-weights, not fitted PCA), "
            if data_problems else "")
    raise UsageError(
        f"--init-from {start.path} cannot start this run; it differs from the initial model "
        f"(this run vs the initial model): " + "; ".join(problems) + ". " + hint
        + "Leave out the model flags that differ (the initial model's architecture is used), "
          "or train from scratch without --init-from.")


def initial_vocabulary(start: Start) -> Vocabulary:
    """The initial model's classes; with the KnowledgeGraph ids of the `vocabulary.csv`
    beside its checkpoint when that file lists the same names (the checkpoint keeps names)."""
    names = start.checkpoint.vocabulary
    path = os.path.join(os.path.dirname(start.path), VOCABULARY_FILE)
    if os.path.isfile(path):
        try:
            beside = Vocabulary.load(path, name=names.name)
        except UsageError:
            return names
        if beside.names == names.names:
            return beside
    return names


def _kg_id(vocabulary: Vocabulary, i: int) -> str:
    return (vocabulary.rows[i].get("KnowledgeGraphId") or "").strip() if i < len(vocabulary.rows) else ""


def shared_classes(new: Vocabulary, old: Vocabulary) -> dict[int, tuple[int, str]]:
    """New class id -> (old class id, how it was matched) for the classes both have: the
    same vocabulary entirely, else the same KnowledgeGraph id, the same name, a name that
    is the other's KnowledgeGraph id, or the same name but for case."""
    if new.fingerprint == old.fingerprint:
        return {i: (i, "same vocabulary") for i in range(len(new))}
    by_kg, by_name, by_folded = {}, {}, {}
    for j, name in enumerate(old.names):
        if _kg_id(old, j):
            by_kg.setdefault(_kg_id(old, j), j)
        if name.strip():
            by_name.setdefault(name.strip(), j)
            by_folded.setdefault(name.strip().casefold(), j)
    shared = {}
    for i, name in enumerate(new.names):
        name, kg = name.strip(), _kg_id(new, i)
        for table, key, how in ((by_kg, kg, "KnowledgeGraph id"), (by_name, name, "name"),
                                (by_kg, name, "KnowledgeGraph id"),
                                (by_folded, name.casefold(), "name")):
            if key and key in table:
                shared[i] = (table[key], how)
                break
    return shared


@torch.no_grad()
def initialise(model: torch.nn.Module, start: Start, vocabulary: Vocabulary,
               freeze: str, say: bool = True) -> dict[str, str]:
    """Copy the feature layers and the shared classes' classifier rows into `model` (built
    for `vocabulary`, randomly initialised); the record of it for the run folder. `say`:
    one line on stderr, even with --quiet (which silences progress), of what was copied."""
    old_weights, old_vocab = start.checkpoint.weights, initial_vocabulary(start)
    shared = shared_classes(vocabulary, old_vocab)
    state = model.state_dict()
    for key, value in state.items():
        old = old_weights[key].to(value.device, value.dtype)
        if not is_classifier(key):
            value.copy_(old)
            continue
        rows = value.view(len(vocabulary), -1, *value.shape[1:])
        old_rows = old.view(len(old_vocab), -1, *old.shape[1:])
        for i, (j, _) in shared.items():
            rows[i] = old_rows[j]
    if say:
        matched = ", ".join(f"{vocabulary.name_of(i)} ({how})" for i, (_, how) in sorted(shared.items()))
        print(f"fine-tuning from {start.path}: feature layers copied; classifier rebuilt for "
              f"{len(vocabulary)} classes, {len(shared)} of them from the initial model's rows"
              + (f": {matched}" if shared and len(shared) <= 20 else "")
              + f"; training {'the classifier only' if freeze == 'body' else 'everything'}.",
              file=sys.stderr)
    return {"init_from": start.name, "init_from_file": os.path.realpath(start.path),
            "init_from_sha256": sha256_of(start.path), "freeze": freeze,
            "classes_from_init": str(len(shared)), "classes": str(len(vocabulary)),
            **{f"init_origin_{k}": str(v) for k, v in start.checkpoint.origin.items()
               if not k.startswith("init")}}


def trainable(model: torch.nn.Module, freeze: str) -> list[torch.nn.Parameter]:
    """The parameters to optimise. `body`: the classifier's only; the rest stops taking
    gradients and runs in inference mode during training too (a hook on every forward,
    since the loop and validation switch the whole model between modes)."""
    if freeze != "body":
        return list(model.parameters())
    for key, param in model.named_parameters():
        param.requires_grad_(is_classifier(key))
    body = [m for name, m in model.named_modules() if name and not is_classifier(name)]

    def body_in_inference_mode(module: torch.nn.Module, args) -> None:
        for m in body:
            m.training = False

    model.register_forward_pre_hook(body_in_inference_mode)
    return [p for key, p in model.named_parameters() if is_classifier(key)]
