"""Commands on shards and the official YouTube-8M data (import-yt8m, export-tfrecord).

Light at import time: the work is imported inside the run functions, so that
`pipeline.py --help` stays fast.
"""
from __future__ import annotations

import argparse

from .cli_util import DEFAULT_FEATURES as DEFAULT_OUT
from .cli_util import add_quiet


def add_commands(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser(
        "import-yt8m", help="official YouTube-8M TFRecords -> shards",
        description="Import official YouTube-8M TFRecords (frame-level v2, segment-rated v3, "
                    "video-level) into shards, without TensorFlow. One shard per input file; "
                    "a rerun skips files already imported. Damaged records are reported "
                    "(file and byte offset) and skipped: exit 3 with a report.")
    p.add_argument("--tfrecords", required=True, metavar="GLOB",
                   help="input files, e.g. 'yt8m/frame/train*.tfrecord' (quote it); a folder "
                        "means its *.tfrecord files")
    p.add_argument("--out", default=DEFAULT_OUT, metavar="DIR",
                   help=f"shard folder (default {DEFAULT_OUT})")
    p.add_argument("--workers", type=int, default=1, metavar="N",
                   help="processes reading files in parallel (default 1)")
    p.add_argument("--vocabulary", metavar="FILE", default=None,
                   help="vocabulary.csv the label ids refer to (default: the official "
                        "YouTube-8M 2018 vocabulary, 3862 classes)")
    add_quiet(p)
    p.set_defaults(run=run_import)

    p = commands.add_parser(
        "export-tfrecord", help="shards -> TFRecords in the official schema",
        description="Export shards as TFRecords in the official YouTube-8M schema "
                    "(frame-level SequenceExamples, with the segment fields when present; "
                    "video-level shards as Examples), named like the official files "
                    "(train0000.tfrecord, ...).")
    p.add_argument("--data", required=True, metavar="DIR", help="shard folder")
    p.add_argument("--out", required=True, metavar="DIR", help="folder for the .tfrecord files")
    p.add_argument("--split", default="train", choices=["train", "validate", "test"],
                   help="file name prefix, as in the official release (default train)")
    p.add_argument("--videos-per-file", type=int, default=1000, metavar="N",
                   help="videos per .tfrecord file (default 1000, about the official size)")
    add_quiet(p)
    p.set_defaults(run=run_export)


def run_import(args: argparse.Namespace) -> int:
    from .errors import UsageError
    from .importer import import_tfrecords

    if args.workers < 1:
        raise UsageError("--workers must be at least 1")
    report = import_tfrecords(args.tfrecords, args.out, workers=args.workers,
                              vocabulary_file=args.vocabulary, quiet=args.quiet)
    report.write(args.out)
    return report.exit_code


def run_export(args: argparse.Namespace) -> int:
    from .exporter import export_tfrecords

    report = export_tfrecords(args.data, args.out, split=args.split,
                              videos_per_file=args.videos_per_file, quiet=args.quiet)
    report.write(args.out)
    return report.exit_code
