"""`python pipeline.py extract / fit-pca` end to end, in real subprocesses on real clips.

The backbones are randomly initialised (--random-weights: no published weights
offline); PCA parameters come from a real `fit-pca` run on two of the clips.
"""
from __future__ import annotations

import glob
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from conftest import ROOT, run_pipeline
from media import BAD, GOOD
from synthetic.pca import write_random_pca
from yt8m.store import ShardSet, done_ids, shard_paths
from yt8m.vocabulary import Vocabulary

MAX_FRAMES = 6


def _ok(proc: subprocess.CompletedProcess, code: int = 0) -> None:
    assert proc.returncode == code, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]


@pytest.fixture(scope="session")
def fitted_pca(media_dir, good_clips) -> str:
    videos = os.path.join(media_dir, "fit")
    os.makedirs(videos, exist_ok=True)
    for name in ("avi", "mkv"):
        os.symlink(good_clips[name], os.path.join(videos, os.path.basename(good_clips[name])))
    out = os.path.join(media_dir, "pca")
    proc = run_pipeline("fit-pca", "--videos", videos, "--out", out, "--random-weights",
                        "--max-frames", "4")
    _ok(proc)
    assert "RANDOM WEIGHTS" in proc.stderr
    for name in ("mean.npy", "eigenvals.npy", "eigenvecs.npy", "vggish_pca_params.npz",
                 "FITTED.json"):
        assert os.path.isfile(os.path.join(out, name)), name
    fitted = json.load(open(os.path.join(out, "FITTED.json")))
    assert fitted["rgb_frames"] == 3 + 4 and fitted["audio_vectors"] == 3 + 4
    assert np.load(os.path.join(out, "eigenvecs.npy")).shape == (2048, 2048)
    return out


@pytest.fixture(scope="session")
def small_videos(media_dir, good_clips) -> str:
    """Five short clips (different containers and codecs) in one folder."""
    d = os.path.join(media_dir, "small")
    os.makedirs(d, exist_ok=True)
    for name in ("ntsc_29_97", "vfr", "avi", "vp9", "rotated"):
        link = os.path.join(d, name + os.path.splitext(good_clips[name])[1])
        if not os.path.lexists(link):
            os.symlink(good_clips[name], link)
    return d


def _contents(out: str) -> dict[str, tuple]:
    s = ShardSet(out)
    return {r.id: (r.rgb, r.audio, r.labels.tolist(), r.has_audio) for r in s}


