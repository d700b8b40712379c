"""Shards from elsewhere: HDF5 features that would make a reader leave its file, block,
or allocate gigabytes are refused by name before any data is read; a shard that
changes under a running reader is reported, never misread.

Every hostile shard is a real shard written by ShardWriter with one dataset
replaced by real h5py calls.
"""
from __future__ import annotations

import json
import os
import pickle
import shutil
import subprocess
import sys
import time
import zlib

import h5py
import numpy as np
import pytest

from conftest import ROOT, Measured
from conftest import run_measured as measure
from model_synthetic import write_random_frames
from yt8m.errors import DamagedVideo, ShardError, UnreadableVideo
from yt8m.store import ShardReader, ShardSet, shard_paths

HUGE_LABELS = 500_000_000  # int32: 2 GB declared, in a file of kilobytes
CHUNK_ELEMENTS = 1 << 28  # int32: one 1 GiB chunk, a few MB compressed


def _replace_labels(path: str, make) -> None:
    """Delete the shard's `labels` dataset and let `make(f, values)` put another in."""
    with h5py.File(path, "r+") as f:
        values = f["labels"][()]
        del f["labels"]
        make(f, values)


def _declare_labels(f: h5py.File, total: int) -> None:
    """labels_offsets made to agree with a `labels` of `total` entries."""
    offsets = f["labels_offsets"][()]
    offsets[-1] = total
    del f["labels_offsets"]
    f.create_dataset("labels_offsets", data=offsets)


def _external_file(f, values, tmp):
    target = os.path.join(tmp, "outside.bin")
    with open(target, "wb") as out:
        out.write(values.astype(np.int32).tobytes())
    f.create_dataset("labels", values.shape, np.int32, external=[(target, 0, h5py.h5f.UNLIMITED)])


def _external_fifo(f, values, tmp):
    fifo = os.path.join(tmp, "fifo")
    os.mkfifo(fifo)  # opening it for reading blocks until a writer comes: never
    f.create_dataset("labels", values.shape, np.int32, external=[(fifo, 0, h5py.h5f.UNLIMITED)])


def _virtual(source: str, values: np.ndarray, f: h5py.File) -> None:
    layout = h5py.VirtualLayout(values.shape, np.int32)
    layout[:] = h5py.VirtualSource(source, "labels", values.shape, dtype=np.int32)
    f.create_virtual_dataset("labels", layout)


def _virtual_over_hdf5(f, values, tmp):
    other = os.path.join(tmp, "other.hdf5")
    with h5py.File(other, "w") as o:
        o["labels"] = values
    _virtual(other, values, f)


def _virtual_over_text(f, values, tmp):
    other = os.path.join(tmp, "notes.txt")
    with open(other, "w") as o:
        o.write("not an HDF5 file\n" * 100)
    _virtual(other, values, f)


def _soft_link(f, values, tmp):
    f["labels_elsewhere"] = values
    f["labels"] = h5py.SoftLink("/labels_elsewhere")


def _external_link(f, values, tmp):
    other = os.path.join(tmp, "other.hdf5")
    with h5py.File(other, "w") as o:
        o["labels"] = values
    f["labels"] = h5py.ExternalLink(other, "/labels")


def _huge_declared(f, values, tmp):
    _declare_labels(f, HUGE_LABELS)
    f.create_dataset("labels", (HUGE_LABELS,), np.int32)  # nothing written: fill values


