"""`extract` and `fit-pca` as jobs: an output folder they cannot use, a SIGTERM, a folder
named like a video, two fit-pca runs into one folder. Real subprocesses of pipeline.py on
real clips, randomly initialised backbones (--random-weights) and a PCA stand-in."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from conftest import ROOT, run_pipeline
from synthetic.pca import write_random_pca
from yt8m.store import ShardSet, done_ids, shard_paths

COMMON = ["--random-weights", "--max-frames", "5"]


def _no_trace(proc_stderr: str) -> None:
    assert "Traceback" not in proc_stderr, proc_stderr[-3000:]


def _link_videos(folder: str, names: dict[str, str]) -> str:
    """`folder` holding name -> clip links (and an empty file for a None clip)."""
    os.makedirs(folder, exist_ok=True)
    for name, clip in names.items():
        path = os.path.join(folder, name)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        if clip is None:
            open(path, "wb").close()
        else:
            os.symlink(clip, path)
    return folder


@pytest.fixture(scope="module")
def pca_dir(tmp_path_factory) -> str:
    return write_random_pca(str(tmp_path_factory.mktemp("pca")))


# ------------------------------------------------------------- unwritable --out

@pytest.fixture
def read_only_dir(tmp_path):
    """A folder no file can be created in: mode 555 for a normal user; for root (whom
    modes do not stop) a read-only tmpfs mounted there, when this machine allows it."""
    d = tmp_path / "read-only"
    d.mkdir()
    if os.geteuid() != 0:
        d.chmod(0o555)
        yield str(d)
        d.chmod(0o755)
        return
    mount = subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(d)],
                           capture_output=True, text=True)
    if mount.returncode != 0:
        pytest.skip(f"running as root and cannot mount a read-only tmpfs: {mount.stderr}")
    try:
        yield str(d)
    finally:
        subprocess.run(["umount", str(d)], check=True)


@pytest.mark.parametrize("command", ["extract", "fit-pca"])
@pytest.mark.parametrize("case", ["a file", "under a file", "read-only", "under read-only"])
def test_unwritable_out_exits_2_before_any_video_is_decoded(command, case, read_only_dir,
                                                            good_clips, pca_dir, tmp_path):
    # The empty file comes first: had decoding begun, it would be reported as rejected.
    videos = _link_videos(str(tmp_path / "videos"), {"0empty.mp4": None,
                                                     "clip.avi": good_clips["avi"]})
    a_file = str(tmp_path / "a-file")
    with open(a_file, "w") as f:
        f.write("not a folder\n")
    out, why = {"a file": (a_file, "is a file, not a folder"),
                "under a file": (os.path.join(a_file, "features"), "is a file, not a folder"),
                "read-only": (read_only_dir, "read-only file system" if os.geteuid() == 0
                              else "permission denied"),
                "under read-only": (os.path.join(read_only_dir, "sub"), "")}[case]
    extra = ["--pca-dir", pca_dir] if command == "extract" else []
    proc = run_pipeline(command, "--videos", videos, "--out", out, *COMMON, *extra)
    assert proc.returncode == 2, proc.stderr[-3000:]
    _no_trace(proc.stderr)
    assert f"error: --out {out}: cannot write there: " in proc.stderr and why in proc.stderr
    assert "Pass as --out a folder" in proc.stderr
    assert "rejected" not in proc.stderr and "video(s)" not in proc.stderr  # no work began
    assert "RANDOM WEIGHTS" not in proc.stderr
    assert open(a_file).read() == "not a folder\n"
    if "read-only" in case:
        assert os.listdir(read_only_dir) == []


# ------------------------------------------------------------- SIGTERM

def test_sigterm_writes_finished_videos_and_the_rerun_resumes(good_clips, pca_dir, tmp_path):
    """Videos a and b are finished (pending in the writer, 16 a shard) once c's rejection
    is printed (results come in order); SIGTERM then must keep them as Ctrl-C does."""
    videos = _link_videos(str(tmp_path / "videos"), {
        "a.avi": good_clips["avi"], "b.mp4": good_clips["rotated"], "c_empty.mp4": None,
        "d.mkv": good_clips["mkv"], "e.mp4": good_clips["ntsc_29_97"],
        "f.mp4": good_clips["vfr"]})
    out = str(tmp_path / "features")
    args = [sys.executable, os.path.join(ROOT, "pipeline.py"), "extract", "--videos", videos,
            "--out", out, "--pca-dir", pca_dir, *COMMON]
    proc = subprocess.Popen(args, cwd=ROOT, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL,
                            text=True, env=dict(os.environ, PYTHONUNBUFFERED="1"))
    seen = []
    for line in proc.stderr:
        seen.append(line)
        if line.startswith("rejected: c_empty.mp4"):
            assert not shard_paths(out)  # nothing written yet: all pending in memory
            proc.send_signal(signal.SIGTERM)
    seen.append(proc.stderr.read())
    stderr = "".join(seen)
    assert proc.wait(timeout=300) == 130, stderr
    _no_trace(stderr)
    assert "interrupted; finished shards are kept" in stderr
    stored = done_ids(out)
    assert {"a.avi", "b.mp4"} <= stored < {"a.avi", "b.mp4", "d.mkv", "e.mp4", "f.mp4"}
    assert {r.id for r in ShardSet(out)} == stored  # complete shards, checksums verified
    first = {p: os.stat(p).st_mtime_ns for p in shard_paths(out)}

    rerun = run_pipeline("extract", "--videos", videos, "--out", out, "--pca-dir", pca_dir,
                         *COMMON, "--quiet")
    assert rerun.returncode == 3, rerun.stderr[-3000:]  # c_empty.mp4 is rejected again
    _no_trace(rerun.stderr)
    assert f"{len(stored)} already in {out}, {6 - len(stored)} to do" in rerun.stderr
    assert {p: os.stat(p).st_mtime_ns for p in first} == first
    assert done_ids(out) == {"a.avi", "b.mp4", "d.mkv", "e.mp4", "f.mp4"}
    assert len(ShardSet(out)) == 5


# ------------------------------------------------------------- a folder named like a video

def test_folder_named_like_a_video_is_walked_never_rejected(good_clips, pca_dir, tmp_path):
    from extract.job import list_videos

    videos = _link_videos(str(tmp_path / "videos"), {
        "clip.mp4/inner.avi": good_clips["avi"],
        "trip.mkv/day1.webm/first.mp4": good_clips["ntsc_29_97"],
        "top.mp4": good_clips["rotated"]})
    os.makedirs(os.path.join(videos, "empty.mov"))  # a folder with nothing in it: no id
    expected = ["clip.mp4/inner.avi", "top.mp4", "trip.mkv/day1.webm/first.mp4"]
    assert list_videos(videos) == expected

    out = str(tmp_path / "features")
    proc = run_pipeline("extract", "--videos", videos, "--out", out, "--pca-dir", pca_dir,
                        *COMMON, "--quiet")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "rejected" not in proc.stderr and "directory" not in proc.stderr
    assert not os.path.exists(os.path.join(out, "report-extract.json"))
    assert sorted(ShardSet(out).ids) == expected


# ------------------------------------------------------------- fit-pca, one at a time

def test_second_fit_pca_into_one_folder_is_refused_naming_the_first(good_clips, tmp_path):
    """The first run is paused (SIGSTOP) while it holds the folder, so the second one
    surely starts while the first is running, on any machine speed."""
    first = _link_videos(str(tmp_path / "first"), {"a.avi": good_clips["avi"],
                                                    "b.mp4": good_clips["rotated"]})
    second = _link_videos(str(tmp_path / "second"), {"c.mp4": good_clips["ntsc_29_97"]})
    out = str(tmp_path / "pca")
    fit = ["--random-weights", "--max-frames", "3", "--out", out]
    a = subprocess.Popen([sys.executable, os.path.join(ROOT, "pipeline.py"), "fit-pca",
                          "--videos", first, *fit], cwd=ROOT,
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    lock = os.path.join(out, ".fit-pca.lock")
    deadline = time.time() + 300
    while not (os.path.exists(lock) and f"pid {a.pid} " in open(lock).read()):
        assert a.poll() is None, a.stderr.read()
        assert time.time() < deadline
        time.sleep(0.01)
    os.kill(a.pid, signal.SIGSTOP)
    try:
        assert a.poll() is None  # still holds the folder
        b = run_pipeline("fit-pca", "--videos", second, *fit)
    finally:
        os.kill(a.pid, signal.SIGCONT)
    assert b.returncode == 2, b.stderr[-3000:]
    _no_trace(b.stderr)
    assert f"--out {out} is being written by another `fit-pca` (pid {a.pid} on " in b.stderr
    assert "Wait for that one to finish, or pass another --out" in b.stderr
    assert "WARNING: --random-weights" not in b.stderr  # refused before any work

    assert a.wait(timeout=300) == 0, a.stderr.read()
    fitted = json.load(open(os.path.join(out, "FITTED.json")))
    assert fitted["rgb_frames"] == 3 + 3  # the first run's videos, not replaced

    again = run_pipeline("fit-pca", "--videos", second, *fit)  # the folder is free again
    assert again.returncode == 0, again.stderr[-3000:]
    assert json.load(open(os.path.join(out, "FITTED.json")))["rgb_frames"] == 3