@pytest.mark.slow
def test_extract_good_and_bad_videos(media_dir, good_clips, bad_clips, fitted_pca, tmp_path):
    videos = os.path.join(media_dir, "videos")
    labels = tmp_path / "labels.csv"
    labels.write_text("video,labels\n"
                      "good/h264_720p_6ch.mp4,Rabbit;Forest\n"
                      "good/no_audio.mp4,Bike\n"
                      f"{good_clips['mkv']},Forest\n")
    out = str(tmp_path / "features")
    proc = run_pipeline("extract", "--videos", videos, "--out", out, "--random-weights",
                        "--pca-dir", fitted_pca, "--max-frames", str(MAX_FRAMES),
                        "--labels", str(labels))
    _ok(proc, 3)  # some inputs rejected, the rest extracted
    assert "random" in proc.stderr.lower()

    # Every bad input is listed with its specific reason.
    report = json.load(open(os.path.join(out, "report-extract.json")))
    reasons = {r["input"]: r["reason"] for r in report["rejected"]}
    assert set(reasons) == {f"bad/{name}" for name in BAD}
    for name, words in BAD.items():
        assert words in reasons[f"bad/{name}"], (name, reasons[f"bad/{name}"])
    assert report["done"] == len(GOOD)

    # Every good video is there, with the right number of frames, audio and flags.
    shards = ShardSet(out)
    rel = {name: os.path.relpath(p, videos) for name, p in good_clips.items()}
    assert sorted(shards.ids) == sorted(rel.values())
    records = {r.id: r for r in shards}
    for name, clip in GOOD.items():
        r = records[rel[name]]
        assert r.n_frames == min(clip.frames, MAX_FRAMES), name
        assert r.rgb.dtype == np.uint8 and r.rgb.shape[1] == 1024
        assert r.audio.dtype == np.uint8 and r.audio.shape == (r.n_frames, 128)
        assert r.has_audio == clip.has_audio, name
        if not clip.has_audio:
            assert (r.audio == 127).all()  # the quantized zero
        # The fitted PCA has only 6 real components (7 frames); the rest are 0 -> 127.
        assert len(np.unique(r.rgb[:, :6])) > 2
    # Different pictures give different features; an identical picture, identical ones.
    assert not np.array_equal(records[rel["avi"]].rgb[0], records[rel["no_audio"]].rgb[0])

    # Provenance: random weights, fitted PCA, source raw video, settings.
    rep = shards.meta.representation
    assert rep.random_weights and "random-init" in rep.rgb_backbone
    assert rep.rgb_backbone.startswith("inception-2015-12-05") and rep.audio_backbone.startswith("vggish")
    assert rep.source == "raw-video" and rep.rgb_pca.startswith("fitted:")
    assert shards.meta.extra["max_frames"] == MAX_FRAMES and shards.meta.extra["random_weights"]

    # Labels: names found define the vocabulary, stored next to the shards.
    vocab = shards.vocabulary
    assert vocab.names == ["Bike", "Forest", "Rabbit"]
    assert records[rel["h264_720p_6ch"]].labels.tolist() == [1, 2]
    assert records[rel["no_audio"]].labels.tolist() == [0]
    assert records[rel["mkv"]].labels.tolist() == [1]
    assert records[rel["avi"]].labels.tolist() == []

    # A rerun resumes: nothing left to do but the rejected inputs, shards unchanged.
    before = {p: os.path.getmtime(p) for p in shard_paths(out)}
    proc = run_pipeline("extract", "--videos", videos, "--out", out, "--random-weights",
                        "--pca-dir", fitted_pca, "--max-frames", str(MAX_FRAMES),
                        "--labels", str(labels), "--quiet")
    _ok(proc, 3)
    assert f"{len(GOOD)} already in" in proc.stderr
    assert {p: os.path.getmtime(p) for p in shard_paths(out)} == before


def test_unknown_labels_exit_2_listing_every_bad_row(media_dir, good_clips, tmp_path):
    videos = os.path.join(media_dir, "videos")
    vocab = tmp_path / "vocabulary.csv"
    vocab.write_text(Vocabulary(["Bike", "Forest"]).to_csv())
    labels = tmp_path / "labels.csv"
    labels.write_text("video,labels\n"
                      "good/no_audio.mp4,Bike\n"  # fine
                      "good/h264_720p_6ch.mp4,Rabbit;Forest\n"  # line 3: unknown name
                      "good/missing.mp4,Bike\n"  # line 4: no such video
                      "good/clip.avi,7\n"  # line 5: id out of range
                      "good/vfr.mp4,Bike,extra\n"  # line 6: three columns
                      "good/ntsc_29_97.mp4,1\n")  # fine: an id
    out = tmp_path / "out"
    proc = run_pipeline("extract", "--videos", videos, "--out", str(out), "--random-weights",
                        "--labels", str(labels), "--vocabulary", str(vocab))
    _ok(proc, 2)
    for line, words in [(3, "Rabbit"), (4, "no such video"), (5, "'7'"), (6, "2 columns")]:
        assert f"line {line}:" in proc.stderr and words in proc.stderr, (line, proc.stderr)
    assert "line 2:" not in proc.stderr and "line 7:" not in proc.stderr
    assert "4 bad row(s)" in proc.stderr
    assert not out.exists() or not glob.glob(str(out / "*.h5"))  # nothing was done


def test_missing_weights_or_pca_exit_2_naming_the_files(media_dir, good_clips, tmp_path):
    videos = os.path.join(media_dir, "videos", "good")
    pca = write_random_pca(str(tmp_path / "pca"))
    proc = run_pipeline("extract", "--videos", videos, "--out", str(tmp_path / "out"),
                        "--pca-dir", pca, "--weights-dir", str(tmp_path / "empty"))
    _ok(proc, 2)
    assert "pt_inception-2015-12-05-6726825d.pth" in proc.stderr
    assert "vggish-10086976.pth" in proc.stderr
    assert str(tmp_path / "empty") in proc.stderr
    proc = run_pipeline("extract", "--videos", videos, "--out", str(tmp_path / "out"),
                        "--pca-dir", str(tmp_path / "nopca"), "--random-weights")
    _ok(proc, 2)
    for name in ("mean.npy", "eigenvals.npy", "eigenvecs.npy", "vggish_pca_params.npz"):
        assert name in proc.stderr
    assert not glob.glob(str(tmp_path / "out" / "*.h5"))


