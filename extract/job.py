"""The `extract` and `fit-pca` jobs: a folder of videos -> shards (or PCA parameters).

extract: list every video under --videos (recursive, sorted; ids are paths
relative to it), keep this machine's part (--shard I/N or RANK/WORLD_SIZE),
check labels, weights and PCA before any work, skip videos already stored in
--out (resume), extract the rest through `Extractor`, and write shards named
`shard<tag>-NNNNN.h5` (the tag keeps parallel machines apart) of a few videos
each, so a crash loses little. Rejected videos go to `report-extract<tag>.json`
in --out and the exit code is 3; every good video is still extracted.
"""
from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass

import numpy as np

from yt8m.assets import DEFAULT_PCA_DIR
from yt8m.errors import EXIT_OK, UsageError
from yt8m.report import Report
from yt8m.representation import FPS, MAX_FRAMES_LIMIT

from .decode import VIDEO_EXTENSIONS

VIDEOS_PER_SHARD = 16  # small: a killed job redoes at most this many videos
RANDOM_WARNING = ("WARNING: --random-weights: randomly initialised backbones; these "
                  "features are meaningless (smoke tests only) and are marked as such")


def list_videos(videos_dir: str) -> list[str]:
    """Ids (paths relative to videos_dir, '/'-separated) of every file with a video
    extension under it, sorted. Broken links and other non-files are listed too,
    so that they are reported rather than silently skipped."""
    if not os.path.isdir(videos_dir):
        raise UsageError(f"--videos {videos_dir}: no such folder")
    found = []
    for root, dirs, files in os.walk(videos_dir, onerror=None):
        dirs.sort()
        for d in list(dirs):  # a folder named like a video is not walked as a video
            if os.path.splitext(d)[1].lower() in VIDEO_EXTENSIONS:
                found.append(os.path.join(root, d))
        for f in files:
            if os.path.splitext(f)[1].lower() in VIDEO_EXTENSIONS and not f.startswith("."):
                found.append(os.path.join(root, f))
    return sorted(os.path.relpath(p, videos_dir).replace(os.sep, "/") for p in found)


@dataclass
class ExtractArgs:
    videos: str
    out: str = "data/features"
    labels: str | None = None
    vocabulary: str | None = None
    device: str = "auto"
    workers: int = 2
    batch_size: int = 0
    weights_dir: str | None = None
    random_weights: bool = False
    pca_dir: str = DEFAULT_PCA_DIR
    max_frames: int = 300
    shard: str | None = None
    quiet: bool = False
    videos_per_shard: int = VIDEOS_PER_SHARD


def _check_max_frames(n: int) -> None:
    if not 1 <= n <= MAX_FRAMES_LIMIT:
        raise UsageError(f"--max-frames {n}: must be between 1 and {MAX_FRAMES_LIMIT} "
                         "(YouTube-8M uses 300)")


