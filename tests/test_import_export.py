"""import-yt8m / export-tfrecord on records assembled byte by byte (see test_tfrecord)."""
from __future__ import annotations

import json
import os

import numpy as np
import pytest

from conftest import run_pipeline
from test_tfrecord import crc32c_bitwise, frame_level, mask, split_frames, tf_frame, video_level
from yt8m.exporter import export_tfrecords
from yt8m.importer import import_tfrecords
from yt8m.store import FRAME, VIDEO, ShardSet, shard_paths
from yt8m.vocabulary import YT8M_NAME, Vocabulary


def make_video(i: int, frames: int, segments: bool = False) -> dict:
    rng = np.random.default_rng(1000 + i)
    labels = sorted(rng.choice(3862, 1 + i % 4, replace=False).tolist())
    v = {"id": f"v{i:03d}" + "Ab"[i % 2], "labels": labels,
         "rgb": rng.integers(0, 256, (frames, 1024), dtype=np.uint8),
         "audio": rng.integers(0, 256, (frames, 128), dtype=np.uint8), "segments": None}
    if segments:
        n = 1 + i % 5
        v["segments"] = ((np.arange(n) * 5).tolist(), rng.integers(0, 3862, n).tolist(),
                         rng.integers(0, 2, n).astype(float).tolist())
    return v


def encode(v: dict, **kw) -> bytes:
    return frame_level(v["id"], v["labels"], v["rgb"], v["audio"], v["segments"], **kw)


def write_file(path, records: list[bytes]) -> list[int]:
    """Hand-framed TFRecord file; returns each record's byte offset."""
    offsets, blob = [], b""
    for r in records:
        offsets.append(len(blob))
        blob += tf_frame(r)
    path.write_bytes(blob)
    return offsets


def assert_imported(shards: ShardSet, videos: list[dict]) -> None:
    got = {v.id: v for v in shards}
    assert sorted(got) == sorted(v["id"] for v in videos)
    for v in videos:
        g = got[v["id"]]
        assert g.labels.tolist() == v["labels"] and g.has_audio
        assert g.rgb.dtype == np.uint8 and g.audio.dtype == np.uint8
        np.testing.assert_array_equal(g.rgb, v["rgb"])
        np.testing.assert_array_equal(g.audio, v["audio"])
        starts, labels, scores = v["segments"] or ([], [], [])
        assert g.segment_start_times.tolist() == starts and g.segment_labels.tolist() == labels
        assert g.segment_scores.tolist() == scores


def test_hand_built_v2_v3_and_2017_records_import_exactly(tmp_path):
    v2 = [make_video(i, n) for i, n in enumerate([1, 300, 37])]
    v3 = [make_video(10 + i, n, segments=True) for i, n in enumerate([120, 5])]
    old = make_video(20, 3)
    src = tmp_path / "in"
    src.mkdir()
    write_file(src / "train0000.tfrecord", [encode(v) for v in v2])
    write_file(src / "validate0000.tfrecord", [encode(v, packed=False) for v in v3])
    write_file(src / "train_2017.tfrecord", [encode(old, id_key="video_id")])
    out = str(tmp_path / "shards")
    report = import_tfrecords(str(src / "*.tfrecord"), out)
    assert report.rejected == [] and report.done == 6
    assert sorted(os.path.basename(p) for p in shard_paths(out)) == [
        "train0000-00000.h5", "train_2017-00000.h5", "validate0000-00000.h5"]
    shards = ShardSet(out)
    assert shards.meta.kind == FRAME and shards.meta.vocabulary.name == YT8M_NAME
    assert shards.meta.vocabulary.num_classes == 3862
    assert shards.meta.representation.source == "youtube-8m"
    assert_imported(shards, v2 + v3 + [old])


def test_export_then_import_is_identity_and_crcs_verify(tmp_path):
    videos = [make_video(i, n, segments=i % 2 == 0) for i, n in enumerate([2, 300, 17, 64, 1])]
    write_file(tmp_path / "a.tfrecord", [encode(v) for v in videos])
    first = str(tmp_path / "first")
    assert import_tfrecords(str(tmp_path / "a.tfrecord"), first).exit_code == 0
    exported = tmp_path / "exported"
    report = export_tfrecords(first, str(exported), split="validate", videos_per_file=2)
    assert report.exit_code == 0 and report.done == 5
    names = sorted(os.listdir(exported))
    assert names == ["validate0000.tfrecord", "validate0001.tfrecord", "validate0002.tfrecord"]
    for name in names:  # framing and every CRC checked bit by bit
        records = split_frames((exported / name).read_bytes())
        assert len(records) == (1 if name.endswith("2.tfrecord") else 2)
    # Byte-identical to the hand-assembled records.
    assert split_frames((exported / names[0]).read_bytes()) == [encode(v) for v in videos[:2]]
    second = str(tmp_path / "second")
    assert import_tfrecords(str(exported / "*.tfrecord"), second).exit_code == 0
    a, b = list(ShardSet(first)), list(ShardSet(second))
    assert [v.id for v in a] == [v.id for v in b]
    for x, y in zip(a, b):
        for name in ("labels", "rgb", "audio", "segment_start_times", "segment_labels", "segment_scores"):
            np.testing.assert_array_equal(getattr(x, name), getattr(y, name), err_msg=name)


