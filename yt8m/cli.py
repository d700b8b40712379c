"""Commands on shards and the official YouTube-8M data (import-yt8m, export-tfrecord, verify).

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

    p = commands.add_parser(
        "verify", help="check every shard and every video's checksum",
        description="Reads every shard of --data and every video in it, checking each video's "
                    "CRC32C. Damaged shards and videos are listed in report-verify.json "
                    "(exit 3); nothing is changed.")
    p.add_argument("--data", required=True, metavar="DIR", help="shard folder")
    p.add_argument("--report-dir", default=None, metavar="DIR",
                   help="where report-verify.json goes (default: the shard folder)")
    add_quiet(p)
    p.set_defaults(run=run_verify)


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


def run_verify(args: argparse.Namespace) -> int:
    import os
    import sys

    from .cli_util import progress
    from .errors import UsageError
    from .report import Report
    from .shard_folder import open_shards

    if not os.path.isdir(args.data):
        raise UsageError(f"--data {args.data}: no such folder")
    readers, errors = open_shards(args.data)
    report = Report("verify")
    for e in errors:
        report.add(e.problem)
    unchecked = 0
    with progress(total=sum(len(r) for r in readers), desc="verify", quiet=args.quiet,
                  unit="video") as bar:
        for reader in readers:
            unchecked += len(reader) if reader.checksums is None else 0
            for _ in reader.iter_videos():
                bar.update(1)
                report.done += 1
            for e in reader.damaged:  # bad checksums, or a file changed while being read
                bar.update(1)
                report.add(e.problem, "damaged")
            reader.close()
    print(f"verify: {report.done} video(s) in {len(readers)} shard(s) are intact"
          + (f" ({unchecked} in format-1 shards carry no checksum)" if unchecked else "")
          + (f"; {len(report.rejected)} problem(s)" if report.rejected else ""), file=sys.stderr)
    report.write(args.report_dir or args.data)
    return report.exit_code
