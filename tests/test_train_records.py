"""Train, evaluate and predict straight from official TFRecords (made in the test with the
project's own exporter, no TensorFlow): the same results as from imported shards, damaged
records reported, exact resume, and every video once per epoch across ranks and workers."""
from __future__ import annotations

import json
import os

import pytest
import torch

from conftest import run_pipeline
from model.architectures.config import ModelConfig
from model.training.checkpoint import Checkpoint, load_for_inference
from model.training.config import TrainConfig
from model.training.evaluate import evaluate
from model.training.sources import open_source
from model.training.sources.streaming import StreamingRecords
from model.training.train import train
from model_synthetic import write_prototype_task
from yt8m.exporter import export_tfrecords
from yt8m.importer import import_tfrecords
from yt8m.store import ShardSet

torch.set_num_threads(1)
MODEL = dict(clusters=8, groups=4, hidden_size=64, dropout=0.0)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """The prototype task as TFRecord files (16 videos each) and the same files imported."""
    root = tmp_path_factory.mktemp("records")
    write_prototype_task(str(root / "src"), 480, seed=0)
    export_tfrecords(str(root / "src"), str(root / "tfrecords"), videos_per_file=16, quiet=True)
    write_prototype_task(str(root / "src_val"), 96, seed=1)
    export_tfrecords(str(root / "src_val"), str(root / "val_tfrecords"), split="validate",
                     videos_per_file=32, quiet=True)
    for name in ("tfrecords", "val_tfrecords"):
        import_tfrecords(str(root / name), str(root / f"{name}_imported"), quiet=True)
    return root


def _train(data_path: str, out: str, steps: int, workers: int = 0, resume: str | None = None):
    return train(TrainConfig(data=data_path, out=out, steps=steps, batch_size=16, lr=2e-3,
                             workers=workers, quiet=True, checkpoint_every=1000, log_every=1,
                             shuffle_buffer=64, resume=resume),
                 ModelConfig("nextvlad", **MODEL))


def test_records_train_like_imported_shards_and_evaluate_identically(data, tmp_path):
    from_records = _train(str(data / "tfrecords"), str(tmp_path / "a"), 120)
    from_shards = _train(str(data / "tfrecords_imported"), str(tmp_path / "b"), 120)
    val_shards, val_records = str(data / "val_tfrecords_imported"), str(data / "val_tfrecords")
    a = evaluate(load_for_inference(from_records), val_shards)
    b = evaluate(load_for_inference(from_shards), val_shards)
    assert a["gap"] > 0.6 and b["gap"] > 0.6, (a, b)  # both learned the task
    assert abs(a["gap"] - b["gap"]) < 0.1, (a, b)  # equally well, within noise
    # The same model on the records and on the imported shards: the same numbers, exactly.
    assert evaluate(load_for_inference(from_records), val_records) == a
    for source, csv in ((val_records, tmp_path / "r.csv"), (val_shards, tmp_path / "s.csv")):
        result = run_pipeline("predict", "--model", from_records, "--data", source, "--out",
                              str(csv), "--quiet")
        assert result.returncode == 0, result.stderr
    assert (tmp_path / "r.csv").read_text() == (tmp_path / "s.csv").read_text()
    assert Checkpoint.load(from_records).vocabulary.name == "youtube-8m-2018"


def test_damaged_records_are_skipped_and_reported(data, tmp_path):
    damaged = tmp_path / "damaged"
    damaged.mkdir()
    files = sorted(os.listdir(data / "tfrecords"))
    for name in files[:4]:
        (damaged / name).write_bytes((data / "tfrecords" / name).read_bytes())
    first = bytearray((damaged / files[0]).read_bytes())
    first[200] ^= 0xFF  # inside the first record's data: its CRC no longer matches
    (damaged / files[0]).write_bytes(bytes(first))
    cut = (damaged / files[1]).read_bytes()
    (damaged / files[1]).write_bytes(cut[:len(cut) - 5000])  # the last record cut short
    result = run_pipeline("train", "--data", str(damaged), "--model", "nextvlad", "--clusters", "4",
                          "--groups", "2", "--hidden-size", "8", "--steps", "6", "--batch-size", "8",
                          "--workers", "0", "--out", str(tmp_path / "runs"), "--quiet")
    assert result.returncode == 3, result.stderr
    run = result.stdout.strip().splitlines()[-1]
    rejected = json.load(open(os.path.join(run, "report-train.json")))["rejected"]
    places = " ".join(r["input"] for r in rejected)
    assert f"{damaged / files[0]} (byte 0)" in places
    assert str(damaged / files[1]) in places and any("truncated" in r["reason"] for r in rejected)


