"""Commands of the model stage: verify, train, evaluate, download, convert-checkpoint
(classify, predict and serve live in `inference_cli`).

Imports nothing heavy at module level, so `pipeline.py --help` stays fast.
"""
from __future__ import annotations

import argparse

from yt8m.cli_util import LATEST_RUN as DEFAULT_MODEL

MODEL_FLAGS = ["name", "clusters", "groups", "audio_clusters", "audio_groups", "expansion",
               "hidden_size", "gating_reduction", "dropout", "classifier", "mixtures", "branches",
               "temperature", "distill_weight", "reverse_whitening"]
TRAIN_FLAGS = ["init_from", "freeze", "pca_dir", "epochs", "steps", "batch_size", "lr",
               "warmup_steps", "lr_decay", "decay_examples", "clip_norm", "max_frames", "out",
               "checkpoint_every", "log_every", "workers", "seed", "precision", "shuffle_buffer",
               "compile"]
MODEL_HELP = ("model folder or checkpoint file (default: runs/latest when it exists, else the "
              "published YouTube-8M model that `download` converts)")


def add_commands(commands: argparse._SubParsersAction) -> None:
    from model.architectures.config import ModelConfig
    from model.training.config import TrainConfig
    from yt8m.cli_util import add_device, add_fields, add_quiet

    _add_verify(commands)
    p = commands.add_parser(
        "train", help="train a model on shards; writes a run folder and points runs/latest at it",
        description="Train NeXtVLAD (default) or a baseline on frame-level shards, or a "
                    "video-level model on video-level shards. Defaults follow the NeXtVLAD paper. "
                    "With --init-from it fine-tunes a trained model (the published one, or a run) "
                    "on the data's own labels, with defaults for a few hundred videos. "
                    "Under torchrun it trains data-parallel.")
    add_fields(p, TrainConfig, ["data", "val"])
    add_fields(p, ModelConfig, MODEL_FLAGS, name="--model")
    add_fields(p, TrainConfig, TRAIN_FLAGS)
    p.add_argument("--resume", nargs="?", const=DEFAULT_MODEL, default=None, metavar="RUN",
                   help="continue a run exactly (a run folder or checkpoint; default runs/latest) "
                        "with its own settings; flags given again override them")
    add_device(p)
    add_quiet(p)
    # None marks a flag not given: the dataclasses fill in their defaults, and --resume
    # keeps the run's own value of every flag not given again.
    p.set_defaults(run=run_train, **{name: None for name in ["data", "val", *MODEL_FLAGS,
                                                             *TRAIN_FLAGS]})

    p = commands.add_parser(
        "evaluate", help="GAP@20, mAP, Hit@1, PERR of a model on shards",
        description="Evaluate a trained model with the YouTube-8M starter code's metrics "
                    "(and the 2019 segment mAP on segment-rated shards). Refuses shards made "
                    "differently from the model's training data.")
    p.add_argument("--model", default=None, help=MODEL_HELP)
    p.add_argument("--data", required=True, help="shards to evaluate on")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--top-k", type=int, default=20, help="entries per video for GAP and mAP (default 20)")
    p.add_argument("--workers", type=int, default=0, help="data loader processes (default 0)")
    p.add_argument("--report-dir", default=".", metavar="DIR",
                   help="where report-evaluate.json goes when videos are damaged (default: here)")
    add_device(p)
    add_quiet(p)
    p.set_defaults(run=run_evaluate)
    _add_download(commands)
    _add_convert(commands)


def _add_verify(commands: argparse._SubParsersAction) -> None:
    from yt8m.cli_util import add_quiet

    p = commands.add_parser(
        "verify", help="check every video's checksum, in shards or official TFRecords",
        description="Reads every video of --data, checking it as train, evaluate and predict "
                    "read it: in shards, each file and each video's CRC32C; in official "
                    "TFRecords (a folder of *.tfrecord or a glob), each record's CRCs and "
                    "its parse. Damaged files, videos and records are listed in "
                    "report-verify.json (exit 3); nothing is changed.")
    p.add_argument("--data", required=True, metavar="DIR",
                   help="shard folder, or TFRecords (a folder of *.tfrecord or a quoted glob)")
    p.add_argument("--report-dir", default=None, metavar="DIR",
                   help="where report-verify.json goes (default: the data's folder)")
    add_quiet(p)
    p.set_defaults(run=run_verify)