def test_video_level_import_and_export(tmp_path):
    rng = np.random.default_rng(5)
    rows = [(f"vid{i}", [i, 100 + i], rng.normal(size=1024).astype(np.float32),
             rng.normal(size=128).astype(np.float32)) for i in range(4)]
    write_file(tmp_path / "train0007.tfrecord",
               [video_level(v, l, r.tolist(), a.tolist(), packed=i % 2 == 0)
                for i, (v, l, r, a) in enumerate(rows)])
    out = str(tmp_path / "video")
    assert import_tfrecords(str(tmp_path / "train0007.tfrecord"), out).exit_code == 0
    shards = ShardSet(out)
    assert shards.meta.kind == VIDEO and len(shards) == 4
    for (vid, labels, r, a), got in zip(rows, shards):
        assert got.id == vid and got.labels.tolist() == labels
        np.testing.assert_array_equal(got.mean_rgb, r)
        np.testing.assert_array_equal(got.mean_audio, a)
    export_tfrecords(out, str(tmp_path / "exp"))
    back = split_frames((tmp_path / "exp" / "train0000.tfrecord").read_bytes())
    assert back == [video_level(v, l, r.tolist(), a.tolist()) for v, l, r, a in rows]


def _bad_inputs(src):
    """A folder with one good file and every kind of damage; returns (good videos, expected)."""
    good = [make_video(i, n) for i, n in enumerate([4, 9, 2, 6, 3, 8])]
    write_file(src / "train0000.tfrecord", [encode(v) for v in good[:2]])
    # data CRC damaged in the middle record
    offs = write_file(src / "train0001.tfrecord",
                      [encode(good[2]), encode(make_video(50, 3)), encode(good[3])])
    data = bytearray((src / "train0001.tfrecord").read_bytes())
    data[offs[1] + 12 + 40] ^= 0xFF
    (src / "train0001.tfrecord").write_bytes(bytes(data))
    # truncated tail after one good record
    offs2 = write_file(src / "train0002.tfrecord", [encode(good[4]), encode(make_video(51, 3))])
    data = (src / "train0002.tfrecord").read_bytes()
    (src / "train0002.tfrecord").write_bytes(data[:-100])
    (src / "train0003.tfrecord").write_bytes(os.urandom(3000))
    (src / "train0004.tfrecord").write_bytes(b"")
    bad = make_video(52, 4)
    mismatch = make_video(53, 4)
    offs5 = write_file(src / "train0005.tfrecord", [
        frame_level(bad["id"], bad["labels"], None, bad["audio"]),  # missing rgb
        encode(good[5]),
        frame_level(mismatch["id"], [1], mismatch["rgb"], mismatch["audio"][:3]),
        frame_level("short", [1], np.zeros((2, 1000), np.uint8), np.zeros((2, 128), np.uint8)),
        frame_level("badlabel", [3862], np.zeros((2, 1024), np.uint8), np.zeros((2, 128), np.uint8)),
    ])
    expected = [
        (f"train0001.tfrecord (byte {offs[1]})", "CRC mismatch"),
        (f"train0002.tfrecord (byte {offs2[1]})", "truncated"),
        ("train0003.tfrecord (byte 0)", "not a TFRecord file"),
        ("train0004.tfrecord (byte 0)", "empty file"),
        (f"train0005.tfrecord (byte {offs5[0]})", f"{bad['id']}: no feature list 'rgb'"),
        (f"train0005.tfrecord (byte {offs5[2]})", "'rgb' has 4 frames but 'audio' has 3"),
        (f"train0005.tfrecord (byte {offs5[3]})", "frame 0 has 1000 bytes, expected 1024"),
        (f"train0005.tfrecord (byte {offs5[4]})", "label id 3862"),
    ]
    return good, expected


def _check_report(out, expected):
    body = json.load(open(os.path.join(out, "report-import-yt8m.json")))
    rejected = body["rejected"]
    assert len(rejected) == len(expected), rejected
    for (where, why), r in zip(expected, sorted(rejected, key=lambda r: r["input"])):
        assert r["input"].endswith(where) and why in r["reason"], (r, where, why)


