"""extract --ray on a local Ray (2 CPUs): the same shards as a local run, and no video lost
or doubled when an actor or the driver is killed."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from conftest import ROOT
from synthetic.pca import write_random_pca
from yt8m.samples import sample_clip_dir
from yt8m.store import ShardSet, shard_paths

pytest.importorskip("ray")
pytestmark = pytest.mark.slow
ENV = {"OMP_NUM_THREADS": "1", "RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO": "0"}


@pytest.fixture(scope="module")
def pca(tmp_path_factory):
    return write_random_pca(str(tmp_path_factory.mktemp("pca")))


def _videos(folder, copies: int) -> list[str]:
    folder.mkdir(exist_ok=True)
    names = []
    for k in range(copies):
        for clip in ("carphone_distorted.mp4", "bikes.mp4"):
            name = f"{k:02d}-{clip}"
            (folder / name).write_bytes(open(os.path.join(sample_clip_dir(), clip), "rb").read())
            names.append(name)
    return names


def _extract(videos, out, pca, *extra, wait=True):
    args = [sys.executable, os.path.join(ROOT, "pipeline.py"), "extract", "--videos", str(videos),
            "--out", str(out), "--pca-dir", pca, "--random-weights", "--max-frames", "3",
            "--quiet", *extra]
    if wait:
        return subprocess.run(args, capture_output=True, text=True, timeout=600, cwd=ROOT,
                              env=dict(os.environ, **ENV))
    return subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT,
                            env=dict(os.environ, **ENV), start_new_session=True)


def _content(out) -> dict:
    return {v.id: (v.labels.tolist(), v.rgb.tobytes(), v.audio.tobytes(), v.has_audio)
            for v in ShardSet(str(out))}


def test_ray_gives_the_shards_and_report_of_a_local_run(tmp_path, pca):
    videos = tmp_path / "videos"
    _videos(videos, 2)
    (videos / "notes.mp4").write_text("not a video\n")
    (videos / "empty.mkv").write_bytes(b"")
    labels = tmp_path / "labels.csv"
    labels.write_text("video,labels\n00-bikes.mp4,Bicycle\n01-carphone_distorted.mp4,Car;Phone\n")
    local = _extract(videos, tmp_path / "local", pca, "--labels", str(labels))
    on_ray = _extract(videos, tmp_path / "ray", pca, "--labels", str(labels), "--ray")
    assert local.returncode == on_ray.returncode == 3, on_ray.stderr
    assert _content(tmp_path / "ray") == _content(tmp_path / "local")
    reports = [sorted((r["input"], r["reason"]) for r in
                      json.load(open(tmp_path / name / "report-extract.json"))["rejected"])
               for name in ("local", "ray")]
    assert reports[0] == reports[1] and len(reports[0]) == 2


def _actor_pids() -> list[int]:
    pids = []
    for pid in os.listdir("/proc"):
        try:
            if pid.isdigit() and b"ExtractActor" in open(f"/proc/{pid}/cmdline", "rb").read():
                pids.append(int(pid))
        except OSError:
            pass
    return pids


def _wait_for_shards(out, n: int, proc, limit: float = 300) -> None:
    deadline = time.monotonic() + limit
    while len(shard_paths(str(out))) < n if os.path.isdir(out) else True:
        assert proc.poll() is None, proc.stderr.read().decode()[-3000:]
        assert time.monotonic() < deadline, "no shard appeared"
        time.sleep(0.2)


def test_a_killed_actor_loses_and_doubles_nothing(tmp_path, pca):
    names = _videos(tmp_path / "videos", 8)
    out = tmp_path / "out"
    proc = _extract(tmp_path / "videos", out, pca, "--ray", wait=False)
    _wait_for_shards(out, 1, proc)
    victims = _actor_pids()
    assert victims
    os.kill(victims[0], signal.SIGKILL)
    assert proc.wait(timeout=600) == 0, proc.stderr.read().decode()[-3000:]
    ids = ShardSet(str(out)).ids
    assert sorted(ids) == sorted(names)  # every video exactly once


def test_a_killed_driver_is_resumed_without_redoing_work(tmp_path, pca):
    names = _videos(tmp_path / "videos", 8)
    out = tmp_path / "out"
    proc = _extract(tmp_path / "videos", out, pca, "--ray", wait=False)
    _wait_for_shards(out, 2, proc)
    os.killpg(proc.pid, signal.SIGKILL)  # the driver and the local Ray it started
    proc.wait(timeout=60)
    finished = len(ShardSet(str(out)).ids)
    rerun = _extract(tmp_path / "videos", out, pca, "--ray")
    assert rerun.returncode == 0, rerun.stderr
    assert f"{finished} already in" in rerun.stderr
    assert sorted(ShardSet(str(out)).ids) == sorted(names)
