"""Commands that use a trained model on new inputs: classify, predict, serve.

Light at import time (torch and the extractor are imported inside the run
functions), so that `pipeline.py --help` stays fast.

Where reports go: `classify` writes `report-classify.json` (clips that could not
be decoded, each with its reason) into `--report-dir` (default: the current
folder); `predict` writes `report-predict.json` next to its CSV.
"""
from __future__ import annotations

import argparse
import os
import sys

from yt8m.assets import DEFAULT_PCA_DIR

from .config import KAGGLE_TOP_K, LABELS_PER_CLIP


def _add_model(p: argparse.ArgumentParser) -> None:
    from .cli import MODEL_HELP

    p.add_argument("--model", default=None, help=MODEL_HELP)


def _add_extraction(p: argparse.ArgumentParser) -> None:
    """How clips are extracted: the flags of `extract`, except that --random-weights
    defaults to whatever the model was trained on."""
    from extract.cli import add_backbone_flags

    add_backbone_flags(p)
    p.set_defaults(random_weights=None)
    p.add_argument("--no-random-weights", dest="random_weights", action="store_false",
                   help="the published backbones even if the model was trained on random ones")
    p.add_argument("--pca-dir", default=DEFAULT_PCA_DIR, metavar="DIR",
                   help=f"PCA parameters, the same as the training data's (default {DEFAULT_PCA_DIR})")


SERVE_FLAGS = ["host", "port", "token", "timeout_s", "max_queue", "body_timeout_s",
               "idle_timeout_s", "max_connections", "max_pixels", "max_duration_s",
               "max_channels", "max_pixels_in_flight", "max_batch"]


def add_commands(commands: argparse._SubParsersAction) -> None:
    _add_classify(commands)
    _add_predict(commands)
    _add_serve(commands)


def _add_classify(commands: argparse._SubParsersAction) -> None:
    from yt8m.cli_util import add_quiet

    p = commands.add_parser(
        "classify", help="raw clips -> ranked labels with names and scores",
        description="Classify video files: the extraction code path (decode, backbones, PCA, "
                    "quantization), then the model. Refuses clips whose features would be made "
                    "differently from the model's training data (exit 2). Clips that cannot be "
                    "decoded are listed with the reason in report-classify.json; the others are "
                    "still classified (exit 3).")
    p.add_argument("clips", nargs="+", metavar="CLIP", help="video files")
    _add_model(p)
    p.add_argument("--top-k", type=int, default=LABELS_PER_CLIP, metavar="K",
                   help=f"labels per clip (default {LABELS_PER_CLIP})")
    p.add_argument("--json", action="store_true",
                   help='print a JSON list: {"video", "labels": [{"id", "name", "score"}], '
                        '"random_weights"} per clip')
    p.add_argument("--segments", action="store_true",
                   help="also label every 5-second segment (start and end time in seconds)")
    p.add_argument("--report-dir", default=".", metavar="DIR",
                   help="where report-classify.json goes when clips are rejected (default: here)")
    _add_extraction(p)
    add_quiet(p)
    p.set_defaults(run=run_classify)


def _add_predict(commands: argparse._SubParsersAction) -> None:
    from yt8m.cli_util import add_device, add_quiet

    p = commands.add_parser(
        "predict", help="shards -> Kaggle CSV (VideoId,LabelConfidencePairs)",
        description="Predict every video of a shard folder into the Kaggle submission format: "
                    'one row per video, the top 20 "label_id confidence" pairs ("%%i %%g"), best '
                    "first (all classes when the vocabulary has fewer than 20). Streams over "
                    "shards of any size with bounded memory. Refuses shards made differently "
                    "from the model's training data (exit 2); damaged shards are skipped and "
                    "listed in report-predict.json next to the CSV (exit 3).")
    _add_model(p)
    p.add_argument("--data", required=True, metavar="DIR", help="shard folder")
    p.add_argument("--out", required=True, metavar="FILE.csv", help="the CSV to write")
    p.add_argument("--batch-size", type=int, default=64, metavar="N", help="videos per model call")
    p.add_argument("--top-k", type=int, default=KAGGLE_TOP_K, metavar="K",
                   help=f"label-score pairs per video (default {KAGGLE_TOP_K}, the Kaggle format; "
                        "the number of classes keeps every class's score)")
    add_device(p)
    add_quiet(p)
    p.set_defaults(run=run_predict)


def _add_serve(commands: argparse._SubParsersAction) -> None:
    from yt8m.cli_util import add_fields, add_quiet

    from .serve.guard import ServeSettings

    defaults = ServeSettings()
    p = commands.add_parser(
        "serve", help="HTTP service: POST a video, get its labels as JSON",
        description="Serve a model over HTTP (FastAPI + uvicorn). GET / is a page to try it "
                    "in a browser; POST /classify with the multipart field `video` answers with "
                    "the clip's object of classify --json (query segments=1 adds 5-second "
                    "segments); GET /health; GET /labels. Example: curl -F video=@clip.mp4 "
                    "http://127.0.0.1:8000/classify")
    _add_model(p)
    add_fields(p, ServeSettings, SERVE_FLAGS)
    max_mb, wait_ms = defaults.max_upload_bytes / (1 << 20), defaults.batch_wait_s * 1000
    p.add_argument("--max-upload-mb", type=float, default=max_mb, metavar="MB",
                   help=f"largest accepted request body (default {max_mb:g}); larger ones get 413")
    p.add_argument("--batch-wait-ms", type=float, default=wait_ms, metavar="MS",
                   help=f"how long the first request of a batch waits for others "
                        f"(default {wait_ms:g})")
    add_fields(p, ServeSettings, ["top_k", "temp_dir"])
    _add_extraction(p)
    add_quiet(p)
    p.set_defaults(run=run_serve)


