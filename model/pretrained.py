"""The published YouTube-8M model, ready to use, and which model a command uses.

`download` fetches PaddlePaddle's `NEXTVLAD.pdparams` into the weights folder
(the cache by default) and converts it on arrival into
`<cache>/models/nextvlad-youtube8m-paddle/`, a model folder like a training
run's. Commands that take `--model` use, when it is not given, `runs/latest`
when it exists, else that converted model, and say which one they use.
"""
from __future__ import annotations

import os
import sys

from yt8m.assets import Weights, cache_dir, fetch, sha256_of
from yt8m.errors import UsageError
from yt8m.vocabulary import Vocabulary

from .checkpoint import CHECKPOINT, Checkpoint
from .paddle_nextvlad import PADDLE_NEXTVLAD, PRETRAINED_FOLDER, PaddleLayout, convert_file

LATEST_RUN = "runs/latest"


def pretrained_dir() -> str:
    return os.path.join(cache_dir(), "models", PRETRAINED_FOLDER)


def download_pretrained(weights_dir: str | None = None, quiet: bool = False,
                        published: Weights = PADDLE_NEXTVLAD, layout: PaddleLayout | None = None,
                        vocabulary: Vocabulary | None = None) -> str:
    """Fetch the published file (resumable) and convert it unless already converted; the
    model folder. The official vocabulary's names are used when they are in the cache.
    (`published`, `layout`, `vocabulary`: what is published; other values serve tests.)"""
    source = fetch(published.asset, weights_dir or cache_dir(), quiet=quiet)
    folder = pretrained_dir()
    vocabulary = vocabulary or Vocabulary.official()
    if _converted_from(folder, source, vocabulary):
        return folder
    print(f"converting {source} -> {folder}", file=sys.stderr)
    convert_file(source, folder, vocabulary, require=layout or PaddleLayout())
    return folder


def _converted_from(folder: str, source: str, vocabulary: Vocabulary) -> bool:
    """The folder already holds this file's conversion, with the same label names."""
    if not os.path.isfile(os.path.join(folder, CHECKPOINT)):
        return False
    try:
        ckpt = Checkpoint.load(folder)
    except UsageError:
        return False
    return ckpt.origin.get("sha256") == sha256_of(source) and \
        ckpt.vocabulary.names == vocabulary.names


def resolve_model(model: str | None) -> str:
    """--model if given; else runs/latest when it exists; else the converted published
    model. Says on stderr which one it picked; UsageError when there is none."""
    if model:
        return model
    if os.path.exists(os.path.join(LATEST_RUN, CHECKPOINT)):
        print(f"model: {LATEST_RUN} (your latest training run)", file=sys.stderr)
        return LATEST_RUN
    folder = pretrained_dir()
    if os.path.isfile(os.path.join(folder, CHECKPOINT)):
        print(f"model: the published YouTube-8M NeXtVLAD (PaddlePaddle, converted), {folder}",
              file=sys.stderr)
        return folder
    asset = PADDLE_NEXTVLAD.asset
    raise UsageError(
        f"no model to use: there is no {LATEST_RUN} (train one with `python pipeline.py train`) "
        "and the published YouTube-8M model is not downloaded. Run `python pipeline.py "
        f"download` to fetch and convert it; offline, download {asset.filename} from "
        f"{asset.url} by hand and run `python pipeline.py convert-checkpoint --from paddle "
        f"{asset.filename} --out {folder}`. Or pass --model with a model folder.")
