"""The `extract` and `fit-pca` jobs: a folder of videos -> shards (or PCA parameters).

extract: list every video under --videos (recursive, sorted; ids are paths
relative to it), keep this machine's part (--shard I/N or RANK/WORLD_SIZE),
check labels, that --out can be written, weights and PCA before any work, skip
videos already stored in --out (resume), extract the rest through `Extractor`, and write shards named
`shard<tag>-NNNNN.h5` (the tag keeps parallel machines apart) of a few videos
each, so a crash loses little. Rejected videos go to `report-extract<tag>.json`
in --out and the exit code is 3; every good video is still extracted.
"""
from __future__ import annotations

import dataclasses
import os
import sys
import time
from dataclasses import dataclass
from typing import Callable, Iterator

import numpy as np

from yt8m.atomic import exclusive, writable_folder
from yt8m.errors import EXIT_OK, RejectedInput, UsageError
from yt8m.record import VideoRecord
from yt8m.report import Report
from yt8m.representation import FPS

from .config import ExtractConfig, ExtractJob
from .decode import VIDEO_EXTENSIONS

RANDOM_WARNING = ("WARNING: --random-weights: randomly initialised backbones; these "
                  "features are meaningless (smoke tests only) and are marked as such")


def list_videos(videos_dir: str) -> list[str]:
    """Ids (paths relative to videos_dir, '/'-separated) of every file with a video
    extension under it, sorted. Broken links and other non-files are listed too,
    so that they are reported rather than silently skipped. A folder is walked into
    whatever its name: `holiday.mp4/` is a folder of videos, never a video itself.
    (Links to folders are not followed, as os.walk does not: no cycles.)"""
    if not os.path.isdir(videos_dir):
        raise UsageError(f"--videos {videos_dir}: no such folder")
    found = []
    for root, dirs, files in os.walk(videos_dir, onerror=None):
        dirs.sort()
        for f in files:
            if os.path.splitext(f)[1].lower() in VIDEO_EXTENSIONS and not f.startswith("."):
                found.append(os.path.join(root, f))
    return sorted(os.path.relpath(p, videos_dir).replace(os.sep, "/") for p in found)


@dataclass
class Prepared:
    """A checked extraction job: what is left to do, and what to write it with."""

    extractor: object  # extract.extractor.Extractor
    meta: object  # yt8m.store.ShardMeta
    labels: object | None  # extract.labels.Labels
    todo: list[str]
    report: Report
    tag: str
    stale: dict[str, set[str]]  # shard -> ids whose source file changed since it was stored


def prepare_extract(job: ExtractJob, load_backbones: bool = True) -> Prepared:
    """Everything that can be wrong with the job, checked before any video is decoded.
    Without `load_backbones` (a Ray driver) the backbones are described, not built."""
    from yt8m.cli_util import parse_part
    from yt8m.shard_check import FRAME
    from yt8m.shard_meta import ShardMeta
    from yt8m.vocabulary import Vocabulary

    from .extractor import Extractor
    from .features import describe_backbones
    from .labels import read_labels

    part = parse_part(job.shard)
    all_ids = list_videos(job.videos)
    if not all_ids:
        raise UsageError(f"--videos {job.videos}: no video files found (looked for "
                         f"{', '.join(sorted(VIDEO_EXTENSIONS))})")
    vocabulary = Vocabulary.load(job.vocabulary) if job.vocabulary else None
    labels = None
    if job.labels:
        labels = read_labels(job.labels, job.videos, vocabulary, known_ids=set(all_ids))
        vocabulary = labels.vocabulary
    vocabulary = vocabulary or Vocabulary([], name="unlabeled")
    writable_folder(job.out)  # before the backbones load and any video is decoded
    if job.config.random_weights:
        print(RANDOM_WARNING, file=sys.stderr)
    if load_backbones:
        extractor = Extractor(job.config)
        representation, provenance = extractor.representation, extractor.backbones.provenance()
        where = str(extractor.device)
    else:
        extractor, where = None, "the Ray cluster"
        representation, provenance = describe_backbones(
            job.config.weights_dir, job.config.random_weights, job.config.pca_dir)
    meta = ShardMeta(FRAME, representation, vocabulary.ref, extra={
        "max_frames": job.config.max_frames, "fps": FPS, "made_by": "extract",
        "random_weights": job.config.random_weights, **provenance})
    _check_out_folder(job.out, meta, job.config.max_frames)
    ids = part.select(all_ids)
    todo, stale = _not_yet_stored(job.videos, job.out, ids)
    vocabulary.save(job.out)
    report = Report(f"extract{part.tag}")
    old_report = os.path.join(job.out, f"report-{report.command}.json")
    if os.path.exists(old_report):
        os.remove(old_report)  # this run re-tries every video that was rejected before
    todo = [i for i in todo if _utf8_name(i, report)]
    _warn_if_space_is_short(job.out, len(todo))
    of = f" (part {part.index + 1} of {part.count})" if part.count > 1 else ""
    print(f"extract: {len(ids)} video(s){of}, {len(ids) - len(todo)} already in {job.out}, "
          f"{len(todo)} to do on {where}", file=sys.stderr)
    return Prepared(extractor, meta, labels, todo, report, part.tag, stale)


