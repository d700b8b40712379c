"""`extract --ray [ADDRESS]`: the same extraction, on a Ray cluster.

The driver checks the job exactly as a local run does (`job.prepare_extract`:
labels, weights, PCA, what --out already holds) and cuts the videos left to do
into small work units. Actors, one per GPU (or per `CPUS_PER_ACTOR` cores without
GPUs), each load the backbones and PCA once and take units as they become free,
so a slow or dead machine holds nothing hostage. An actor writes each unit as one
shard of its own (its own name prefix, the same atomic finalisation as a local
run) into --out, a folder every machine sees (a shared file system).

Faults: an actor that dies (its process, or its machine) is restarted by Ray and
its unit retried. Each unit's shard carries the unit's own name (the driver's run
and the unit's number), so a unit retried after its shard was written finds it and
adds nothing twice. A video that fails to
decode is a result, not an error: it is reported once and never retried. A driver
that dies leaves finished shards; the rerun resumes after them. Ray is imported
only here: `extract` without `--ray` never loads it.
"""
from __future__ import annotations

import logging
import os
import sys
import time
from dataclasses import dataclass, field

import numpy as np

from yt8m.errors import Problem, UsageError

from .config import ExtractJob

UNIT_VIDEOS = 4  # videos per work unit: small, so that work spreads evenly
CPUS_PER_ACTOR = 2  # without GPUs: Inception's threads per actor


@dataclass
class UnitResult:
    """What one work unit did: videos stored, and rejections with their reasons."""

    done: list[str] = field(default_factory=list)
    rejected: list[Problem] = field(default_factory=list)
    frames: int = 0


class ExtractActor:
    """Holds an Extractor (backbones and PCA loaded once) and extracts work units."""

    def __init__(self, job: ExtractJob):
        from .extractor import Extractor

        self.job = job
        self.extractor = Extractor(job.config)

    def run(self, prefix: str, unit: list[str], meta, labels: dict[str, np.ndarray]) -> UnitResult:
        """Unit -> one shard named `prefix` (the run's and the unit's own name). A retried
        unit (its actor died) skips what its earlier try already stored under that name."""
        from yt8m.errors import RejectedInput
        from yt8m.shard_reader import ShardReader
        from yt8m.shard_writer import ShardWriter, prefixed_shards

        from .job import extracted, no_labels

        result = UnitResult()
        for path in prefixed_shards(self.job.out, prefix).values():
            reader = ShardReader(path)
            result.done += reader.ids
            reader.close()
        todo = [v for v in unit if v not in result.done]
        writer = ShardWriter(self.job.out, meta, prefix=prefix, videos_per_shard=len(unit) + 1)
        for vid, got in extracted(self.extractor, self.job.videos, todo,
                                  lambda v: labels.get(v, no_labels(v))):
            if isinstance(got, RejectedInput):
                result.rejected.append(Problem(vid, got.reason))
                continue
            writer.add(got)
            result.done.append(vid)
            result.frames += got.n_frames
        writer.flush()  # the unit's videos appear together, or (killed before this) not at all
        return result


def run_extract_ray(job: ExtractJob, address: str | None) -> int:
    """Extract the job on Ray (`address`: "auto", a cluster's, or None for a local Ray)."""
    from yt8m.cli_util import progress

    from .job import _drop_stale, prepare_extract

    ray = _import_ray()
    os.environ.setdefault("RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO", "0")  # keep CUDA_VISIBLE_DEVICES
    ray.init(address=address, include_dashboard=False, log_to_driver=False,
             ignore_reinit_error=True, logging_level=logging.WARNING)
    try:
        actors = _start_actors(ray, job)  # they load their backbones while the job is checked
        p = prepare_extract(job, load_backbones=False)  # a local run's checks, before any work
        labels = {v: p.labels.of(v) for v in p.todo} if p.labels else {}
        meta, labels = ray.put(p.meta), ray.put(labels)
        units = [p.todo[i:i + UNIT_VIDEOS] for i in range(0, len(p.todo), UNIT_VIDEOS)]
        run_name = f"ray-{time.strftime('%Y%m%d%H%M%S')}-{os.getpid()}"  # this driver's run
        start, frames = time.time(), 0
        with progress(total=len(p.todo), quiet=job.quiet, unit="video",
                      desc=f"extract on Ray ({len(actors)} actors)") as bar:
            pool = ray.util.ActorPool(actors)
            named = [(f"{run_name}-u{i:07d}", unit) for i, unit in enumerate(units)]
            for result in pool.map_unordered(
                    lambda actor, u: actor.run.remote(u[0], u[1], meta, labels), named):
                for problem in result.rejected:
                    p.report.add(problem)
                p.report.done += len(result.done)
                frames += result.frames
                bar.update(len(result.done) + len(result.rejected))
    finally:
        ray.shutdown()
    _drop_stale(p.stale, p.report)
    print(f"extract: {p.report.done} video(s), {frames} frames in {time.time() - start:.1f} s "
          f"on Ray -> {job.out}", file=sys.stderr)
    p.report.write(job.out)
    return p.report.exit_code


def _start_actors(ray, job: ExtractJob) -> list:
    """One actor per GPU, or per CPUS_PER_ACTOR cores; restarted (and their unit retried)
    when they die."""
    resources = ray.cluster_resources()
    gpus = int(resources.get("GPU", 0)) if job.config.device != "cpu" else 0
    options = dict(max_restarts=-1, max_task_retries=-1)
    if gpus:
        count, options["num_gpus"] = gpus, 1
    else:
        cpus = int(resources.get("CPU", 1))
        options["num_cpus"] = min(CPUS_PER_ACTOR, cpus)
        count = max(1, cpus // options["num_cpus"])
    remote = ray.remote(**options)(ExtractActor)
    return [remote.remote(job) for _ in range(count)]


def _import_ray():
    try:
        import ray
    except ImportError:
        raise UsageError("--ray needs Ray: pip install -e '.[ray]' (or `pip install ray`), "
                         "then start a cluster (`ray start --head`) or leave out the address "
                         "for a local one.") from None
    return ray