def _add_download(commands: argparse._SubParsersAction) -> None:
    from yt8m.assets import DEFAULT_PCA_DIR, MIRROR_ENV
    from yt8m.cli_util import add_quiet

    p = commands.add_parser(
        "download", help="fetch (or with --check, list) every published file the toolkit uses",
        description="Fetches every published file, each on its own and verified (checksum, "
                    "or structure where none is published): the backbone weights (into "
                    "--weights-dir, default the cache), the PCA parameters (into --pca-dir), "
                    "YouTube-8M's vocabulary.csv (into --vocabulary-dir, default the cache), "
                    "PaddlePaddle's YouTube-8M NeXtVLAD (into --weights-dir, converted on "
                    "arrival into the model classify, predict, evaluate and serve use by "
                    "default) and the reference files of the golden checks. Ends with one "
                    "table: each file, what it is for, its state, its URL and the folder it "
                    "belongs in. Interrupted downloads continue where they stopped. Exit 2 "
                    "when a file needed for real features or labels is missing.")
    p.add_argument("--check", action="store_true",
                   help="print the table from what is on disk, without network")
    p.add_argument("--mirror", default=None, metavar="URL",
                   help=f"fetch every file from URL/FILENAME, a server holding the files by "
                        f"name (default: ${MIRROR_ENV}, else the published URLs); with "
                        "--dataset: us, eu or asia (default us)")
    p.add_argument("--weights-dir", default=None, metavar="DIR")
    p.add_argument("--pca-dir", default=DEFAULT_PCA_DIR, metavar="DIR")
    p.add_argument("--vocabulary-dir", default=None, metavar="DIR",
                   help="where vocabulary.csv goes (default: the cache folder)")
    p.add_argument("--no-model", action="store_true",
                   help="skip the published NeXtVLAD (341 MB)")
    p.add_argument("--dataset", metavar="PARTITION",
                   help="instead: download official YouTube-8M TFRecords of a partition "
                        "(e.g. 2/frame/train, 3/frame/validate) and the vocabulary")
    p.add_argument("--part", default=None, metavar="X,Y",
                   help="with --dataset: only a 1/Y fraction (X,Y as the official "
                        "download.py, 1-based; or I/N, 0-based)")
    p.add_argument("--out", default=None, metavar="DIR",
                   help="with --dataset: where to put the files (default data/yt8m/PARTITION)")
    add_quiet(p)
    p.set_defaults(run=run_download)


