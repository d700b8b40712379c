"""The data-source interface: the same videos as official TFRecords and as the shards
`import-yt8m` made of them read the same through `open_source` (ids, vocabulary,
representation, records in order, batches, damage in its place, the training feed)."""
from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
from itertools import islice

import pytest
import torch

from conftest import ROOT
from model.training.config import TrainConfig
from model.training.sources import RecordSource, ShardSource, SourceVideo, open_source
from model.training.train import Distributed
from model.training.train_data import check_usable, open_feed
from model_synthetic import flip_a_frame_byte, write_prototype_task
from yt8m.errors import DAMAGED, Problem
from yt8m.exporter import export_tfrecords
from yt8m.importer import import_tfrecords
from yt8m.store import FRAME, shard_paths
from yt8m.tfrecord import FOOTER_BYTES, HEADER_BYTES

VIDEOS, PER_FILE, BATCH = 40, 16, 8


@pytest.fixture(scope="module")
def both(tmp_path_factory) -> tuple[str, str]:
    """40 videos as TFRecord files of 16, and the shards imported from those files."""
    root = tmp_path_factory.mktemp("sources")
    write_prototype_task(str(root / "src"), VIDEOS, seed=3)
    export_tfrecords(str(root / "src"), str(root / "records"), videos_per_file=PER_FILE, quiet=True)
    assert import_tfrecords(str(root / "records"), str(root / "shards"), quiet=True).exit_code == 0
    return str(root / "records"), str(root / "shards")


def _fields(v) -> tuple:
    return (v.id, v.labels.tolist(), v.rgb.tobytes(), v.audio.tobytes(),
            v.segment_start_times.tolist(), v.segment_labels.tolist())


def test_the_kind_is_chosen_from_the_path_alone(both):
    records, shards = both
    assert isinstance(open_source(records), RecordSource)
    assert isinstance(open_source(os.path.join(records, "*.tfrecord")), RecordSource)
    assert isinstance(open_source(shards), ShardSource)


# Reads a source the way verify does, then builds its batches, in a fresh interpreter.
_READ_THEN_BATCH = """
import json, sys
from model.training.sources import open_source
source = open_source(sys.argv[1], strict=False)
seen = [sum(1 for _ in source.read()), len(source), source.storage.files,
        len(source.vocabulary), source.meta.kind, len(source.refused)]
read_alone = "torch" in sys.modules
next(iter(source.batches(8, 300)))
print(json.dumps([seen, read_alone, "torch" in sys.modules]))
"""


@pytest.mark.parametrize("kind", [0, 1])
def test_reading_a_source_does_not_load_torch(both, kind):
    """verify reads through the same interface as training, without paying for torch: it
    is loaded only when batches are built."""
    done = subprocess.run([sys.executable, "-c", _READ_THEN_BATCH, both[kind]], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    seen, read_alone, batched = json.loads(done.stdout)
    assert seen == [VIDEOS, VIDEOS, -(-VIDEOS // PER_FILE), seen[3], FRAME, 0] and seen[3] > 0
    assert not read_alone and batched


def test_records_and_their_imported_shards_read_the_same(both):
    with open_source(both[0]) as records, open_source(both[1]) as shards:
        assert len(records) == len(shards) == VIDEOS
        assert records.kind == shards.kind == FRAME
        assert records.representation == shards.representation
        assert records.meta.mismatch(shards.meta) == []
        assert records.vocabulary.fingerprint == shards.vocabulary.fingerprint
        assert records.refused == shards.refused == []
        assert records.meta.extra == {"source": "tfrecords"}  # where the data came from
        got = [list(s.read()) for s in (records, shards)]
        assert all(isinstance(g, SourceVideo) for g in got[0] + got[1])
        assert [_fields(g.video) for g in got[0]] == [_fields(g.video) for g in got[1]]
        assert len({g.video.id for g in got[0]}) == VIDEOS
        # Batches in order, as evaluation reads them: the same tensors.
        for a, b in zip(records.batches(BATCH, 300), shards.batches(BATCH, 300), strict=True):
            assert torch.equal(a.rgb, b.rgb) and torch.equal(a.mask, b.mask)
            assert torch.equal(a.labels, b.labels) and a.damaged == b.damaged == ()


def _flip_record(path: str, record: int) -> int:
    """A byte in the data of the record-th record flipped (its CRC fails); its offset."""
    raw = bytearray(open(path, "rb").read())
    pos = 0
    for _ in range(record):
        pos += HEADER_BYTES + struct.unpack("<Q", raw[pos:pos + 8])[0] + FOOTER_BYTES
    raw[pos + HEADER_BYTES + 3] ^= 0xFF
    open(path, "wb").write(bytes(raw))
    return pos


def test_damage_is_reported_in_its_place_by_both_kinds(both, tmp_path):
    """Video 5 of the first file damaged in each copy: both name it, in the same place, and
    read the other 39 the same; the batches name it too."""
    import shutil
    records, shards = (shutil.copytree(p, tmp_path / os.path.basename(p)) for p in both)
    record_file = sorted(p for p in os.listdir(records) if p.endswith(".tfrecord"))[0]
    offset = _flip_record(os.path.join(records, record_file), 5)
    shard_file = shard_paths(str(shards))[0]
    flip_a_frame_byte(shard_file, 5)
    reads = [list(open_source(str(p)).read()) for p in (records, shards)]
    for got in reads:
        assert len(got) == VIDEOS and isinstance(got[5], Problem)
        assert sum(isinstance(g, Problem) for g in got) == 1
    assert reads[0][5].where == f"{os.path.join(records, record_file)} (byte {offset})"
    assert "CRC" in reads[0][5].reason
    assert reads[1][5].where.startswith(f"{shard_file}: ") and "CRC32C" in reads[1][5].reason
    videos = [[_fields(g.video) for g in got if isinstance(g, SourceVideo)] for got in reads]
    assert videos[0] == videos[1] and len(videos[0]) == VIDEOS - 1
    for path, damaged in ((records, reads[0][5]), (shards, reads[1][5])):
        source = open_source(str(path))
        named = [d for b in source.batches(BATCH, 300) for d in b.damaged]
        assert named == [damaged] and damaged.kind == DAMAGED
        check_usable(source, "--data")  # a data set with usable videos passes


@pytest.mark.parametrize("kind", [0, 1])
def test_the_training_feed_covers_an_epoch_and_resumes_exactly(both, kind):
    """One epoch of the feed: every video once, whatever the kind; a feed started at step 3
    gives what an uninterrupted one gives from there."""
    source = open_source(both[kind])
    tc = TrainConfig(data=both[kind], batch_size=BATCH, workers=0, shuffle_buffer=8, seed=4)
    per_epoch = VIDEOS // BATCH

    def feed(step: int):
        return open_feed(source, tc, Distributed(), torch.device("cpu"), step, per_epoch)

    first = list(islice(feed(0), per_epoch + 2))
    epoch = sorted(row[0].tobytes() for b in first[:per_epoch] for row in b.rgb.numpy())
    every = sorted(g.video.rgb[0].tobytes() for g in source.read())
    assert epoch == every and len(set(every)) == VIDEOS  # each video once (its first frame)
    resumed = list(islice(feed(3), per_epoch + 2 - 3))
    for a, b in zip(first[3:], resumed, strict=True):
        assert torch.equal(a.rgb, b.rgb) and torch.equal(a.labels, b.labels)