@pytest.mark.slow
def test_killed_run_resumes_to_the_same_shards(small_videos, fitted_pca, tmp_path):
    common = ["--videos", small_videos, "--random-weights", "--pca-dir", fitted_pca,
              "--max-frames", "3", "--videos-per-shard", "1", "--quiet"]
    reference = str(tmp_path / "reference")
    _ok(run_pipeline("extract", *common, "--out", reference))

    out = str(tmp_path / "killed")
    proc = subprocess.Popen([sys.executable, os.path.join(ROOT, "pipeline.py"), "extract",
                             *common, "--out", out], cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while not (os.path.isdir(out) and shard_paths(out)):  # the first complete shard
        assert proc.poll() is None, "finished before it could be killed"
        assert time.time() < deadline
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert 1 <= len(done_ids(out)) < 5  # killed mid-way
    _ok(run_pipeline("extract", *common, "--out", out))

    ref, got = _contents(reference), _contents(out)
    assert sorted(got) == sorted(ref) and len(ref) == 5
    for vid in ref:
        rgb, audio, labels, has_audio = got[vid]
        assert labels == ref[vid][2] and has_audio == ref[vid][3]
        np.testing.assert_array_equal(rgb, ref[vid][0], err_msg=vid)
        np.testing.assert_array_equal(audio, ref[vid][1], err_msg=vid)


@pytest.mark.slow
def test_shards_split_the_job_disjointly(small_videos, fitted_pca, tmp_path):
    out = str(tmp_path / "features")
    common = ["--videos", small_videos, "--random-weights", "--pca-dir", fitted_pca,
              "--max-frames", "1", "--out", out, "--quiet"]
    _ok(run_pipeline("extract", *common, "--shard", "0/2"))
    first = done_ids(out)
    _ok(run_pipeline("extract", *common, env={"RANK": "1", "WORLD_SIZE": "2"}))
    second = done_ids(out) - first
    assert first and second and not first & second
    assert first | second == set(os.listdir(small_videos))
    names = sorted(os.path.basename(p) for p in shard_paths(out))
    assert all("-p0of2-" in n or "-p1of2-" in n for n in names), names
    assert len(ShardSet(out)) == 5


# ---------------------------------------------------------------- in-process pieces

def test_list_videos_is_recursive_sorted_and_keeps_non_files(media_dir, good_clips, bad_clips):
    from extract.job import list_videos

    ids = list_videos(os.path.join(media_dir, "videos"))
    assert ids == sorted(ids)
    assert "good/sub/deeper/stereo.mkv" in ids and "good/sub/vp9.webm" in ids
    assert "bad/dangling.mp4" in ids and "bad/fifo.mp4" in ids  # reported, not skipped


def test_labels_csv_rules(tmp_path):
    from extract.labels import read_labels
    from yt8m.errors import UsageError

    videos = tmp_path / "v"
    known = {"a.mp4", "sub/b.mkv", "c.avi"}
    csv = tmp_path / "labels.csv"
    csv.write_text(f"video,labels\na.mp4,Dog; Cat\n{videos}/sub/b.mkv,Cat\n\n")
    labels = read_labels(str(csv), str(videos), known_ids=known)
    assert labels.vocabulary.names == ["Cat", "Dog"]
    assert labels.of("a.mp4").tolist() == [0, 1] and labels.of("sub/b.mkv").tolist() == [0]
    assert labels.of("c.avi").tolist() == []

    csv.write_text("video,labels\na.mp4,3\na.mp4,Cat\n../x.mp4,Cat\nc.avi,\n")
    with pytest.raises(UsageError) as e:
        read_labels(str(csv), str(videos), known_ids=known)
    text = str(e.value)
    assert "line 2:" in text and "without --vocabulary" in text  # an id needs a vocabulary
    assert "line 3:" in text and "listed twice" in text
    assert "line 4:" in text and "not inside --videos" in text
    assert "line 5:" in text and "no labels" in text

    csv.write_text("path,tags\na.mp4,Cat\n")
    with pytest.raises(UsageError, match="header"):
        read_labels(str(csv), str(videos), known_ids=known)

    vocab = Vocabulary(["Cat", "Dog", "Eel"])
    csv.write_text("video,labels\na.mp4,2;Cat\n")
    assert read_labels(str(csv), str(videos), vocab, known).of("a.mp4").tolist() == [0, 2]


def test_audio_is_padded_or_cut_to_the_video_length():
    from extract.features import audio_examples

    one_second = np.sin(np.arange(16000) / 16000 * 2 * np.pi * 440).astype(np.float32)
    padded = audio_examples(one_second, 3)  # 1 s of sound for a 3-frame video
    assert padded.shape == (3, 96, 64)
    assert float(padded[2].max()) == pytest.approx(np.log(0.01))  # silence
    assert float(padded[0].max()) > np.log(0.01) + 1
    cut = audio_examples(np.tile(one_second, 5), 2)  # 5 s of sound for 2 frames
    assert cut.shape == (2, 96, 64)
    np.testing.assert_allclose(cut[0].numpy(), padded[0].numpy(), atol=1e-5)


def test_extractor_api_keeps_order_and_threads_change_nothing(good_clips, bad_clips, tmp_path):
    """The in-process API classify/serve use: one Extractor, several calls."""
    from extract.extractor import ExtractConfig, Extractor
    from yt8m.errors import RejectedInput

    pca = write_random_pca(str(tmp_path / "pca"))
    paths = [good_clips["ntsc_29_97"], bad_clips["empty.mp4"], good_clips["avi"]]
    threaded = Extractor(ExtractConfig(device="cpu", random_weights=True, pca_dir=pca,
                                       max_frames=2, workers=2, batch_size=3))
    inline = Extractor(ExtractConfig(device="cpu", random_weights=True, pca_dir=pca,
                                     max_frames=2, workers=0), backbones=threaded.backbones)
    a = list(threaded.extract_paths(paths, ["a", "b", "c"]))
    b = list(inline.extract_paths(paths, ["a", "b", "c"]))
    assert [p for p, _ in a] == paths == [p for p, _ in b]
    assert isinstance(a[1][1], RejectedInput) and "empty file" in a[1][1].reason
    for (_, x), (_, y) in [(a[0], b[0]), (a[2], b[2])]:
        assert x.id == y.id and x.n_frames == 2 and x.has_audio == y.has_audio
        np.testing.assert_array_equal(x.rgb, y.rgb)
        np.testing.assert_array_equal(x.audio, y.audio)
    again = list(threaded.extract_paths(paths[2:], ["c"]))  # reusable
    np.testing.assert_array_equal(again[0][1].rgb, a[2][1].rgb)
    assert threaded.representation.random_weights


def test_engine_gives_the_bytes_of_the_sequential_reference(good_clips, tmp_path):
    """The overlapped, batched engine against `features_of` (one video, step after step),
    bit for bit, on real clips of every kind: rotated, VFR, no audio, short audio, AVI."""
    from extract.extractor import ExtractConfig, Extractor
    from extract.features import features_of

    pca = write_random_pca(str(tmp_path / "pca"))
    names = ["rotated", "vfr", "no_audio", "short_audio", "avi", "h264_720p_6ch"]
    engine = Extractor(ExtractConfig(device="cpu", random_weights=True, pca_dir=pca,
                                     max_frames=7, workers=2, batch_size=5))
    got = dict(engine.extract_paths([good_clips[n] for n in names], names))
    for name in names:
        ours = got[good_clips[name]]
        ref = features_of(good_clips[name], engine.backbones, max_frames=7, name=name)
        assert ours.id == ref.id == name and ours.has_audio == ref.has_audio
        np.testing.assert_array_equal(ours.rgb, ref.rgb, err_msg=name)
        np.testing.assert_array_equal(ours.audio, ref.audio, err_msg=name)
