"""download --dataset against a small YouTube-8M mirror served on 127.0.0.1 by the test."""
from __future__ import annotations

import hashlib
import json
import os

import numpy as np
import pytest

from test_tfrecord import frame_level, tf_frame
from yt8m.dataset_download import download_partition, official_file_name, parse_dataset_shard
from yt8m.errors import UsageError
from yt8m.importer import import_tfrecords
from yt8m.store import ShardSet

NAMES = ["trainaa", "trainab", "trainaZ", "trainba", "train09", "trainZZ"]  # mirror names


def tfrecord_file(i: int) -> bytes:
    rng = np.random.default_rng(i)
    return b"".join(tf_frame(frame_level(f"id{i}x{k}", [i, k],
                                         rng.integers(0, 256, (3, 1024), dtype=np.uint8),
                                         rng.integers(0, 256, (3, 128), dtype=np.uint8)))
                    for k in range(2))


def bodies() -> dict[str, bytes]:
    return {f"{n}.tfrecord": tfrecord_file(i) for i, n in enumerate(NAMES)}


def test_official_names_and_shard_parsing():
    assert official_file_name("trainaa.tfrecord") == "train0000.tfrecord"
    assert official_file_name("trainab.tfrecord") == "train0001.tfrecord"
    assert official_file_name("trainba.tfrecord") == "train0062.tfrecord"  # 62 letters a-zA-Z0-9
    assert official_file_name("validate99.tfrecord") == "validate3843.tfrecord"  # the last of 3844
    assert parse_dataset_shard("1,100") == (0, 100) and parse_dataset_shard("3/4") == (3, 4)
    for bad in ("0,4", "5,4", "4/4", "x"):
        with pytest.raises(UsageError):
            parse_dataset_shard(bad)


def test_full_fetch_verifies_and_imports(mirror, tmp_path):
    files = bodies()
    mirror.add_partition("2/frame/train", files)
    out = str(tmp_path / "dl")
    report = download_partition("2/frame/train", out, base_url=mirror.url, quiet=True)
    assert report.exit_code == 0 and report.done == len(NAMES)
    expect = {official_file_name(n): b for n, b in files.items()}
    assert sorted(expect) == ["train0000.tfrecord", "train0001.tfrecord", "train0051.tfrecord",
                              "train0062.tfrecord", "train3213.tfrecord", "train3285.tfrecord"]
    for name, body in expect.items():
        assert open(os.path.join(out, name), "rb").read() == body
    assert not [f for f in os.listdir(out) if f.endswith(".partial")]
    assert ("/2/download_plans/frame_train.json", None) in mirror.requests
    # A rerun fetches nothing (the plan is kept, the files are known good).
    n = len(mirror.requests)
    assert download_partition("2/frame/train", out, base_url=mirror.url, quiet=True).done == len(NAMES)
    assert len(mirror.requests) == n
    # The downloaded files are what import-yt8m reads.
    assert import_tfrecords(os.path.join(out, "*.tfrecord"), str(tmp_path / "shards")).exit_code == 0
    assert len(ShardSet(str(tmp_path / "shards"))) == 2 * len(NAMES)


def test_fraction_follows_the_official_md5_rule(mirror, tmp_path):
    mirror.add_partition("3/frame/validate", {f"validate{n[-2:]}.tfrecord": b"x" * (i + 1)
                                              for i, n in enumerate(NAMES)})
    seen: list[str] = []
    for x in range(1, 4):  # shard=X,Y as in download.py: md5(name) % Y == X - 1
        out = str(tmp_path / f"part{x}")
        report = download_partition("3/frame/validate", out, shard=parse_dataset_shard(f"{x},3"),
                                    base_url=mirror.url, quiet=True)
        got = sorted(f for f in os.listdir(out) if f.endswith(".tfrecord"))
        want = sorted(official_file_name(f"validate{n[-2:]}.tfrecord") for n in NAMES
                      if int(hashlib.md5(f"validate{n[-2:]}.tfrecord".encode()).hexdigest(), 16) % 3 == x - 1)
        assert got == want and report.done == len(want)
        seen += got
    assert sorted(seen) == sorted(official_file_name(f"validate{n[-2:]}.tfrecord") for n in NAMES)


