"""Nothing lost or read silently: writers sharing a folder, and per-video checksums."""
from __future__ import annotations

import json
import multiprocessing
import os
import subprocess
import sys

import numpy as np
import pytest

from conftest import ROOT, run_pipeline
from model_synthetic import flip_a_frame_byte, write_random_frames
from yt8m.errors import DamagedVideo
from yt8m.representation import AUDIO_DIM, RGB_DIM
from yt8m.samples import sample_clip_dir
from yt8m.store import FRAME, ShardMeta, ShardReader, ShardSet, ShardWriter, VideoRecord, shard_paths
from yt8m.vocabulary import Vocabulary

META = ShardMeta(FRAME, __import__("yt8m.representation", fromlist=["OFFICIAL"]).OFFICIAL,
                 Vocabulary(["a", "b"]).ref)


def _write(out: str, who: int, n: int) -> None:
    rng = np.random.default_rng(who)
    with ShardWriter(out, META, videos_per_shard=2) as w:  # the same prefix in every process
        for i in range(n):
            t = int(rng.integers(1, 6))
            w.add(VideoRecord(f"w{who}-{i}", np.zeros(0, np.int32),
                              rng.integers(0, 256, (t, RGB_DIM), dtype=np.uint8),
                              rng.integers(0, 256, (t, AUDIO_DIM), dtype=np.uint8)))


