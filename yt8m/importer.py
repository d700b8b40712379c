"""Official YouTube-8M TFRecords -> shards (`python pipeline.py import-yt8m`).

One input file becomes shards named after it (`train0093.tfrecord` ->
`train0093-00000.h5`, `-00001.h5`, ...), written as the file is read, at most
`VIDEOS_PER_SHARD` videos at a time, so memory does not grow with the file. When
the whole file is in, a marker (`.train0093.imported`, holding the records it
rejected) says so: a rerun skips exactly the files marked, and redoes any other
from scratch, so part of a file is never taken for all of it. Damaged records (bad
CRC, truncated tail, invalid content) are reported with file and byte offset and
skipped; the rest of the file and the other files are imported. Video ids found in
more than one input are reported. Files are spread over `--workers` processes.
"""
from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import re
import sys
from dataclasses import dataclass, field

from . import official
from .atomic import write_json
from .errors import Problem, UsageError
from .record import VideoRecord
from .report import Report
from .representation import OFFICIAL
from .shard_check import FRAME
from .shard_folder import open_shards, shard_paths
from .shard_meta import ShardMeta
from .shard_reader import ShardReader
from .shard_writer import ShardWriter, prefixed_shards
from .tfrecord import TFRecordReader, record_where
from .vocabulary import FILENAME as VOCABULARY_FILENAME
from .vocabulary import Vocabulary, VocabularyRef

COMMAND = "import-yt8m"
SOURCE = "youtube-8m"
VIDEOS_PER_SHARD = 256  # an official file holds ~1,000-1,300 videos


@dataclass(frozen=True)
class ImportTask:
    path: str
    out_dir: str
    prefix: str
    kind: str
    vocabulary: VocabularyRef


@dataclass
class FileResult:
    path: str
    shard: str | None = None
    videos: int = 0
    bytes: int = 0
    rejected: list[Problem] = field(default_factory=list)
    already_done: bool = False


def shard_prefixes(paths: list[str]) -> dict[str, str]:
    """Input path -> output shard prefix: the file name without extension, made safe;
    names that occur in several folders get a short hash of their folder."""
    stems = {p: re.sub(r"[^A-Za-z0-9_.-]", "_", os.path.basename(p).rsplit(".tfrecord", 1)[0])
             or "records" for p in paths}
    taken: dict[str, int] = {}
    for s in stems.values():
        taken[s] = taken.get(s, 0) + 1
    return {p: s if taken[s] == 1 else
            f"{s}-{hashlib.sha1(os.path.abspath(os.path.dirname(p)).encode()).hexdigest()[:8]}"
            for p, s in stems.items()}


def marker_of(out_dir: str, prefix: str) -> str:
    """The file that says an input was imported whole (and what it rejected)."""
    return os.path.join(out_dir, f".{prefix}.imported")


def import_file(task: ImportTask) -> FileResult:
    """Stream one TFRecord file into shards; mark it imported once it is all in."""
    result = FileResult(task.path)
    os.makedirs(task.out_dir, exist_ok=True)
    for stale in prefixed_shards(task.out_dir, task.prefix).values():  # an interrupted try
        os.remove(stale)
    meta = ShardMeta(task.kind, OFFICIAL, task.vocabulary,
                     extra={"source_file": os.path.basename(task.path)})
    writer = ShardWriter(task.out_dir, meta, prefix=task.prefix, videos_per_shard=VIDEOS_PER_SHARD)
    reader = TFRecordReader(task.path)
    seen: set[str] = set()
    problems: list[tuple[int, Problem]] = []  # by byte offset
    for offset, data in reader:
        result.bytes += len(data)
        try:
            video = _parse(data, task)
            if video.id in seen:
                raise official.InvalidRecord(f"{video.id}: id already used by an earlier "
                                             "record of this file")
        except official.InvalidRecord as e:
            problems.append((offset, Problem(record_where(task.path, offset), str(e))))
            continue
        seen.add(video.id)
        writer.add(video)
    writer.flush()  # not a `with`: an interrupt leaves no marker, so the file is redone
    problems += [(e.offset, e.problem) for e in reader.errors]
    result.rejected = [p for _, p in sorted(problems, key=lambda got: (got[0], got[1].reason))]
    result.videos, result.shard = len(seen), (writer.written or [None])[0]
    _write_marker(marker_of(task.out_dir, task.prefix), result.rejected)
    return result


def _parse(data: bytes, task: ImportTask) -> VideoRecord:
    kind = official.record_kind(data)
    if kind != task.kind:
        raise official.InvalidRecord(f"a {kind}-level record in a file of {task.kind}-level records")
    return official.parse_record(data, task.kind, task.vocabulary.num_classes)