@pytest.mark.parametrize("workers", [0, 2])
def test_resumed_training_on_records_equals_an_uninterrupted_run(data, tmp_path, workers):
    whole = _train(str(data / "tfrecords"), str(tmp_path / "whole"), 9, workers)
    part = _train(str(data / "tfrecords"), str(tmp_path / "part"), 4, workers)
    part = _train(str(data / "tfrecords"), str(tmp_path / "part"), 9, workers, resume=part)
    a, b = Checkpoint.load(whole), Checkpoint.load(part)
    assert a.training.step == b.training.step == 9
    for key in a.weights:
        torch.testing.assert_close(b.weights[key], a.weights[key], rtol=0, atol=1e-6, msg=key)


def test_every_video_once_per_epoch_across_ranks_and_workers(data):
    source = open_source(str(data / "tfrecords"))
    assert len(source) == 480
    seen = []
    for rank in range(2):
        stream = StreamingRecords(source, 300, seed=5, rank=rank, world_size=2, buffer=32)
        for worker in range(2):
            seen += [item.labels.tobytes() + item.rgb.tobytes()
                     for item in map(stream._item, stream._records(0, worker, 2))]
    everything = [v for v in ShardSet(str(data / "tfrecords_imported"))]
    assert len(seen) == len(set(seen)) == len(everything)
    # The next epoch visits the files in another order.
    stream = StreamingRecords(source, 300, seed=5)
    assert stream._files(0, 0, 1) != stream._files(1, 0, 1)


@pytest.mark.slow
def test_two_process_gloo_training_on_records(data, tmp_path):
    """torchrun with 2 processes streaming their halves of the files: the run completes, with
    one checkpoint, and its loss log has a line per step."""
    import subprocess
    import sys

    from conftest import ROOT

    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    result = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
         os.path.join(ROOT, "pipeline.py"), "train", "--data", str(data / "tfrecords"),
         "--model", "nextvlad", "--clusters", "4", "--groups", "2", "--hidden-size", "8",
         "--steps", "4", "--batch-size", "8", "--workers", "1", "--log-every", "1",
         "--out", str(tmp_path / "ddp"), "--quiet"],
        capture_output=True, text=True, timeout=300, env=env, cwd=ROOT)
    assert result.returncode == 0, result.stderr[-3000:]
    run = tmp_path / "ddp" / "latest"
    assert Checkpoint.load(str(run)).training.step == 4
    lines = (run / "metrics.csv").read_text().splitlines()
    assert len([line for line in lines if ",train," in line]) == 4


# ------------------------------------------------------------------ records with nothing usable

def _small_records(root, files: int = 3, per_file: int = 8) -> str:
    from model_synthetic import write_random_frames
    write_random_frames(str(root / "src"), files * per_file, num_classes=10)
    export_tfrecords(str(root / "src"), str(root / "rec"), videos_per_file=per_file, quiet=True)
    return str(root / "rec")


