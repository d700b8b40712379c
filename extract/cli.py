"""Commands of the extraction stage: extract, fit-pca (`download` is the model stage's:
it also fetches and converts the published model).

Light at import time (no torch) so that `pipeline.py --help` stays fast.
"""
from __future__ import annotations

import argparse
import signal
import threading
from contextlib import contextmanager
from typing import Iterator

from yt8m.assets import DEFAULT_PCA_DIR
from yt8m.cli_util import add_device, add_fields, add_part, add_quiet
from yt8m.errors import UsageError

from .config import ExtractConfig, ExtractJob

BACKBONE_FLAGS = ["weights_dir", "random_weights", "max_frames", "workers", "batch_size",
                  "accept_truncated"]
JOB_FLAGS = ["labels", "vocabulary", "out", "videos_per_shard"]


def add_backbone_flags(p: argparse.ArgumentParser) -> None:
    """The flags of how features are made (ExtractConfig), shared with classify and serve."""
    add_fields(p, ExtractConfig, BACKBONE_FLAGS)
    add_device(p)


def config_from_args(args: argparse.Namespace, **overrides) -> ExtractConfig:
    names = BACKBONE_FLAGS + ["device"] + (["pca_dir"] if hasattr(args, "pca_dir") else [])
    values = {n: getattr(args, n) for n in names}
    values.update(overrides)
    return ExtractConfig(**values)


def add_commands(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser(
        "extract", help="videos -> YouTube-8M-equal frame features in HDF5 shards",
        description="Every video under --videos (recursive) -> one frame per second -> "
                    "Inception-v3 + PCA (1024-d) and VGGish + PCA (128-d), quantized to "
                    "uint8, in HDF5 shards under --out. A rerun resumes; rejected inputs are "
                    "listed in --out/report-extract.json (exit 3).")
    add_fields(p, ExtractJob, ["videos"], videos="--videos")
    p._option_string_actions["--videos"].required = True
    add_fields(p, ExtractJob, JOB_FLAGS)
    add_fields(p, ExtractConfig, ["pca_dir"])
    add_backbone_flags(p)
    add_part(p)
    p.add_argument("--ray", nargs="?", const="local", default=None, metavar="ADDRESS",
                   help="run on Ray: `auto` joins a running cluster, an address joins that "
                        "one, no address starts a local Ray on this machine (needs the "
                        "[ray] extra; --out must be a folder every machine sees)")
    add_quiet(p)
    p.set_defaults(run=_run_extract)

    p = commands.add_parser(
        "fit-pca", help="fit PCA + whitening on your own videos (published layout)",
        description="Runs the backbones over every video under --videos and fits the visual "
                    "(2048 -> 1024) and audio (128 -> 128) PCA with whitening, written as "
                    "mean.npy, eigenvals.npy, eigenvecs.npy and vggish_pca_params.npz. "
                    "Features made with fitted parameters are not comparable with the "
                    "official dataset's; shards record which parameters were used.")
    p.add_argument("--videos", required=True, metavar="DIR")
    p.add_argument("--out", default=DEFAULT_PCA_DIR, metavar="DIR",
                   help=f"where to write the parameters (default {DEFAULT_PCA_DIR}/)")
    add_backbone_flags(p)
    add_quiet(p)
    p.set_defaults(run=_run_fit_pca)


@contextmanager
def terminate_as_interrupt() -> Iterator[None]:
    """SIGTERM (`kill`, a batch scheduler, a container stopping) ends the block as Ctrl-C
    does: KeyboardInterrupt, so finished videos are written as a complete shard and the
    exit code is the interrupt's. Further SIGTERMs are ignored meanwhile, so that the
    last shard's write is not cut short; SIGKILL still stops at once."""
    if threading.current_thread() is not threading.main_thread():  # signals: main only
        yield
        return

    def interrupt(_signum: int, _frame: object) -> None:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _run_extract(args: argparse.Namespace) -> int:
    from .job import run_extract

    try:
        config = config_from_args(args)
    except ValueError as e:
        raise UsageError(f"{e}.") from None
    job = ExtractJob(videos=args.videos, out=args.out, labels=args.labels,
                     vocabulary=args.vocabulary, shard=args.shard, quiet=args.quiet,
                     videos_per_shard=args.videos_per_shard, config=config)
    with terminate_as_interrupt():
        if args.ray is not None:
            from .ray_job import run_extract_ray
            return run_extract_ray(job, None if args.ray == "local" else args.ray)
        return run_extract(job)


def _run_fit_pca(args: argparse.Namespace) -> int:
    from .job import run_fit_pca

    with terminate_as_interrupt():
        return run_fit_pca(args.videos, args.out, config_from_args(args, pca_dir=None),
                           args.quiet)