def test_writers_sharing_a_folder_lose_nothing(tmp_path):
    out = str(tmp_path / "shared")
    procs = [multiprocessing.get_context("fork").Process(target=_write, args=(out, k, 40))
             for k in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    ids = ShardSet(out).ids
    assert sorted(ids) == sorted(f"w{k}-{i}" for k in range(4) for i in range(40))
    assert not [f for f in os.listdir(out) if f.endswith(".partial")]


@pytest.fixture
def damaged_data(tmp_path):
    out = str(tmp_path / "data")
    write_random_frames(out, 24, num_classes=10)
    path = shard_paths(out)[0]
    victim = ShardReader(path).ids[3]
    flip_a_frame_byte(path, 3)
    return out, path, victim


def test_a_damaged_video_is_detected_on_every_read_path(damaged_data):
    out, path, victim = damaged_data
    reader = ShardReader(path)
    with pytest.raises(DamagedVideo) as e:
        reader[3]
    assert e.value.video_id == victim and e.value.path == path
    assert reader[2].id != victim  # its neighbours read fine
    seen = [v.id for v in reader.iter_videos()]
    assert victim not in seen and len(seen) == len(reader) - 1
    assert [d.video_id for d in reader.damaged] == [victim]


def test_verify_reports_the_damaged_video_by_shard_and_id(damaged_data, tmp_path):
    out, path, victim = damaged_data
    result = run_pipeline("verify", "--data", out, "--quiet")
    assert result.returncode == 3, result.stderr
    report = json.load(open(os.path.join(out, "report-verify.json")))
    assert [r["input"] for r in report["rejected"]] == [f"{path}: {victim}"]
    assert report["done"] == 23
    clean = str(tmp_path / "clean")
    write_random_frames(clean, 8, num_classes=10)
    assert run_pipeline("verify", "--data", clean, "--quiet").returncode == 0


def _break_record(path: str, record: int) -> int:
    """A byte in the data of the record-th record of a TFRecord file flipped (its data CRC
    fails); returns the record's byte offset."""
    from yt8m.tfrecord import FOOTER_BYTES, HEADER_BYTES
    raw = bytearray(open(path, "rb").read())
    pos = 0
    for _ in range(record):
        pos += HEADER_BYTES + int.from_bytes(raw[pos:pos + 8], "little") + FOOTER_BYTES
    raw[pos + HEADER_BYTES + 10] ^= 0xFF
    open(path, "wb").write(bytes(raw))
    return pos


@pytest.fixture
def records(tmp_path) -> str:
    """24 videos exported as official TFRecords, 8 per file."""
    from yt8m.exporter import export_tfrecords
    write_random_frames(str(tmp_path / "src"), 24, num_classes=10)
    export_tfrecords(str(tmp_path / "src"), str(tmp_path / "records"), videos_per_file=8,
                     quiet=True)
    return str(tmp_path / "records")


def test_verify_checks_official_tfrecords_naming_a_corrupt_record(records):
    """verify --data reads TFRecords as train does: intact ones exit 0 (as a folder or a
    glob); a corrupt record is named by file and byte offset, and the others still read."""
    for data in (records, os.path.join(records, "*.tfrecord")):
        intact = run_pipeline("verify", "--data", data, "--quiet")
        assert intact.returncode == 0, intact.stderr
        assert "24 video(s) in 3 TFRecord file(s) are intact" in intact.stderr
    assert not os.path.exists(os.path.join(records, "report-verify.json"))
    victim = os.path.join(records, "train0001.tfrecord")
    offset = _break_record(victim, 2)
    result = run_pipeline("verify", "--data", records, "--quiet")
    assert result.returncode == 3, result.stderr
    assert "Traceback" not in result.stderr
    report = json.load(open(os.path.join(records, "report-verify.json")))
    assert [r["input"] for r in report["rejected"]] == [f"{victim} (byte {offset})"]
    assert report["rejected"][0]["reason"].startswith("damaged: ")
    assert "CRC" in report["rejected"][0]["reason"] and report["done"] == 23


def test_verify_names_every_file_when_none_can_be_read(tmp_path, records):
    """A shard folder whose only shard is not one, and TFRecords whose every record is
    corrupt: nothing readable, still each damaged input listed, exit 3 (not a usage error)."""
    shards = str(tmp_path / "shards")
    write_random_frames(shards, 8, num_classes=10)
    [only] = shard_paths(shards)
    with open(only, "wb") as f:
        f.write(b"not a shard at all" * 100)
    result = run_pipeline("verify", "--data", shards, "--quiet")
    assert result.returncode == 3, result.stderr
    report = json.load(open(os.path.join(shards, "report-verify.json")))
    assert [r["input"] for r in report["rejected"]] == [only] and report["done"] == 0
    for name in sorted(os.listdir(records)):
        if name.endswith(".tfrecord"):
            for record in range(8):
                _break_record(os.path.join(records, name), record)
    result = run_pipeline("verify", "--data", records, "--quiet")
    assert result.returncode == 3, result.stderr
    report = json.load(open(os.path.join(records, "report-verify.json")))
    assert len(report["rejected"]) == 24
    assert all(".tfrecord (byte " in r["input"] for r in report["rejected"])


def test_training_skips_and_reports_damaged_videos(damaged_data, tmp_path):
    out, path, victim = damaged_data
    result = run_pipeline("train", "--data", out, "--model", "nextvlad", "--clusters", "4",
                          "--groups", "2", "--hidden-size", "8", "--steps", "4", "--batch-size",
                          "8", "--workers", "0", "--out", str(tmp_path / "runs"), "--quiet")
    assert result.returncode == 3, result.stderr
    run = result.stdout.strip().splitlines()[-1]
    report = json.load(open(os.path.join(run, "report-train.json")))
    assert [r["input"] for r in report["rejected"]] == [f"{path}: {victim}"]
    assert "damaged" in result.stderr
    # The model made there, evaluated and predicting on the same damaged data.
    evaluated = run_pipeline("evaluate", "--model", run, "--data", out, "--json", "--quiet",
                             "--report-dir", str(tmp_path))
    assert evaluated.returncode == 3, evaluated.stderr
    assert set(json.loads(evaluated.stdout)) >= {"gap", "map", "hit_at_1", "perr"}
    assert victim in open(tmp_path / "report-evaluate.json").read()
    csv_path = tmp_path / "pred" / "out.csv"
    predicted = run_pipeline("predict", "--model", run, "--data", out, "--out", str(csv_path),
                             "--quiet")
    assert predicted.returncode == 3, predicted.stderr
    rows = csv_path.read_text().splitlines()
    assert len(rows) == 1 + 23 and not any(r.startswith(victim + ",") for r in rows)
    assert victim in open(tmp_path / "pred" / "report-predict.json").read()


@pytest.fixture
def small_disk(tmp_path):
    """A real 1 MB filesystem (tmpfs), so that writes really run out of space."""
    mount = tmp_path / "small"
    mount.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)],
                      capture_output=True).returncode != 0:
        pytest.skip("mounting a tmpfs needs root")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=True)