def extracted(extractor, videos: str, ids: list[str], labels_of: Callable[[str], np.ndarray]
              ) -> Iterator[tuple[str, VideoRecord | RejectedInput]]:
    """(id, record ready to store: labels and source identity set | rejection) per video,
    in order: what a local job and a Ray actor both write."""
    paths = [os.path.join(videos, i) for i in ids]
    for (_path, got), vid in zip(extractor.extract_paths(paths, ids), ids):
        if not isinstance(got, RejectedInput):
            got.labels = labels_of(vid)
            got.source = _identity(videos, vid)
        yield vid, got


def no_labels(_video_id: str) -> np.ndarray:
    return np.zeros(0, dtype=np.int32)


def _identity(videos: str, video_id: str) -> tuple[int, int]:
    """A source file's (size, mtime ns): what says it is still the file that was stored."""
    try:
        st = os.stat(os.path.join(videos, video_id))
        return st.st_size, st.st_mtime_ns
    except OSError:
        return (-1, -1)


def _not_yet_stored(videos: str, out: str, ids: list[str]) -> tuple[list[str], dict[str, set[str]]]:
    """The ids to extract (new, or changed since stored), and the stale copies to drop."""
    from yt8m.shard_folder import stored_sources

    stored = stored_sources(out)
    todo, stale = [], {}
    for video_id in ids:
        copies = stored.get(video_id, [])
        now = _identity(videos, video_id)
        current = [c for c in copies if c[1] == now or c[1] == (-1, -1)]  # -1: not recorded
        if not current:
            todo.append(video_id)
        for shard, source in copies:
            if source not in (now, (-1, -1)):
                stale.setdefault(shard, set()).add(video_id)
    return todo, stale


def _utf8_name(video_id: str, report: Report) -> bool:
    """Ids are stored as UTF-8: a file name that is not valid UTF-8 is rejected as such."""
    try:
        video_id.encode("utf-8")
        return True
    except UnicodeEncodeError:
        shown = video_id.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
        report.reject(shown, "the file name is not valid UTF-8 (ids are stored as UTF-8); "
                             "rename the file")
        return False


def _warn_if_space_is_short(out: str, videos: int) -> None:
    """A warning when --out clearly cannot hold the job (10 s a video at the least)."""
    from yt8m.representation import AUDIO_DIM, RGB_DIM
    from yt8m.shard_writer import free_bytes, shard_bytes_needed

    least = shard_bytes_needed(videos * 10 * (RGB_DIM + AUDIO_DIM), videos)
    free = free_bytes(out)
    if free < least:
        print(f"warning: {out} has {free / 2**20:.1f} MB free; {videos} video(s) need at least "
              f"{least / 2**20:.1f} MB. The job stops (exit 2, finished shards kept) when the "
              "disk is full.", file=sys.stderr)