# --------------------------------------------------------------------------- shared setup

def load_classifier(args: argparse.Namespace, top_k: int, segments: bool = False):
    """The model, then an extractor made to match it (unless flags say otherwise), checked."""
    from model.training.checkpoint import load_for_inference
    from yt8m.cli_util import resolve_device, top_k_problem

    from .inference import Classifier, ClassifyOptions
    from .pretrained import resolve_model

    if why := top_k_problem(getattr(args, "top_k", 1)):
        from yt8m.errors import UsageError
        raise UsageError(why + ".")
    device = resolve_device(args.device)
    loaded = load_for_inference(resolve_model(args.model), device)
    random_weights = args.random_weights
    if random_weights is None:
        random_weights = loaded.representation.random_weights
        if random_weights:
            print(f"note: {loaded.path} was trained on features from randomly initialised "
                  "backbones, so clips are extracted the same way (--random-weights): its "
                  "labels say nothing about the clips' content.", file=sys.stderr)
    extractor = build_extractor(args, device, random_weights)
    return Classifier(loaded, extractor, ClassifyOptions(top_k=top_k, segments=segments))


def build_extractor(args: argparse.Namespace, device, random_weights: bool):
    """Extraction's in-process API with the backbones loaded once (the same code as `extract`)."""
    from extract.cli import config_from_args
    from extract.extractor import Extractor
    from yt8m.errors import UsageError

    try:
        config = config_from_args(args, device=str(device), random_weights=random_weights)
    except ValueError as e:
        raise UsageError(f"{e}.") from None
    return Extractor(config)


# --------------------------------------------------------------------------- classify

def run_classify(args: argparse.Namespace) -> int:
    import json

    from yt8m.cli_util import progress
    from yt8m.errors import RejectedInput
    from yt8m.report import Report

    classifier = load_classifier(args, args.top_k, args.segments)
    report = Report("classify")
    results = []
    with progress(total=len(args.clips), desc="classify", quiet=args.quiet, unit="clip") as bar:
        for name, got in classifier.classify(args.clips):
            bar.update(1)
            if isinstance(got, RejectedInput):
                report.reject(name, got.reason)
                continue
            report.done += 1
            results.append(got)
            if not args.json:
                print(format_result(got), flush=True)
    if args.json:
        print(json.dumps([r.to_json() for r in results], indent=1))
    report.write(args.report_dir)
    return report.exit_code


def format_result(result) -> str:
    """A clip's ranked labels as text; segments with their three best labels."""
    head = result.video
    if result.random_weights:
        head += "  [random weights: smoke-test features, not YouTube-8M's]"
    if not result.has_audio:
        head += "  [no audio track]"
    lines = [head]
    width = len(str(len(result.labels)))
    for rank, label in enumerate(result.labels, 1):
        lines.append(f"  {rank:>{width}}. {label['score']:.4f}  {label['name']} ({label['id']})")
    for seg in result.segments or []:
        best = ", ".join(f"{l['name']} {l['score']:.3f}" for l in seg["labels"][:3])
        lines.append(f"  {seg['start_time']:>4}-{seg['end_time']:<4}s  {best}")
    return "\n".join(lines)


# --------------------------------------------------------------------------- predict

def run_predict(args: argparse.Namespace) -> int:
    from model.training.checkpoint import load_for_inference
    from yt8m.cli_util import resolve_device, top_k_problem
    from yt8m.errors import UsageError
    from yt8m.report import Report

    from .inference import predict_to_csv
    from .pretrained import resolve_model

    if why := top_k_problem(args.top_k):
        raise UsageError(why + ".")
    loaded = load_for_inference(resolve_model(args.model), resolve_device(args.device))
    summary = predict_to_csv(loaded, args.data, args.out, args.batch_size, args.top_k,
                             quiet=args.quiet)
    report = Report("predict", done=summary.videos)
    for problem in summary.rejected:  # a damaged video told in full: what to do included
        report.add(problem.in_full())
    report.write(os.path.dirname(os.path.abspath(args.out)))
    print(f"{summary.videos} videos -> {args.out}", file=sys.stderr)
    return report.exit_code


# --------------------------------------------------------------------------- serve

def run_serve(args: argparse.Namespace) -> int:
    import dataclasses

    from yt8m.cli_util import fields_from_args

    from .serve.app import serve
    from .serve.guard import ServeSettings, resolve_token

    settings = dataclasses.replace(
        fields_from_args(ServeSettings, args, SERVE_FLAGS),
        max_upload_bytes=int(args.max_upload_mb * 1024 * 1024),
        batch_wait_s=args.batch_wait_ms / 1000.0, top_k=args.top_k, temp_dir=args.temp_dir,
        quiet=args.quiet)
    resolve_token(settings)  # a public address without a token: refused before loading
    classifier = load_classifier(args, args.top_k)
    serve(classifier, settings)
    return 0