def test_a_full_disk_stops_the_job_cleanly_and_keeps_what_was_finished(small_disk, tmp_path):
    from synthetic.pca import write_random_pca

    videos = tmp_path / "videos"
    videos.mkdir()
    clip = open(os.path.join(sample_clip_dir(), "bikes.mp4"), "rb").read()
    for i in range(20):
        (videos / f"clip{i:02d}.mp4").write_bytes(clip)
    out = small_disk / "features"
    with open(small_disk / "filler", "wb") as f:  # leave about 400 kB free
        f.write(b"\0" * (1024 * 1024 - 400 * 1024))
    pca = write_random_pca(str(tmp_path / "pca"))
    result = run_pipeline("extract", "--videos", str(videos), "--out", str(out), "--pca-dir", pca,
                          "--random-weights", "--max-frames", "5", "--videos-per-shard", "2",
                          "--workers", "1", "--quiet")
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert str(out) in result.stderr and "MB free" in result.stderr
    assert not [f for f in os.listdir(out) if f.endswith(".partial")]
    kept = ShardSet(str(out))
    assert 0 < len(kept) < 20 and len(kept) % 2 == 0  # whole shards only, all readable
    for video in kept:
        assert video.n_frames == 5
    finished = len(kept)
    kept.close()
    # Room again: the rerun resumes after the finished shards and completes the job.
    os.remove(small_disk / "filler")
    again = run_pipeline("extract", "--videos", str(videos), "--out", str(out), "--pca-dir", pca,
                         "--random-weights", "--max-frames", "5", "--videos-per-shard", "2",
                         "--workers", "1", "--quiet")
    assert again.returncode == 0, again.stderr
    assert f"{finished} already in" in again.stderr
    complete = ShardSet(str(out))
    assert sorted(complete.ids) == sorted(f"clip{i:02d}.mp4" for i in range(20))
    complete.close()


@pytest.mark.slow
def test_a_changed_file_is_extracted_again_and_its_stale_copy_replaced(tmp_path):
    from synthetic.pca import write_random_pca

    videos = tmp_path / "videos"
    videos.mkdir()
    data = sample_clip_dir()
    (videos / "a.mp4").write_bytes(open(os.path.join(data, "carphone_pristine.mp4"), "rb").read())
    (videos / "b.mp4").write_bytes(open(os.path.join(data, "carphone_distorted.mp4"), "rb").read())
    out, pca = str(tmp_path / "out"), write_random_pca(str(tmp_path / "pca"))
    args = ["extract", "--videos", str(videos), "--out", out, "--pca-dir", pca, "--random-weights",
            "--workers", "1", "--quiet", "--videos-per-shard", "1"]
    assert run_pipeline(*args).returncode == 0
    before = {v.id: v for v in ShardSet(out)}
    unchanged = run_pipeline(*args)
    assert unchanged.returncode == 0 and "2 already in" in unchanged.stderr
    # The same name, other content (a copy that finished later, say).
    (videos / "a.mp4").write_bytes(open(os.path.join(data, "bikes.mp4"), "rb").read())
    rerun = run_pipeline(*args)
    assert rerun.returncode == 0, rerun.stderr
    assert "1 already in" in rerun.stderr and "changed since" in rerun.stderr
    after = {v.id: v for v in ShardSet(out)}
    assert sorted(ShardSet(out).ids) == ["a.mp4", "b.mp4"]  # one copy each
    assert after["a.mp4"].n_frames == 10 != before["a.mp4"].n_frames  # bikes.mp4 is 10 s
    np.testing.assert_array_equal(after["b.mp4"].rgb, before["b.mp4"].rgb)


@pytest.mark.slow
def test_two_extract_jobs_into_one_folder_lose_nothing(tmp_path):
    """Two `extract` processes, different videos, one --out, at the same time."""
    from synthetic.pca import write_random_pca

    pca = write_random_pca(str(tmp_path / "pca"))
    clip = open(os.path.join(sample_clip_dir(), "carphone_distorted.mp4"), "rb").read()
    folders = []
    for job in ("a", "b"):
        folder = tmp_path / f"videos_{job}"
        folder.mkdir()
        for i in range(6):
            (folder / f"{job}{i}.mp4").write_bytes(clip)
        folders.append(folder)
    out = tmp_path / "shared"
    procs = [subprocess.Popen(
        [sys.executable, os.path.join(ROOT, "pipeline.py"), "extract", "--videos", str(folder),
         "--out", str(out), "--pca-dir", pca, "--random-weights", "--max-frames", "3",
         "--videos-per-shard", "1", "--workers", "1", "--quiet"],
        cwd=ROOT, stderr=subprocess.PIPE, env=dict(os.environ, OMP_NUM_THREADS="1"))
        for folder in folders]
    for p in procs:
        assert p.wait(timeout=300) == 0, p.stderr.read().decode()[-2000:]
    assert sorted(ShardSet(str(out)).ids) == sorted(f"{j}{i}.mp4" for j in "ab" for i in range(6))


def test_dropping_stale_copies_leaves_a_shard_with_damage_as_it_is(damaged_data):
    """Rewriting it would drop the damaged video unreported; its problem is returned."""
    from yt8m.shard_folder import remove_videos

    _, path, victim = damaged_data
    before = open(path, "rb").read()
    other = ShardReader(path).ids[0]
    problems = remove_videos(path, {other})
    assert [p.where for p in problems] == [f"{path}: {victim}"]
    assert open(path, "rb").read() == before