def _drop_stale(stale: dict[str, set[str]], report: Report) -> None:
    """Copies of files that changed since they were stored go, once the new copy is in
    (a rejected new version leaves no copy: the old one no longer is that file)."""
    from yt8m.shard_folder import remove_videos

    for shard, ids in stale.items():
        for problem in remove_videos(shard, ids):
            report.add(problem, f"damaged; its shard keeps the stale copies of {', '.join(sorted(ids))}")
    changed = sorted({i for ids in stale.values() for i in ids})
    if changed:
        print(f"extract: {len(changed)} video(s) changed since they were stored and were "
              f"extracted again: {', '.join(changed[:5])}" + (" ..." if len(changed) > 5 else ""),
              file=sys.stderr)


def _check_out_folder(out: str, meta, max_frames: int) -> None:
    """Resuming into --out is only allowed with the settings its shards were made with."""
    from yt8m.shard_folder import open_shards

    existing, _ = open_shards(out) if os.path.isdir(out) else ([], [])
    for reader in existing:
        problems = reader.meta.mismatch(meta)
        if reader.meta.extra.get("max_frames", max_frames) != max_frames:
            problems.append(f"max_frames: {reader.meta.extra['max_frames']} vs {max_frames}")
        reader.close()
        if problems:
            raise UsageError(f"--out {out} already holds shards made differently "
                             f"({reader.path}: {'; '.join(problems)}). Use another --out "
                             "folder, or the same settings to resume that job.")


def run_extract(job: ExtractJob) -> int:
    """Extract every video of the job into shards; the exit code (3 when some were rejected)."""
    from yt8m.cli_util import progress
    from yt8m.shard_writer import ShardWriter

    p = prepare_extract(job)
    extractor, report = p.extractor, p.report
    start, frames = time.time(), 0
    labels_of = p.labels.of if p.labels else no_labels
    with ShardWriter(job.out, p.meta, prefix=f"shard{p.tag}",
                     videos_per_shard=max(1, job.videos_per_shard)) as writer, \
            progress(total=len(p.todo), quiet=job.quiet, unit="video",
                     desc="extract (RANDOM WEIGHTS)" if extractor.random_weights
                     else "extract") as bar:
        for vid, result in extracted(extractor, job.videos, p.todo, labels_of):
            bar.update(1)
            if isinstance(result, RejectedInput):
                report.reject(vid, result.reason)
                continue
            writer.add(result)
            report.done += 1
            frames += result.n_frames
    _drop_stale(p.stale, report)
    elapsed = max(time.time() - start, 1e-9)
    print(f"extract: {report.done} video(s), {frames} frames in {elapsed:.1f} s "
          f"({frames / elapsed:.1f} frames/s) -> {job.out}"
          + (" [RANDOM WEIGHTS]" if extractor.random_weights else ""), file=sys.stderr)
    report.write(job.out)
    return report.exit_code


def run_fit_pca(videos: str, out: str, config: ExtractConfig, quiet: bool = False) -> int:
    """Backbones over every video under `videos` -> extract.pca.fit_pca into `out`. One
    fit-pca at a time per `out` (a second one is refused at once, exit 2, naming the
    first): the files are one set, and two runs would leave the last writer's, or a mix."""
    from yt8m.pca_files import FITTED_MARKER, RGB_FILES

    ids = list_videos(videos)
    if not ids:
        raise UsageError(f"--videos {videos}: no video files found")
    writable_folder(out)
    with exclusive(out, "fit-pca"):
        if os.path.isfile(os.path.join(out, RGB_FILES[0])) \
                and not os.path.isfile(os.path.join(out, FITTED_MARKER)):
            raise UsageError(f"--out {out} holds published PCA parameters; fit-pca does not "
                             "overwrite them. Pass another --out (and use it as --pca-dir).")
        return _fit_pca(videos, ids, out, config, quiet)


def _fit_pca(videos: str, ids: list[str], out: str, config: ExtractConfig, quiet: bool) -> int:
    from yt8m.cli_util import progress

    from .extractor import Extractor
    from .pca import fit_pca

    if config.random_weights:
        print(RANDOM_WARNING, file=sys.stderr)
    extractor = Extractor(dataclasses.replace(config, pca_dir=None))  # raw features
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