def test_damaged_inputs_are_reported_and_nothing_else_lost(tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    good, expected = _bad_inputs(src)
    out = str(tmp_path / "out")
    result = run_pipeline("import-yt8m", "--tfrecords", str(src / "*.tfrecord"), "--out", out, "--quiet")
    assert result.returncode == 3, result.stderr
    assert "Traceback" not in result.stderr
    _check_report(out, expected)
    assert_imported(ShardSet(out), good)
    # Files without a single good record leave no shard; the others one each.
    assert sorted(os.path.basename(p) for p in shard_paths(out)) == [
        f"train000{i}-00000.h5" for i in (0, 1, 2, 5)]
    # A rerun skips the imported files, re-reports their rejections, adds nothing.
    before = {p: os.path.getmtime(p) for p in shard_paths(out)}
    again = run_pipeline("import-yt8m", "--tfrecords", str(src / "*.tfrecord"), "--out", out, "--quiet")
    assert again.returncode == 3, again.stderr
    _check_report(out, expected)
    assert {p: os.path.getmtime(p) for p in shard_paths(out)} == before
    assert len(ShardSet(out)) == len(good)


@pytest.mark.slow
def test_workers_give_the_same_shards(tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    good, expected = _bad_inputs(src)
    out = str(tmp_path / "out")
    result = run_pipeline("import-yt8m", "--tfrecords", str(src), "--out", out, "--workers", "3", "--quiet")
    assert result.returncode == 3, result.stderr
    _check_report(out, expected)
    assert_imported(ShardSet(out), good)


def test_cli_import_then_export_subprocess(tmp_path):
    videos = [make_video(i, n, segments=True) for i, n in enumerate([3, 5, 7])]
    write_file(tmp_path / "validate0000.tfrecord", [encode(v) for v in videos])
    vocab = Vocabulary.from_names([f"c{i}" for i in range(3862)])
    vocab_path = vocab.save(str(tmp_path))
    out = str(tmp_path / "shards")
    r = run_pipeline("import-yt8m", "--tfrecords", str(tmp_path / "*.tfrecord"), "--out", out,
                     "--vocabulary", vocab_path, "--quiet")
    assert r.returncode == 0, r.stderr
    assert ShardSet(out).vocabulary.names == vocab.names
    exp = str(tmp_path / "exp")
    r = run_pipeline("export-tfrecord", "--data", out, "--out", exp, "--split", "validate", "--quiet")
    assert r.returncode == 0, r.stderr
    assert sorted(os.listdir(exp)) == ["validate0000.tfrecord", "vocabulary.csv"]
    assert split_frames(open(os.path.join(exp, "validate0000.tfrecord"), "rb").read()) \
        == [encode(v) for v in videos]


def test_usage_errors_exit_2(tmp_path):
    r = run_pipeline("import-yt8m", "--tfrecords", str(tmp_path / "nothing*.tfrecord"),
                     "--out", str(tmp_path))
    assert r.returncode == 2 and "matches no file" in r.stderr and "Traceback" not in r.stderr
    r = run_pipeline("export-tfrecord", "--data", str(tmp_path / "none"), "--out", str(tmp_path / "x"))
    assert r.returncode == 2 and "no such folder" in r.stderr and "Traceback" not in r.stderr


def test_mixed_frame_and_video_level_files_are_kept_apart(tmp_path):
    write_file(tmp_path / "a.tfrecord", [encode(make_video(1, 2))])
    write_file(tmp_path / "b.tfrecord", [video_level("x", [1], [0.0] * 1024, [0.0] * 128)])
    report = import_tfrecords(str(tmp_path / "*.tfrecord"), str(tmp_path / "out"))
    assert report.exit_code == 3 and len(report.rejected) == 1
    name, reason = report.rejected[0]
    assert name.endswith("b.tfrecord") and "video-level records" in reason
    assert [v.id for v in ShardSet(str(tmp_path / "out"))] == [make_video(1, 2)["id"]]


def test_independent_crc_of_framing_helper():
    # the helpers themselves: a known TFRecord framing of b"" (length 0)
    assert tf_frame(b"")[8:12] == mask(crc32c_bitwise(bytes(8))).to_bytes(4, "little")


def _file_of(path, ids) -> None:
    rng = np.random.default_rng(len(ids))
    with open(path, "wb") as f:
        for vid in ids:
            f.write(tf_frame(frame_level(vid, [1], rng.integers(0, 256, (2, 1024), dtype=np.uint8),
                                         rng.integers(0, 256, (2, 128), dtype=np.uint8))))


def test_a_file_is_streamed_into_bounded_shards_and_marked_when_whole(tmp_path):
    from yt8m import importer

    src = tmp_path / "src"
    src.mkdir()
    _file_of(src / "train0000.tfrecord", [f"v{i}" for i in range(600)])
    out = tmp_path / "out"
    assert import_tfrecords(str(src), str(out), quiet=True).exit_code == 0
    shards = shard_paths(str(out))
    assert len(shards) == -(-600 // importer.VIDEOS_PER_SHARD)  # 256 videos at most in memory
    assert sorted(ShardSet(str(out)).ids) == sorted(f"v{i}" for i in range(600))
    assert os.path.exists(out / ".train0000.imported")
    # A file without its marker (an interrupted import) is redone from scratch, whole.
    os.remove(out / ".train0000.imported")
    os.remove(shards[-1])
    assert import_tfrecords(str(src), str(out), quiet=True).exit_code == 0
    assert sorted(ShardSet(str(out)).ids) == sorted(f"v{i}" for i in range(600))


def test_ids_in_more_than_one_input_are_reported(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    _file_of(src / "train0000.tfrecord", ["a", "b", "c"])
    _file_of(src / "train0001.tfrecord", ["c", "d"])
    report = import_tfrecords(str(src), str(tmp_path / "out"), quiet=True)
    assert report.exit_code == 3
    assert [(name.split(": ")[-1], "also in" in why) for name, why in report.rejected] == [("c", True)]