def _huge_gzip_chunk(f, values, tmp):
    _declare_labels(f, CHUNK_ELEMENTS)
    ds = f.create_dataset("labels", (CHUNK_ELEMENTS,), np.int32, chunks=(CHUNK_ELEMENTS,),
                          compression="gzip")
    packer, zeros = zlib.compressobj(1), bytes(64 << 20)
    packed = b"".join(packer.compress(zeros) for _ in range(CHUNK_ELEMENTS * 4 // len(zeros)))
    ds.id.write_direct_chunk((0,), packed + packer.flush())


HOSTILE = {  # name -> (how labels is replaced, words the report must name it by)
    "external-file": (_external_file, "stored in an external file"),
    "external-fifo": (_external_fifo, "stored in an external file"),
    "virtual-over-hdf5": (_virtual_over_hdf5, "a virtual dataset"),
    "virtual-over-text": (_virtual_over_text, "a virtual dataset"),
    "soft-link": (_soft_link, "is a soft link"),
    "external-link": (_external_link, "is an external link"),
    "huge-declared": (_huge_declared, "stores none of them in the file"),
    "huge-gzip-chunk": (_huge_gzip_chunk, "passes through filters (deflate)"),
}


@pytest.fixture(scope="module")
def clean(tmp_path_factory) -> str:
    """Two real shards (16 + 8 videos) written by the toolkit's writer."""
    out = str(tmp_path_factory.mktemp("clean") / "data")
    write_random_frames(out, 24, num_classes=6)
    assert len(shard_paths(out)) == 2
    return out


def hostile_folder(clean: str, tmp: str, cases: list[str]) -> tuple[str, dict[str, str]]:
    """A copy of the clean folder plus one hostile shard per case; case -> shard path."""
    data = os.path.join(tmp, "data")
    shutil.copytree(clean, data)
    made = {}
    for k, case in enumerate(cases):
        path = os.path.join(data, f"hostile-{k:05d}.h5")
        shutil.copy(shard_paths(clean)[1], path)
        _replace_labels(path, lambda f, v, make=HOSTILE[case][0]: make(f, v, tmp))
        made[case] = path
    return data, made


def run_measured(*args: str, timeout: float = 300) -> Measured:
    """`python pipeline.py ARGS`: exit status, output and the child's own peak memory."""
    return measure([os.path.join(ROOT, "pipeline.py"), *args], timeout)


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_verify_names_the_hostile_shard_quickly_in_bounded_memory(case, clean, tmp_path):
    data, made = hostile_folder(clean, str(tmp_path), [case])
    result = run_measured("verify", "--data", data, "--quiet", timeout=120)
    assert result.returncode == 3, result.stderr
    assert "Traceback" not in result.stderr
    # verify loads no torch (about 60 MB on clean shards): a declared 2 GB or a 1 GiB chunk
    # read would show far above this bound.
    assert result.peak_rss_mb < 500, f"verify peaked at {result.peak_rss_mb:.0f} MB"
    report = json.load(open(os.path.join(data, "report-verify.json")))
    assert [r["input"] for r in report["rejected"]] == [made[case]]
    assert HOSTILE[case][1] in report["rejected"][0]["reason"]
    assert report["done"] == 24  # the two clean shards, read in full


def test_every_reader_refuses_them_without_hanging_or_a_traceback(clean, tmp_path):
    """train refuses the folder (exit 2, naming a shard); predict skips and reports every
    hostile shard (exit 3) and predicts the rest; neither blocks on the FIFO."""
    data, made = hostile_folder(clean, str(tmp_path), sorted(HOSTILE))
    model_dir = str(tmp_path / "runs")
    tiny = ["--model", "nextvlad", "--clusters", "4", "--groups", "2", "--hidden-size", "8",
            "--steps", "2", "--batch-size", "8", "--workers", "0", "--quiet"]
    trained = run_measured("train", "--data", clean, "--out", model_dir, *tiny)
    assert trained.returncode == 0, trained.stderr
    run = trained.stdout.strip().splitlines()[-1]
    refused = run_measured("train", "--data", data, "--out", model_dir, *tiny)
    assert refused.returncode == 2 and "Traceback" not in refused.stderr, refused.stderr
    assert any(path in refused.stderr for path in made.values()), refused.stderr
    # Torch alone is a few hundred MB; a declared 2 GB or a 1 GiB chunk would show.
    assert refused.peak_rss_mb < trained.peak_rss_mb + 300, (refused, trained)
    out = tmp_path / "pred" / "out.csv"
    predicted = run_measured("predict", "--model", run, "--data", data, "--out", str(out),
                             "--quiet")
    assert predicted.returncode == 3 and "Traceback" not in predicted.stderr, predicted.stderr
    assert predicted.peak_rss_mb < trained.peak_rss_mb + 300, (predicted, trained)
    assert len(out.read_text().splitlines()) == 1 + 24
    report = json.load(open(tmp_path / "pred" / "report-predict.json"))
    reasons = {r["input"]: r["reason"] for r in report["rejected"]}
    for case, path in made.items():
        assert HOSTILE[case][1] in reasons[path], (case, reasons)
    for reader in ("evaluate", "export-tfrecord"):
        args = ["--model", run] if reader == "evaluate" else ["--out", str(tmp_path / "tfr")]
        done = run_measured(reader, "--data", data, *args, "--quiet")
        assert done.returncode in (2, 3) and "Traceback" not in done.stderr, done.stderr


def test_offsets_that_disagree_with_the_data_are_damage(clean, tmp_path):
    path = str(tmp_path / "shard-00000.h5")
    shutil.copy(shard_paths(clean)[0], path)
    with h5py.File(path, "r+") as f:
        offsets = f["frame_offsets"][()]
        offsets[3] = offsets[5]  # videos 3 and 4 would overlap
        f["frame_offsets"][...] = offsets
    with pytest.raises(ShardError, match="'frame_offsets' does not index"):
        ShardReader(path)


# ------------------------------------------------------------ files changing under a reader

@pytest.fixture
def opened(clean, tmp_path):
    data = str(tmp_path / "data")
    shutil.copytree(clean, data)
    shards = ShardSet(data)
    yield shards, shards.shards[0]
    shards.close()


def _in_a_worker(reader: ShardReader) -> ShardReader:
    """What a DataLoader worker holds: the reader, pickled, reopening the file itself."""
    return pickle.loads(pickle.dumps(reader))


def test_a_replaced_shard_is_named_not_taken_for_damage(opened, clean):
    shards, reader = opened
    first = reader[0]
    os.replace(shutil.copy(shard_paths(clean)[1], reader.path + ".new"), reader.path)
    np.testing.assert_array_equal(reader[0].rgb, first.rgb)  # the file opened, read on
    worker = _in_a_worker(reader)
    with pytest.raises(UnreadableVideo, match="replaced by another file since it was opened"):
        worker[0]
    assert list(worker.iter_videos()) == []
    assert len(worker.damaged) == len(reader)
    assert {d.why for d in worker.damaged} == {"replaced by another file since it was opened"}


def test_a_deleted_shard_is_named(opened):
    shards, reader = opened
    os.remove(reader.path)
    assert reader[1].n_frames == int(reader.n_frames[1])  # still open here
    worker = _in_a_worker(reader)
    with pytest.raises(UnreadableVideo, match="No such file"):
        worker[1]


def test_a_shard_truncated_while_open_is_named_and_what_precedes_the_cut_is_read(opened):
    shards, reader = opened
    start, row = reader._raw["audio"]
    cut = start + int(reader.frame_offsets[10]) * 128  # mid-way through the audio
    os.truncate(reader.path, cut)
    with pytest.raises(UnreadableVideo, match="truncated since it was opened"):
        reader[len(reader) - 1]
    read = [v.id for v in reader.iter_videos(block_frames=1)]
    assert read == reader.ids[:10]
    assert [d.video_id for d in reader.damaged] == reader.ids[10:]


def test_a_shard_rewritten_in_place_while_open_is_not_called_disk_damage(opened):
    shards, reader = opened
    start, row = reader._raw["rgb"]
    time.sleep(0.01)  # a later mtime
    with open(reader.path, "r+b") as f:
        f.seek(start + 5)
        f.write(b"\xff\x00\xff")
    with pytest.raises(DamagedVideo) as e:
        reader[0]
    assert isinstance(e.value, UnreadableVideo) and "rewritten" in e.value.why


def test_a_shard_deleted_while_training_is_reported(clean, tmp_path):
    """A DataLoader worker reopens the shards every epoch; one shard disappears after
    training started: its videos are reported (exit 3), the rest trained on."""
    data = str(tmp_path / "data")
    shutil.copytree(clean, data)
    runs = tmp_path / "runs"
    proc = subprocess.Popen(
        [sys.executable, os.path.join(ROOT, "pipeline.py"), "train", "--data", data, "--out",
         str(runs), "--model", "nextvlad", "--clusters", "4", "--groups", "2", "--hidden-size",
         "8", "--steps", "30", "--batch-size", "8", "--workers", "1", "--quiet"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 300
    while not list(runs.glob("*/config.json")) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    assert proc.poll() is None, "training ended before the shard could be deleted"
    gone = shard_paths(data)[1]
    os.remove(gone)
    stdout, stderr = proc.communicate(timeout=600)
    assert proc.returncode == 3 and "Traceback" not in stderr, stderr
    report = json.load(open(os.path.join(stdout.strip().splitlines()[-1], "report-train.json")))
    assert {r["input"].rsplit(": ", 1)[0] for r in report["rejected"]} == {gone}
    assert all("since it was opened" in r["reason"] for r in report["rejected"])


def test_the_memory_measure_is_the_childs_own():
    """A child holding 600 MB is measured as such, so the bounds above can fail; a small
    child of this (large) test process is measured as small."""
    big = measure(["-c", "import numpy as np; a = np.ones(600 << 20, np.uint8)"])
    assert big.returncode == 0 and big.peak_rss_mb > 550
    ballast = np.ones(800 << 20, np.uint8)  # this process's peak is now at least 800 MB
    small = measure(["-c", "pass"])
    assert small.returncode == 0 and small.peak_rss_mb < 100, small.peak_rss_mb
    del ballast