def run_extract(args: ExtractArgs) -> int:
    from yt8m.cli_util import parse_shard, progress
    from yt8m.store import FRAME, ShardMeta, ShardWriter, done_ids, open_shards
    from yt8m.vocabulary import Vocabulary

    from .extractor import ExtractConfig, Extractor
    from .labels import read_labels

    _check_max_frames(args.max_frames)
    spec = parse_shard(args.shard)
    all_ids = list_videos(args.videos)
    if not all_ids:
        raise UsageError(f"--videos {args.videos}: no video files found (looked for "
                         f"{', '.join(sorted(VIDEO_EXTENSIONS))})")

    # Everything that can be wrong with the job is checked before any video is decoded.
    vocabulary = Vocabulary.load(args.vocabulary) if args.vocabulary else None
    labels = None
    if args.labels:
        labels = read_labels(args.labels, args.videos, vocabulary, known_ids=set(all_ids))
        vocabulary = labels.vocabulary
    if vocabulary is None:
        vocabulary = Vocabulary([], name="unlabeled")
    if args.random_weights:
        print(RANDOM_WARNING, file=sys.stderr)
    extractor = Extractor(ExtractConfig(max_frames=args.max_frames, batch_size=args.batch_size,
                                        workers=args.workers, device=args.device,
                                        weights_dir=args.weights_dir,
                                        random_weights=args.random_weights,
                                        pca_dir=args.pca_dir))
    meta = ShardMeta(FRAME, extractor.representation, vocabulary.ref, extra={
        "max_frames": args.max_frames, "fps": FPS, "made_by": "extract",
        "random_weights": extractor.random_weights, **extractor.backbones.provenance()})
    existing, _ = open_shards(args.out) if os.path.isdir(args.out) else ([], [])
    for reader in existing:
        problems = reader.meta.mismatch(meta)
        if reader.meta.extra.get("max_frames", args.max_frames) != args.max_frames:
            problems.append(f"max_frames: {reader.meta.extra['max_frames']} vs {args.max_frames}")
        reader.close()
        if problems:
            raise UsageError(f"--out {args.out} already holds shards made differently "
                             f"({reader.path}: {'; '.join(problems)}). Use another --out "
                             "folder, or the same settings to resume that job.")

    ids = spec.select(all_ids)
    done = done_ids(args.out)
    todo = [i for i in ids if i not in done]
    os.makedirs(args.out, exist_ok=True)
    vocabulary.save(args.out)
    report = Report(f"extract{spec.tag}")
    stale = os.path.join(args.out, f"report-{report.command}.json")
    if os.path.exists(stale):
        os.remove(stale)  # this run re-tries every video that was rejected before
    part = f" (part {spec.index + 1} of {spec.count})" if spec.count > 1 else ""
    print(f"extract: {len(ids)} video(s){part}, {len(ids) - len(todo)} already in {args.out}, "
          f"{len(todo)} to do on {extractor.device}", file=sys.stderr)

    start, frames = time.time(), 0
    paths = [os.path.join(args.videos, i) for i in todo]
    with ShardWriter(args.out, meta, prefix=f"shard{spec.tag}",
                     videos_per_shard=max(1, args.videos_per_shard)) as writer, \
            progress(total=len(todo), quiet=args.quiet, unit="video",
                     desc="extract (RANDOM WEIGHTS)" if extractor.random_weights
                     else "extract") as bar:
        for (_path, result), vid in zip(extractor.extract_paths(paths, todo), todo):
            bar.update(1)
            if isinstance(result, Exception):
                report.reject(vid, result.reason)
                continue
            result.labels = labels.of(vid) if labels else np.zeros(0, dtype=np.int32)
            writer.add(result)
            report.done += 1
            frames += result.n_frames
    elapsed = max(time.time() - start, 1e-9)
    print(f"extract: {report.done} video(s), {frames} frames in {elapsed:.1f} s "
          f"({frames / elapsed:.1f} frames/s) -> {args.out}"
          + (" [RANDOM WEIGHTS]" if extractor.random_weights else ""), file=sys.stderr)
    report.write(args.out)
    return report.exit_code


def run_fit_pca(videos: str, out: str, device: str = "auto", workers: int = 2,
                batch_size: int = 0, weights_dir: str | None = None,
                random_weights: bool = False, max_frames: int = 300, quiet: bool = False) -> int:
    """Backbones over every video under `videos` -> extract.pca.fit_pca into `out`."""
    from yt8m.cli_util import progress

    from .extractor import ExtractConfig, Extractor
    from .pca import fit_pca

    from .pca import FITTED_MARKER, RGB_FILES

    _check_max_frames(max_frames)
    if os.path.isfile(os.path.join(out, RGB_FILES[0])) \
            and not os.path.isfile(os.path.join(out, FITTED_MARKER)):
        raise UsageError(f"--out {out} holds published PCA parameters; fit-pca does not "
                         "overwrite them. Pass another --out (and use it as --pca-dir).")
    ids = list_videos(videos)
    if not ids:
        raise UsageError(f"--videos {videos}: no video files found")
    if random_weights:
        print(RANDOM_WARNING, file=sys.stderr)
    extractor = Extractor(ExtractConfig(max_frames=max_frames, batch_size=batch_size,
                                        workers=workers, device=device, weights_dir=weights_dir,
                                        random_weights=random_weights, pca_dir=None))
    report = Report("fit-pca")
    rgb, audio = [], []
    paths = [os.path.join(videos, i) for i in ids]
    with progress(total=len(ids), desc="fit-pca", quiet=quiet, unit="video") as bar:
        for (_, result), vid in zip(extractor.raw_features(paths, ids), ids):
            bar.update(1)
            if isinstance(result, Exception):
                report.reject(vid, result.reason)
                continue
            rgb.append(result.pool3)
            if result.fc2 is not None:
                audio.append(result.fc2)
            report.done += 1
    if not rgb:
        raise UsageError(f"fit-pca: none of the {len(ids)} file(s) under {videos} is a usable "
                         "video" + (f"; see {report.write(out)}" if report.rejected else ""))
    meta = fit_pca(np.concatenate(rgb), np.concatenate(audio) if audio
                   else np.zeros((0, 128), np.float32), out)
    print(f"fit-pca: fitted on {meta['rgb_frames']} frames and {meta['audio_vectors']} audio "
          f"seconds of {report.done} video(s) -> {out}"
          + (" [RANDOM WEIGHTS]" if extractor.random_weights else ""), file=sys.stderr)
    report.write(out)
    return report.exit_code if report.rejected else EXIT_OK