def _break_every_record(folder: str) -> None:
    """A byte of every record's data flipped: every data CRC fails."""
    import struct

    from yt8m.tfrecord import FOOTER_BYTES, HEADER_BYTES
    for name in (n for n in os.listdir(folder) if n.endswith(".tfrecord")):
        raw = bytearray(open(os.path.join(folder, name), "rb").read())
        pos = 0
        while pos < len(raw):
            length = struct.unpack("<Q", raw[pos:pos + 8])[0]
            raw[pos + HEADER_BYTES + length // 2] ^= 0xFF
            pos += HEADER_BYTES + length + FOOTER_BYTES
        open(os.path.join(folder, name), "wb").write(bytes(raw))


def _invalid_records(folder: str, files: int = 3, per_file: int = 8) -> None:
    """Sound framing and CRCs, but every record names a label outside the vocabulary."""
    import numpy as np

    from yt8m import official
    from yt8m.store import VideoRecord
    from yt8m.tfrecord import write_tfrecord
    rng = np.random.default_rng(0)
    os.makedirs(folder)
    for f in range(files):
        write_tfrecord(os.path.join(folder, f"train{f:04d}.tfrecord"), [
            official.encode_frame_record(VideoRecord(
                f"v{f}-{i}", np.asarray([99999], np.int64),
                rng.integers(0, 256, (6, 1024), dtype=np.uint8),
                rng.integers(0, 256, (6, 128), dtype=np.uint8))) for i in range(per_file)])


@pytest.mark.parametrize("workers", ["0", "1"])
@pytest.mark.parametrize("damage", ["crc", "labels"])
def test_records_without_one_usable_video_end_with_the_report(tmp_path, damage, workers):
    if damage == "crc":
        folder = _small_records(tmp_path)
        _break_every_record(folder)
    else:
        folder = str(tmp_path / "invalid")
        _invalid_records(folder)
    result = run_pipeline("train", "--data", folder, "--model", "nextvlad", "--clusters", "4",
                          "--groups", "2", "--hidden-size", "8", "--steps", "4", "--batch-size", "8",
                          "--workers", workers, "--out", str(tmp_path / "runs"), "--quiet",
                          timeout=180)
    assert result.returncode == 3, result.stderr[-3000:]
    assert "Traceback" not in result.stderr and "no usable video" in result.stderr
    run = result.stdout.strip().splitlines()[-1]
    rejected = json.load(open(os.path.join(run, "report-train.json")))["rejected"]
    assert len(rejected) == 24 and all(".tfrecord (byte " in r["input"] for r in rejected)
    assert not os.path.exists(os.path.join(run, "checkpoint.pt"))


@pytest.mark.parametrize("workers", [0, 2])
def test_a_stream_without_usable_records_ends(tmp_path, workers):
    """The loop's own guard on the endless TFRecord stream (behind the check at start)."""
    from model.training.train import Distributed
    from model.training.train_data import open_feed
    from yt8m.errors import NoUsableData

    folder = str(tmp_path / "invalid")
    _invalid_records(folder)
    tc = TrainConfig(data=folder, batch_size=8, workers=workers, shuffle_buffer=4)
    feed = open_feed(open_source(folder), tc, Distributed(), torch.device("cpu"), step=0, per_epoch=3)
    with pytest.raises(NoUsableData):
        next(feed)
    assert len(feed.damaged) == 24  # every record, each named once
    assert feed.unusable <= feed.limit + 8


def test_more_loader_processes_than_files_train_and_resume_exactly(tmp_path):
    """Loader processes without a file end at once (they used to loop over nothing), and a
    run resumed at a step that is not a multiple of the loader processes with files (3 of 2)
    goes on with the uninterrupted run's batches, in its order."""
    folder = _small_records(tmp_path, files=2, per_file=16)

    def run(out: str, steps: int, resume: str | None = None) -> str:
        return train(TrainConfig(data=folder, out=str(tmp_path / out), steps=steps, batch_size=8,
                                 lr=2e-3, workers=3, quiet=True, checkpoint_every=1000,
                                 shuffle_buffer=8, resume=resume),
                     ModelConfig("nextvlad", clusters=4, groups=2, hidden_size=8))
    whole = run("whole", 7)
    part = run("part", 3)
    part = run("part", 7, resume=part)
    a, b = Checkpoint.load(whole), Checkpoint.load(part)
    assert a.training.step == b.training.step == 7
    for key in a.weights:
        torch.testing.assert_close(b.weights[key], a.weights[key], rtol=0, atol=1e-6, msg=key)
