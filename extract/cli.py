"""Commands of the extraction stage: extract, fit-pca (`download` is the model stage's:
it also fetches and converts the published model).

Light at import time (no torch) so that `pipeline.py --help` stays fast.
"""
from __future__ import annotations

import argparse

from yt8m.assets import DEFAULT_PCA_DIR
from yt8m.cli_util import add_device, add_quiet, add_shard
from yt8m.representation import DEFAULT_MAX_FRAMES, MAX_FRAMES_LIMIT

DEFAULT_OUT = "data/features"


def _add_backbone_flags(p: argparse.ArgumentParser) -> None:
    add_device(p)
    p.add_argument("--workers", type=int, default=2, metavar="N",
                   help="decoder threads running ahead of inference (default 2; 0: none)")
    p.add_argument("--batch-size", type=int, default=0, metavar="N",
                   help="frames per Inception batch (default: 8 on CPU, 256 on GPU)")
    p.add_argument("--weights-dir", default=None, metavar="DIR",
                   help="folder holding pt_inception-2015-12-05-6726825d.pth and "
                        "vggish-10086976.pth (default: the download cache)")
    p.add_argument("--random-weights", action="store_true",
                   help="randomly initialised backbones, for smoke tests only; every shard "
                        "and prediction made from them is marked as such")
    p.add_argument("--max-frames", type=int, default=DEFAULT_MAX_FRAMES, metavar="N",
                   help=f"frames (seconds) per video, at most {MAX_FRAMES_LIMIT} "
                        f"(default {DEFAULT_MAX_FRAMES}, as YouTube-8M)")
    add_quiet(p)


def add_commands(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser(
        "extract", help="videos -> YouTube-8M-equal frame features in HDF5 shards",
        description="Every video under --videos (recursive) -> one frame per second -> "
                    "Inception-v3 + PCA (1024-d) and VGGish + PCA (128-d), quantized to "
                    "uint8, in HDF5 shards under --out. A rerun resumes; rejected inputs are "
                    "listed in --out/report-extract.json (exit 3).")
    p.add_argument("--videos", required=True, metavar="DIR", help="folder of videos")
    p.add_argument("--labels", metavar="CSV",
                   help="header `video,labels`; video relative to --videos; labels "
                        "';'-separated names or ids")
    p.add_argument("--vocabulary", metavar="FILE",
                   help="a vocabulary.csv (YouTube-8M format) every label must exist in")
    p.add_argument("--out", default=DEFAULT_OUT, metavar="DIR",
                   help=f"shard folder (default {DEFAULT_OUT})")
    p.add_argument("--pca-dir", default=DEFAULT_PCA_DIR, metavar="DIR",
                   help="mean.npy, eigenvals.npy, eigenvecs.npy, vggish_pca_params.npz "
                        f"(default {DEFAULT_PCA_DIR}/; `download` or `fit-pca` fill it)")
    p.add_argument("--videos-per-shard", type=int, default=16, metavar="N",
                   help="videos per shard file (default 16: a killed job redoes at most "
                        "this many)")
    _add_backbone_flags(p)
    add_shard(p)
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
    _add_backbone_flags(p)
    p.set_defaults(run=_run_fit_pca)


def _run_extract(args: argparse.Namespace) -> int:
    from .job import ExtractArgs, run_extract

    return run_extract(ExtractArgs(
        videos=args.videos, out=args.out, labels=args.labels, vocabulary=args.vocabulary,
        device=args.device, workers=args.workers, batch_size=args.batch_size,
        weights_dir=args.weights_dir, random_weights=args.random_weights,
        pca_dir=args.pca_dir, max_frames=args.max_frames, shard=args.shard, quiet=args.quiet,
        videos_per_shard=args.videos_per_shard))


def _run_fit_pca(args: argparse.Namespace) -> int:
    from .job import run_fit_pca

    return run_fit_pca(args.videos, args.out, device=args.device, workers=args.workers,
                       batch_size=args.batch_size, weights_dir=args.weights_dir,
                       random_weights=args.random_weights, max_frames=args.max_frames,
                       quiet=args.quiet)