def _write_marker(path: str, rejected: list[Problem]) -> None:
    write_json(path, {"rejected": [[p.where, p.reason] for p in rejected]})


def report_duplicates(out_dir: str, report: Report) -> None:
    """Video ids stored more than once in `out_dir` (across input files): reported."""
    first: dict[str, str] = {}
    readers, _ = open_shards(out_dir)
    for r in readers:
        for video_id in r.ids:
            if video_id in first:
                report.reject(f"{r.path}: {video_id}", f"the id is also in {first[video_id]}; "
                                                       "both copies are kept")
            else:
                first[video_id] = r.path
        r.close()


def _existing_kind_and_vocabulary(out_dir: str) -> tuple[str, VocabularyRef] | None:
    for path in shard_paths(out_dir):
        try:
            reader = ShardReader(path)
        except UsageError:
            continue
        meta = reader.meta
        reader.close()
        return meta.kind, meta.vocabulary
    return None


def _choose_vocabulary(out_dir: str, vocabulary_file: str | None) -> Vocabulary:
    if vocabulary_file is None:  # the official one; with names if `download` fetched it
        return Vocabulary.official()
    vocab = Vocabulary.load(vocabulary_file)
    existing = os.path.join(out_dir, VOCABULARY_FILENAME)
    if os.path.exists(existing) and Vocabulary.load(existing, vocab.name).fingerprint != vocab.fingerprint:
        raise UsageError(f"{existing} differs from --vocabulary {vocabulary_file}. Import into "
                         "another --out folder, or remove the old shards and vocabulary.csv.")
    return vocab


def import_tfrecords(pattern: str, out_dir: str, workers: int = 1,
                     vocabulary_file: str | None = None, quiet: bool = False) -> Report:
    """Import every file matching `pattern` into shards in `out_dir`; returns the report."""
    from .cli_util import progress

    paths = official.find_tfrecords(pattern)
    vocab = _choose_vocabulary(out_dir, vocabulary_file)
    existing = _existing_kind_and_vocabulary(out_dir) if os.path.isdir(out_dir) else None
    if existing and existing[1].fingerprint != vocab.ref.fingerprint:
        raise UsageError(f"{out_dir} holds shards labelled with vocabulary {existing[1].name} "
                         f"({existing[1].num_classes} classes), not {vocab.name}. Import into "
                         "another --out folder, or pass the matching --vocabulary.")
    os.makedirs(out_dir, exist_ok=True)
    if vocabulary_file is not None or (any(vocab.names) and not os.path.exists(
            os.path.join(out_dir, VOCABULARY_FILENAME))):
        vocab.save(out_dir)

    report = Report(COMMAND)
    prefixes = shard_prefixes(paths)
    target_kind = existing[0] if existing else None
    tasks: list[ImportTask] = []
    skipped = 0
    for path in paths:
        marker = marker_of(out_dir, prefixes[path])
        if os.path.exists(marker):  # imported by an earlier run: report what it rejected
            skipped += 1
            with open(marker, encoding="utf-8") as f:
                for where, reason in json.load(f)["rejected"]:
                    report.add(Problem(where, reason))
            continue
        kind = official.peek_kind(path) or FRAME  # unreadable files fail in import_file with reasons
        target_kind = target_kind or kind
        if kind != target_kind:
            report.reject(path, f"holds {kind}-level records, but this import (or {out_dir}) "
                                f"holds {target_kind}-level ones; import it into another --out")
            continue
        tasks.append(ImportTask(path, out_dir, prefixes[path], kind, vocab.ref))

    videos = total_bytes = 0
    bar = progress(total=len(tasks), desc="import", quiet=quiet, unit="file")
    with bar:
        for result in _run(tasks, workers):
            for problem in result.rejected:
                report.add(problem)
            videos += result.videos
            total_bytes += result.bytes
            bar.update(1)
    report.done = videos
    report_duplicates(out_dir, report)
    print(f"imported {videos} videos ({total_bytes / 1e6:.1f} MB of records) from "
          f"{len(tasks)} file(s) into {out_dir}"
          + (f"; {skipped} file(s) were already imported" if skipped else ""), file=sys.stderr)
    return report


def _run(tasks: list[ImportTask], workers: int):
    if workers <= 1 or len(tasks) <= 1:
        for t in tasks:
            yield import_file(t)
        return
    with multiprocessing.get_context("spawn").Pool(min(workers, len(tasks))) as pool:
        yield from pool.imap_unordered(import_file, tasks)
