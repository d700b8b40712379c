"""The shard store on real HDF5 files: round trips, crashes, damaged files."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import h5py
import numpy as np
import pytest

from yt8m.errors import ShardError
from yt8m.representation import OFFICIAL
from yt8m.store import (
    FRAME,
    VIDEO,
    ShardMeta,
    ShardReader,
    ShardSet,
    ShardWriter,
    VideoRecord,
    done_ids,
    open_shards,
    shard_paths,
)
from yt8m.vocabulary import Vocabulary

VOCAB = Vocabulary.from_names([f"class{i}" for i in range(50)])
META = ShardMeta(FRAME, OFFICIAL, VOCAB.ref, {"max_frames": 360})


def make_video(i: int, frames: int, seed: int = 0) -> VideoRecord:
    rng = np.random.default_rng(seed * 100003 + i)
    segs = rng.integers(0, 3)
    return VideoRecord(
        id=f"videos/clip {i:04d}.mp4",
        labels=np.sort(rng.choice(50, rng.integers(0, 4), replace=False)).astype(np.int32),
        rgb=rng.integers(0, 256, (frames, 1024), dtype=np.uint8),
        audio=rng.integers(0, 256, (frames, 128), dtype=np.uint8), has_audio=bool(i % 3),
        segment_start_times=(np.arange(segs) * 5).astype(np.int32),
        segment_labels=rng.integers(0, 50, segs).astype(np.int32),
        segment_scores=rng.integers(0, 2, segs).astype(np.float32))


def assert_same(a: VideoRecord, b: VideoRecord) -> None:
    assert a.id == b.id and a.has_audio == b.has_audio
    for name in ("labels", "rgb", "audio", "segment_start_times", "segment_labels", "segment_scores"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)
        if name in ("rgb", "audio"):
            assert getattr(b, name).dtype == np.uint8


def test_round_trip_many_lengths_bit_exact(tmp_path):
    lengths = [1, 2, 359, 360, 300, 17] + list(np.random.default_rng(1).integers(1, 361, 60))
    videos = [make_video(i, int(n)) for i, n in enumerate(lengths)]
    with ShardWriter(str(tmp_path), META, videos_per_shard=16) as w:
        for v in videos:
            w.add(v)
    assert len(shard_paths(str(tmp_path))) == 5  # 66 videos, 16 per shard
    data = ShardSet(str(tmp_path))
    assert len(data) == len(videos) and data.ids == [v.id for v in videos]
    np.testing.assert_array_equal(data.n_frames, lengths)
    for v, got in zip(videos, data):  # sequential, block reads
        assert_same(v, got)
    for i in np.random.default_rng(2).permutation(len(videos))[:20]:  # random access
        assert_same(videos[i], data[int(i)])
    assert data.meta == META and data.meta.extra == {"max_frames": 360}
    assert done_ids(str(tmp_path)) == {v.id for v in videos}


def test_a_shard_of_no_videos_reads_back_as_empty(tmp_path):
    """The writer's layout, even with nothing in it, is what the reader's layout check takes."""
    from yt8m.shard_writer import write_shard

    path = str(tmp_path / "empty.h5")
    write_shard(path, [], META)
    reader = ShardReader(path)
    assert len(reader) == 0 and list(reader.iter_videos()) == [] and reader.damaged == []


def test_video_level_round_trip(tmp_path):
    meta = ShardMeta(VIDEO, OFFICIAL, VOCAB.ref)
    rng = np.random.default_rng(0)
    videos = [VideoRecord(f"v{i}", np.array([i % 50], np.int32),
                          mean_rgb=rng.standard_normal(1024).astype(np.float32),
                          mean_audio=rng.standard_normal(128).astype(np.float32)) for i in range(30)]
    with ShardWriter(str(tmp_path), meta, videos_per_shard=7) as w:
        for v in videos:
            w.add(v)
    data = ShardSet(str(tmp_path))
    for v, got, again in zip(videos, data, (data[i] for i in range(len(data)))):
        for g in (got, again):
            assert g.id == v.id and g.rgb is None
            np.testing.assert_array_equal(g.mean_rgb, v.mean_rgb)
            np.testing.assert_array_equal(g.mean_audio, v.mean_audio)


def test_reader_survives_pickling_into_another_process(tmp_path):
    import multiprocessing as mp
    with ShardWriter(str(tmp_path), META) as w:
        for i in range(5):
            w.add(make_video(i, 10 + i))
    reader = ShardReader(shard_paths(str(tmp_path))[0])
    reader[0]  # open the handle in the parent first, as a DataLoader's dataset would
    with mp.get_context("fork").Pool(2) as pool:
        sums = pool.map(_frame_sum, [(reader, i) for i in range(5)])
    assert sums == [int(reader[i].rgb.sum()) for i in range(5)]


def _frame_sum(args):
    reader, i = args
    return int(reader[i].rgb.sum())


WRITER_SCRIPT = textwrap.dedent("""
    import sys, time
    sys.path.insert(0, {root!r}); sys.path.insert(0, {tests!r})
    from test_store import META, make_video
    from yt8m.store import ShardWriter, done_ids
    out = sys.argv[1]
    done = done_ids(out)
    with ShardWriter(out, META, videos_per_shard=8) as w:
        for i in range(40):
            v = make_video(i, 300)
            if v.id in done:
                continue
            w.add(v)
            print("added", i, flush=True)