def _add_convert(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser(
        "convert-checkpoint", help="a published checkpoint on disk -> a model folder",
        description="Convert PaddlePaddle's YouTube-8M NeXtVLAD (NEXTVLAD.pdparams, already on "
                    "disk: the offline route of `download`) into a model folder that classify, "
                    "predict, evaluate and serve load. The file is read without running anything "
                    "in it and checked name by name and shape by shape.")
    p.add_argument("file", metavar="FILE", help="the .pdparams file")
    p.add_argument("--from", dest="source", required=True, choices=["paddle"],
                   help="the framework the file comes from")
    p.add_argument("--out", required=True, metavar="DIR", help="model folder to write (replaced)")
    p.add_argument("--vocabulary", default=None, metavar="FILE",
                   help="vocabulary.csv of the model's classes (default: YouTube-8M's, with "
                        "names when `download` has put vocabulary.csv in the cache)")
    p.add_argument("--drop-rate", type=float, default=0.5,
                   help="the dropout the model was trained with (configs/nextvlad.yaml: 0.5); "
                        "Paddle scales by 1 - p at inference")
    p.set_defaults(run=run_convert)


def run_train(args: argparse.Namespace) -> int:
    import os

    from model.architectures.config import ModelConfig
    from model.training.config import TrainConfig
    from model.training.train import train
    from yt8m.errors import EXIT_OK, EXIT_PARTIAL, UsageError

    given = {n for n in ["data", "val", *MODEL_FLAGS, *TRAIN_FLAGS] if getattr(args, n) is not None}
    if args.init_from == "published" and not os.path.exists("published"):
        from .pretrained import pretrained_dir
        args.init_from = pretrained_dir()
    try:
        mc = ModelConfig(**{n: getattr(args, n) for n in given if n in MODEL_FLAGS})
    except ValueError as e:
        raise UsageError(str(e)) from None
    tc = TrainConfig(**{n: getattr(args, n) for n in given if n not in MODEL_FLAGS},
                     resume=args.resume, device=args.device, quiet=args.quiet)
    run_dir = train(tc, mc, given)
    if run_dir:
        print(run_dir)
    damaged = run_dir and os.path.exists(os.path.join(run_dir, "report-train.json"))
    return EXIT_PARTIAL if damaged else EXIT_OK


def run_evaluate(args: argparse.Namespace) -> int:
    import json
    import sys

    from model.training.checkpoint import load_for_inference
    from model.training.evaluate import evaluate
    from yt8m.cli_util import resolve_device
    from yt8m.errors import NoUsableData, Problem
    from yt8m.report import Report

    from .pretrained import resolve_model

    loaded = load_for_inference(resolve_model(args.model), resolve_device(args.device))
    damaged: list[Problem] = []
    try:
        result = evaluate(loaded, args.data, args.batch_size, args.workers, args.top_k,
                          args.quiet, damaged)
    except NoUsableData as e:  # nothing to measure: no metrics, the damage reported
        result, damaged = {}, e.damaged
        print(f"evaluate: {e}; no metrics were computed.", file=sys.stderr)
    report = Report("evaluate")
    for problem in damaged:
        report.add(problem, "damaged, left out")
    if args.json and result:
        print(json.dumps(result))
    else:
        names = {"gap": f"GAP@{args.top_k}", "map": "mAP", "hit_at_1": "Hit@1", "perr": "PERR",
                 "segment_map": "segment mAP"}
        for key, value in result.items():
            print(f"{names[key]:>12}: {value:.4f}")
    if damaged:
        print(f"evaluate: {len(damaged)} damaged video(s) left out of the metrics; see "
              f"{report.write(args.report_dir)}", file=sys.stderr)
    return report.exit_code


def run_verify(args: argparse.Namespace) -> int:
    """Every video of the data read once, through the interface train, evaluate and predict
    use: a damaged one is reported in its place, and reading goes on."""
    import os
    import sys

    from model.training.sources import open_source
    from yt8m.cli_util import progress
    from yt8m.errors import DAMAGED, NoUsableData, Problem
    from yt8m.report import Report

    report = Report("verify")
    out = args.report_dir or (args.data if os.path.isdir(args.data)
                              else os.path.dirname(args.data) or ".")  # a glob's folder

    def add(problem: Problem) -> None:  # a file refused whole is named as it was refused
        report.add(problem, "damaged" if problem.kind == DAMAGED else "")

    try:
        source = open_source(args.data, strict=False)
    except NoUsableData as e:  # not one file or record could be read: each is listed
        for problem in e.damaged:
            add(problem)
        print(f"verify: no usable video in {args.data}; {len(report.problems)} problem(s)",
              file=sys.stderr)
        report.write(out)
        return report.exit_code
    with source, progress(total=len(source), desc="verify", quiet=args.quiet,
                          unit="video") as bar:
        for problem in source.refused:
            add(problem)
        for got in source.read():
            bar.update(1)
            if isinstance(got, Problem):
                add(got)
            else:
                report.done += 1
    stored = source.storage
    print(f"verify: {report.done} video(s) in {stored.files} {stored.noun}(s) are intact"
          + (f" ({stored.unchecked} in format-1 shards carry no checksum)"
             if stored.unchecked else "")
          + (f"; {len(report.problems)} problem(s)" if report.problems else ""), file=sys.stderr)
    report.write(out)
    return report.exit_code


def run_download(args: argparse.Namespace) -> int:
    """Every asset is tried on its own; the table says what is where (exit 2 when something
    needed for real features or labels is missing)."""
    import os

    from yt8m.assets import MIRROR_ENV, cache_dir
    from yt8m.errors import UsageError
    from yt8m.inventory import run
    from yt8m.vocabulary import download_official

    if args.dataset:
        # Official features need no backbones: the partition and the vocabulary only.
        from yt8m.dataset_download import MIRRORS
        from yt8m.dataset_download import run_download as download_dataset

        args.mirror = args.mirror or "us"
        if args.mirror not in MIRRORS:
            raise UsageError(f"--mirror {args.mirror!r} with --dataset: choose one of "
                             f"{', '.join(MIRRORS)} (the dataset's own mirrors).")
        code = download_dataset(args)
        print(download_official(args.vocabulary_dir or cache_dir(), quiet=args.quiet))
        return code
    from .pretrained import published_assets

    mirror = args.mirror or os.environ.get(MIRROR_ENV) or None
    if mirror and not mirror.startswith(("http://", "https://")):
        raise UsageError(f"--mirror {mirror!r}: give the URL of a server holding the files by "
                         "name, e.g. http://files.example.org/yt8m (us, eu and asia name the "
                         "dataset's mirrors, for --dataset).")
    placed = published_assets(args.weights_dir, args.pca_dir, args.vocabulary_dir,
                              model=not args.no_model)
    return run(placed, mirror, check_only=args.check, quiet=args.quiet)


def run_convert(args: argparse.Namespace) -> int:
    import sys

    from yt8m.vocabulary import Vocabulary

    from .paddle_nextvlad import convert_file

    vocabulary = Vocabulary.load(args.vocabulary) if args.vocabulary else Vocabulary.official()
    converted = convert_file(args.file, args.out, vocabulary, drop_rate=args.drop_rate)
    print(f"{args.file} (sha256 {converted.sha256[:16]}...) -> {converted.folder}", file=sys.stderr)
    print(converted.folder)
    return 0
