"""The published YouTube-8M model, ready to use, which model a command uses, and the one
list of published assets `download` works through.

`download` fetches PaddlePaddle's `NEXTVLAD.pdparams` into the weights folder
(the cache by default), proves it by its parameter names and shapes, and converts it
on arrival into `<cache>/models/nextvlad-youtube8m-paddle/`, a model folder like a
training run's. Commands that take `--model` use, when it is not given, `runs/latest`
when it exists, else that converted model, and say which one they use.
"""
from __future__ import annotations

import dataclasses
import os
import sys

from model.training.checkpoint import CHECKPOINT, Checkpoint
from yt8m.assets import LABELS, Asset, Weights, cache_dir, fetch, sha256_of
from yt8m.cli_util import LATEST_RUN
from yt8m.errors import UsageError
from yt8m.inventory import Placed
from yt8m.vocabulary import YT8M_VOCABULARY, Vocabulary

from .paddle_nextvlad import PADDLE_NEXTVLAD, PRETRAINED_FOLDER, PaddleLayout, convert_file, load_pdparams


def pretrained_dir() -> str:
    return os.path.join(cache_dir(), "models", PRETRAINED_FOLDER)


def model_asset(published: Weights = PADDLE_NEXTVLAD, layout: PaddleLayout | None = None) -> Asset:
    """The published file as `download` fetches it: no checksum is published, so it is
    proven by its layout (every parameter name and shape), and a file that fails is
    fetched anew. (`published`, `layout`: the published ones; other values serve tests.)"""
    layout = layout or PaddleLayout()

    def check(path: str) -> None:
        layout.validate(load_pdparams(path), os.path.basename(path))

    return dataclasses.replace(published.asset, purpose=LABELS, check=check)


def download_pretrained(weights_dir: str | None = None, quiet: bool = False,
                        published: Weights = PADDLE_NEXTVLAD, layout: PaddleLayout | None = None,
                        vocabulary: Vocabulary | None = None, mirror: str | None = None) -> str:
    """Fetch the published file (resumable) and convert it unless already converted; the
    model folder. The official vocabulary's names are used when they are in the cache."""
    source = fetch(model_asset(published, layout), weights_dir or cache_dir(), quiet, mirror)
    return convert_pretrained(source, layout, vocabulary)


def convert_pretrained(source: str, layout: PaddleLayout | None = None,
                       vocabulary: Vocabulary | None = None) -> str:
    """The published file on disk -> the converted model folder (unless done already)."""
    folder = pretrained_dir()
    vocabulary = vocabulary or Vocabulary.official()
    if _converted_from(folder, source, vocabulary):
        return folder
    print(f"converting {source} -> {folder}", file=sys.stderr)
    convert_file(source, folder, vocabulary, require=layout or PaddleLayout())
    return folder


def _conversion_note(source: str) -> str:
    folder = pretrained_dir()
    if _converted_from(folder, source, Vocabulary.official()):
        return f"converted into {folder}"
    return f"not converted yet into {folder}: `python pipeline.py download` converts it"


def published_assets(weights_dir: str | None = None, pca_dir: str | None = None,
                     vocabulary_dir: str | None = None, model: bool = True,
                     published: Weights = PADDLE_NEXTVLAD, layout: PaddleLayout | None = None,
                     vocabulary: Vocabulary | None = None) -> list[Placed]:
    """Every published asset and the folder it belongs in, in the order `download` fetches
    them (the vocabulary before the model, so that the model gets its label names)."""
    from extract.assets import extract_assets
    from yt8m.assets import DEFAULT_PCA_DIR

    placed = extract_assets(weights_dir, pca_dir or DEFAULT_PCA_DIR)
    placed.append(Placed(YT8M_VOCABULARY, vocabulary_dir or cache_dir()))
    placed.append(Placed(model_asset(published, layout), weights_dir or cache_dir(),
                         after=lambda path: "converted into "
                         + convert_pretrained(path, layout, vocabulary),
                         note=_conversion_note, skip="" if model else "--no-model"))
    return placed


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