""")


def test_sigkill_mid_shard_then_rerun_completes(tmp_path):
    out = str(tmp_path / "shards")
    script = tmp_path / "writer.py"
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    script.write_text(WRITER_SCRIPT.format(root=root, tests=os.path.join(root, "tests")))
    # Kill while a shard file is being written (its temporary file exists), then
    # between shards, with videos pending in memory.
    for when in ("mid-write", "mid-write", 0.8):
        proc = subprocess.Popen([sys.executable, str(script), out], stdout=subprocess.PIPE, text=True)
        if when == "mid-write":
            deadline = time.time() + 60
            while time.time() < deadline and not (
                    os.path.isdir(out) and any(p.endswith(".partial") for p in os.listdir(out))):
                time.sleep(0.0005)
        else:
            time.sleep(when)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        if when == "mid-write":  # the kill landed while the shard was being written
            assert any(p.endswith(".partial") for p in os.listdir(out))
        readers, errors = open_shards(out) if os.path.isdir(out) else ([], [])
        assert errors == []  # nothing a reader rejects, let alone accepts half of
        for r in readers:
            for v in r.iter_videos():
                assert_same(make_video(int(v.id[12:16]), 300), v)
    subprocess.run([sys.executable, str(script), out], check=True, capture_output=True)
    data = ShardSet(out)
    ids = data.ids
    assert sorted(ids) == sorted(make_video(i, 1).id for i in range(40))
    assert len(ids) == len(set(ids))
    assert not [p for p in os.listdir(out) if p.endswith(".partial")]


def test_damaged_files_get_specific_errors_and_others_stay_readable(tmp_path):
    with ShardWriter(str(tmp_path), META, videos_per_shard=4) as w:
        for i in range(8):
            w.add(make_video(i, 50))
    good, second = shard_paths(str(tmp_path))
    data = open(second, "rb").read()
    (tmp_path / "shard-truncated.h5").write_bytes(data[: len(data) // 2])
    (tmp_path / "shard-empty.h5").write_bytes(b"")
    (tmp_path / "shard-text.h5").write_text("this is not a shard\n" * 100)
    with h5py.File(tmp_path / "shard-foreign.h5", "w") as f:
        f["x"] = np.arange(3)
    readers, errors = open_shards(str(tmp_path))
    assert sorted(r.path for r in readers) == [good, second]
    reasons = {os.path.basename(e.path): e.reason for e in errors}
    assert "truncated" in reasons["shard-truncated.h5"]
    assert "empty file" in reasons["shard-empty.h5"]
    assert "not an HDF5 file" in reasons["shard-text.h5"]
    assert "not a yt8m-toolkit-shard" in reasons["shard-foreign.h5"]
    with pytest.raises(ShardError) as err:
        ShardSet(str(tmp_path))
    assert "shard-" in str(err.value)
    assert len(ShardSet(str(tmp_path), strict=False)) == 8


def test_mixed_representations_are_refused(tmp_path):
    from yt8m.representation import Representation
    with ShardWriter(str(tmp_path), META, prefix="a") as w:
        w.add(make_video(0, 3))
    other = ShardMeta(FRAME, Representation(random_weights=True), VOCAB.ref)
    with ShardWriter(str(tmp_path), other, prefix="b") as w:
        w.add(make_video(1, 3))
    with pytest.raises(ShardError, match="random_weights"):
        ShardSet(str(tmp_path))