@pytest.mark.parametrize("ranges", [True, False])
def test_resume_after_interruption(mirror, tmp_path, ranges):
    files = bodies()
    mirror.add_partition("2/frame/train", files)
    mirror.ranges = ranges
    name = "trainab.tfrecord"
    mirror.cut_after[f"/2/frame/train/{name}"] = 1000  # the connection drops mid-file
    out = str(tmp_path / "dl")
    report = download_partition("2/frame/train", out, base_url=mirror.url, quiet=True)
    assert report.exit_code == 3 and len(report.rejected) == 1
    url, reason = report.rejected[0]
    assert url.endswith(name) and "rerun continues it" in reason
    final = os.path.join(out, "train0001.tfrecord")
    partial = os.path.join(out, ".train0001.tfrecord.partial")
    assert not os.path.exists(final) and os.path.getsize(partial) == 1000  # never accepted
    report = download_partition("2/frame/train", out, base_url=mirror.url, quiet=True)
    assert report.exit_code == 0 and report.done == len(NAMES)
    assert open(final, "rb").read() == files[name] and not os.path.exists(partial)
    assert mirror.requests[-1] == (f"/2/frame/train/{name}", "bytes=1000-")


def test_checksum_mismatch_and_404_are_rejected(mirror, tmp_path):
    files = bodies()
    mirror.add_partition("2/video/train", files, md5s={"trainba.tfrecord": "0" * 32})
    del mirror.files["/2/video/train/train09.tfrecord"]
    out = str(tmp_path / "dl")
    report = download_partition("2/video/train", out, mirror="eu", base_url=mirror.url, quiet=True)
    assert report.exit_code == 3 and report.done == len(NAMES) - 2
    reasons = dict(report.rejected)
    assert "MD5 mismatch" in reasons[f"{mirror.url}/2/video/train/trainba.tfrecord"]
    assert "HTTP 404" in reasons[f"{mirror.url}/2/video/train/train09.tfrecord"]
    assert not os.path.exists(os.path.join(out, "train0062.tfrecord"))
    assert not [f for f in os.listdir(out) if ".train0062" in f]
    path = report.write(out)
    assert len(json.load(open(path))["rejected"]) == 2


def test_unknown_partition_is_a_usage_error(mirror, tmp_path):
    with pytest.raises(UsageError, match="cannot get the file list"):
        download_partition("2/frame/test", str(tmp_path), base_url=mirror.url)
    with pytest.raises(UsageError, match="VERSION/KIND/SPLIT"):
        download_partition("frame/train", str(tmp_path), base_url=mirror.url)


def official_vocabulary_csv(classes: int = 3862) -> bytes:
    rows = ["Index,TrainVideoCount,KnowledgeGraphId,Name,WikiUrl,"
            "Vertical1,Vertical2,Vertical3,WikiDescription"]
    rows += [f"{i},{1000 - i % 7},/m/0{i:05d},Name {i},,Games,,,\"a, description\"" for i in range(classes)]
    return ("\n".join(rows) + "\n").encode()


def test_vocabulary_download_and_use_by_import(mirror, tmp_path, monkeypatch):
    import dataclasses

    from yt8m import vocabulary
    from yt8m.vocabulary import YT8M_NAME, Vocabulary, download_official

    mirror.files["/csv/2/vocabulary.csv"] = official_vocabulary_csv()
    monkeypatch.setattr(vocabulary, "YT8M_VOCABULARY", dataclasses.replace(
        vocabulary.YT8M_VOCABULARY, url=f"{mirror.url}/csv/2/vocabulary.csv"))
    cache = tmp_path / "cache"
    path = download_official(str(cache), quiet=True)
    vocab = Vocabulary.load(path)
    assert vocab.name == YT8M_NAME and len(vocab) == 3862 and vocab.name_of(17) == "Name 17"
    assert Vocabulary.official([str(cache)]).names == vocab.names
    assert Vocabulary.official([str(tmp_path / "nowhere")]).names == [""] * 3862
    # import-yt8m picks the downloaded names up (same reference as without them).
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    os.rename(cache, tmp_path / "yt8m-toolkit")
    (tmp_path / "a.tfrecord").write_bytes(tfrecord_file(3))
    out = str(tmp_path / "shards")
    assert import_tfrecords(str(tmp_path / "a.tfrecord"), out).exit_code == 0
    shards = ShardSet(out)
    assert shards.meta.vocabulary.fingerprint == Vocabulary.official_unnamed().fingerprint
    assert shards.vocabulary.name_of(3) == "Name 3"
    # A file that is not the official vocabulary is refused.
    mirror.files["/csv/2/vocabulary.csv"] = official_vocabulary_csv(10)
    with pytest.raises(UsageError, match="3862"):
        download_official(str(tmp_path / "other"), quiet=True)
