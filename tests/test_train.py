"""Training on real shards: it learns, it resumes exactly, DDP matches one process, NaN stops."""
from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from conftest import ROOT, run_pipeline
from model.architectures.config import ModelConfig
from model.training.checkpoint import Checkpoint, load_for_inference
from model.training.evaluate import evaluate
from model.training.train import TrainConfig, train
from model_synthetic import write_prototype_task, write_random_frames
from pipeline import main as pipeline_main

torch.set_num_threads(1)
TINY = ["--model", "nextvlad", "--clusters", "8", "--groups", "4", "--hidden-size", "16",
        "--workers", "0", "--quiet"]


@pytest.fixture(scope="module")
def random_data(tmp_path_factory) -> str:
    d = str(tmp_path_factory.mktemp("random"))
    write_random_frames(d, 40, num_classes=10)
    return d


def losses(run_dir: str) -> list[float]:
    with open(os.path.join(run_dir, "metrics.csv")) as f:
        return [float(r["loss"]) for r in csv.DictReader(f) if r["split"] == "train"]


@pytest.mark.slow
def test_nextvlad_learns_what_frame_mean_cannot(tmp_path):
    """Labels depend on which patterns share a frame, not on the frames' mean."""
    write_prototype_task(str(tmp_path / "train"), 800, seed=0)
    write_prototype_task(str(tmp_path / "val"), 200, seed=1)
    results = {}
    for name, extra in [("nextvlad", dict(clusters=8, groups=4, hidden_size=64, dropout=0.0)),
                        ("mean-logistic", {})]:
        cpu = time.process_time()
        run = train(TrainConfig(data=str(tmp_path / "train"), out=str(tmp_path / "runs"), steps=100,
                                batch_size=32, lr=2e-3, workers=0, quiet=True, checkpoint_every=1000),
                    ModelConfig(name, **extra))
        cpu = time.process_time() - cpu
        results[name] = evaluate(load_for_inference(run), str(tmp_path / "val"))
        if name == "nextvlad":
            assert cpu < 60, f"NeXtVLAD took {cpu:.0f} s of CPU"
    print(results)
    assert results["nextvlad"]["gap"] >= 0.95
    assert results["mean-logistic"]["gap"] < results["nextvlad"]["gap"] - 0.3


def test_resumed_run_matches_uninterrupted(tmp_path, random_data):
    """Stop at step 3 (mid-epoch) and at step 5 (an epoch boundary), resume, compare to one run."""
    def config(out: str, steps: int, resume: str | None = None) -> TrainConfig:
        return TrainConfig(data=random_data, out=str(tmp_path / out), steps=steps, batch_size=8,
                           lr=1e-3, workers=0, quiet=True, checkpoint_every=1000, log_every=1,
                           resume=resume)
    model = ModelConfig("nextvlad", clusters=8, groups=4, hidden_size=16, dropout=0.3)
    whole = train(config("whole", 8), model)  # 40 videos / 8 = 5 batches per epoch
    part = train(config("part", 3), ModelConfig(**vars(model)))
    part = train(config("part", 5, resume=part), ModelConfig(**vars(model)))
    part = train(config("part", 8, resume=str(tmp_path / "part" / "latest")), ModelConfig(**vars(model)))
    assert os.path.realpath(tmp_path / "part" / "latest") == os.path.realpath(part)
    a, b = Checkpoint.load(whole), Checkpoint.load(part)
    assert a.training.step == b.training.step == 8
    for key in a.weights:
        torch.testing.assert_close(b.weights[key], a.weights[key], rtol=0, atol=1e-6, msg=key)
    for sa, sb in zip(a.training.optimizer["state"].values(), b.training.optimizer["state"].values()):
        torch.testing.assert_close(sb["exp_avg"], sa["exp_avg"], rtol=0, atol=1e-6)
    assert losses(part) == pytest.approx(losses(whole), rel=1e-6)


@pytest.mark.slow
def test_two_process_gloo_ddp_matches_one_process(tmp_path, random_data):
    args = ["--data", random_data, *TINY, "--dropout", "0", "--steps", "5", "--batch-size", "8",
            "--lr", "1e-3", "--log-every", "1"]
    single = run_pipeline("train", *args, "--out", str(tmp_path / "single"))
    assert single.returncode == 0, single.stderr
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    ddp = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone",
                          "--nproc-per-node", "2", os.path.join(ROOT, "pipeline.py"), "train", *args,
                          "--out", str(tmp_path / "ddp")],
                         capture_output=True, text=True, timeout=300, env=env, cwd=ROOT)
    assert ddp.returncode == 0, ddp.stderr[-3000:]
    one, two = losses(str(tmp_path / "single" / "latest")), losses(str(tmp_path / "ddp" / "latest"))
    assert len(one) == len(two) == 5
    assert two == pytest.approx(one, rel=1e-4)
    assert one[-1] != one[0]  # it trained
    a = Checkpoint.load(str(tmp_path / "single" / "latest")).weights
    b = Checkpoint.load(str(tmp_path / "ddp" / "latest")).weights
    for key in a:
        torch.testing.assert_close(b[key], a[key], rtol=1e-3, atol=1e-4, msg=key)


def test_nan_loss_stops_and_keeps_last_good_checkpoint(tmp_path, random_data, capsys):
    code = pipeline_main(["train", "--data", random_data, *TINY, "--steps", "30", "--batch-size", "8",
                          "--lr", "1e30", "--checkpoint-every", "1", "--out", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 2, err
    assert "loss became nan" in err
    runs = [d for d in os.listdir(tmp_path) if d != "latest"]
    step = Checkpoint.load(str(tmp_path / runs[0])).training.step
    assert 1 <= step < 30
    assert f"step {step})" in err


def test_train_then_evaluate_through_pipeline(tmp_path, random_data):
    out = tmp_path / "runs"
    result = run_pipeline("train", "--data", random_data, *TINY, "--steps", "4", "--batch-size", "8",
                          "--val", random_data, "--checkpoint-every", "2", "--out", str(out))
    assert result.returncode == 0, result.stderr
    run = out / "latest"
    assert os.path.islink(run) and os.path.realpath(run) == result.stdout.strip().splitlines()[-1]
    for name in ("config.json", "vocabulary.csv", "checkpoint.pt", "metrics.csv"):
        assert (run / name).exists(), name
    assert any(n.startswith("events.out.tfevents") for n in os.listdir(run))
    config = json.loads((run / "config.json").read_text())
    assert config["model"]["clusters"] == 8 and config["vocabulary"]["num_classes"] == 10
    with open(run / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    assert [r["step"] for r in rows if r["split"] == "val"] == ["2", "4"]
    result = run_pipeline("evaluate", "--model", str(run), "--data", random_data, "--json")
    assert result.returncode == 0, result.stderr
    scores = json.loads(result.stdout)
    assert set(scores) == {"gap", "map", "hit_at_1", "perr"}
    assert all(0 <= v <= 1 for v in scores.values())
    assert pipeline_main(["evaluate", "--model", str(run), "--data", random_data]) == 0


def test_train_without_shards_exits_2(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    for data in (tmp_path / "empty", tmp_path / "missing"):
        code = pipeline_main(["train", "--data", str(data), "--out", str(tmp_path / "runs"), "--quiet"])
        err = capsys.readouterr().err
        assert code == 2
        assert "extract" in err and "import-yt8m" in err


def test_video_level_model_on_frame_shards_exits_2(tmp_path, random_data, capsys):
    code = pipeline_main(["train", "--data", random_data, "--model", "moe", "--out", str(tmp_path)])
    assert code == 2 and "frame-level" in capsys.readouterr().err


@pytest.fixture(scope="module")
def published_pca_data(tmp_path_factory) -> str:
    """Random frames in shards that record the published PCA (as extracted or imported ones)."""
    from yt8m.representation import OFFICIAL
    out = str(tmp_path_factory.mktemp("published"))
    write_random_frames(out, 16, representation=OFFICIAL)
    return out


@pytest.mark.parametrize("name", ["nextvlad", "mix-nextvlad"])
def test_reverse_whitening_scales_rgb_by_sqrt_eigenvalues(tmp_path, published_pca_data, capsys,
                                                          name):
    eig = np.linspace(5.0, 0.01, 2048, dtype=np.float32).reshape(2048, 1)  # the published layout
    np.save(tmp_path / "eigenvals.npy", eig)
    args = ["train", "--data", published_pca_data, *TINY, "--model", name, "--branches", "2",
            "--steps", "1", "--batch-size", "8", "--reverse-whitening", "--out", str(tmp_path / "runs")]
    assert pipeline_main(args + ["--pca-dir", str(tmp_path)]) == 0
    model = load_for_inference(str(tmp_path / "runs" / "latest")).model
    scales = [m.rgb_scale for m in model.modules() if hasattr(m, "rgb_scale")]
    assert len(scales) == (2 if name == "mix-nextvlad" else 1)  # every branch, not one
    for scale in scales:
        torch.testing.assert_close(scale, torch.from_numpy(np.sqrt(eig[:1024, 0] + 1e-4)))
    assert pipeline_main(args + ["--pca-dir", str(tmp_path / "nowhere")]) == 2
    assert "eigenvals.npy" in capsys.readouterr().err


def test_reverse_whitening_refuses_eigenvalues_of_another_pca(tmp_path, random_data, capsys):
    """Shards made with other PCA parameters than --pca-dir's: refused, saying which."""
    np.save(tmp_path / "eigenvals.npy", np.ones((2048, 1), np.float32))
    code = pipeline_main(["train", "--data", random_data, *TINY, "--steps", "1", "--batch-size", "8",
                          "--reverse-whitening", "--pca-dir", str(tmp_path), "--out",
                          str(tmp_path / "runs")])
    assert code == 2 and "were made with" in capsys.readouterr().err


@pytest.mark.parametrize("name", ["nextvlad", "mix-nextvlad", "dbof"])
def test_bf16_autocast_training_and_validation(tmp_path, random_data, name):
    """The mixed-precision path GPUs take, exercised with CPU autocast."""
    run = train(TrainConfig(data=random_data, val=random_data, out=str(tmp_path), steps=2, batch_size=8,
                            workers=0, quiet=True, precision="bf16", checkpoint_every=2),
                ModelConfig(name, clusters=8 if name != "dbof" else 32, groups=4, hidden_size=16,
                            branches=2))
    assert all(np.isfinite(losses(run)))
    weights = Checkpoint.load(run).weights
    assert all(v.dtype != torch.bfloat16 for v in weights.values())  # weights stay fp32


def test_fp16_training_goes_through_the_gradient_scaler(tmp_path, random_data):
    """fp16 autocast with loss scaling (one GradScaler path for every precision)."""
    run = train(TrainConfig(data=random_data, out=str(tmp_path), steps=3, batch_size=8, workers=0,
                            quiet=True, precision="fp16", checkpoint_every=3, log_every=1),
                ModelConfig("nextvlad", clusters=8, groups=4, hidden_size=16))
    assert len(losses(run)) == 3 and all(np.isfinite(losses(run)))
    before = Checkpoint.load(run).weights
    assert all(v.dtype == torch.float32 for v in before.values() if v.is_floating_point())


# ------------------------------------------------------------------ data with nothing usable

def _damage_every_video(folder: str) -> int:
    """One byte flipped in every video's frames: every checksum fails. Returns the count."""
    from model_synthetic import flip_a_frame_byte
    from yt8m.store import ShardReader, shard_paths

    count = 0
    for path in shard_paths(folder):
        n = len(ShardReader(path))
        for i in range(n):
            flip_a_frame_byte(path, i)
        count += n
    return count


@pytest.fixture(scope="module")
def damaged_data(tmp_path_factory) -> tuple[str, int]:
    d = str(tmp_path_factory.mktemp("damaged"))
    write_random_frames(d, 24, num_classes=10)
    return d, _damage_every_video(d)


@pytest.mark.parametrize("workers", ["0", "1"])
def test_training_on_data_without_one_usable_video_ends_with_the_report(tmp_path, damaged_data,
                                                                        workers):
    data, count = damaged_data
    out = tmp_path / "runs"
    result = run_pipeline("train", "--data", data, *TINY, "--workers", workers, "--steps", "4",
                          "--batch-size", "8", "--out", str(out), timeout=180)
    assert result.returncode == 3, result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    assert "no usable video" in result.stderr and "no model was written" in result.stderr
    run = result.stdout.strip().splitlines()[-1]
    rejected = json.load(open(os.path.join(run, "report-train.json")))["rejected"]
    assert len(rejected) == count  # every video, each once
    assert not os.path.exists(os.path.join(run, "checkpoint.pt"))
    assert not os.path.lexists(out / "latest")  # nothing to point at
    assert losses(run) == []


def test_a_validation_set_without_one_usable_video_ends_the_run(tmp_path, random_data,
                                                                damaged_data):
    data, count = damaged_data
    result = run_pipeline("train", "--data", random_data, "--val", data, *TINY, "--steps", "4",
                          "--batch-size", "8", "--out", str(tmp_path), timeout=180)
    assert result.returncode == 3, result.stderr[-3000:]
    assert "Traceback" not in result.stderr and f"--val {data}: no usable video" in result.stderr
    run = result.stdout.strip().splitlines()[-1]
    assert len(json.load(open(os.path.join(run, "report-train.json")))["rejected"]) == count


@pytest.mark.parametrize("workers", [0, 2])
def test_an_epoch_without_a_usable_batch_ends_the_feed(damaged_data, workers):
    """The loop's own guard (behind the check at start): one epoch of empty batches, then
    NoUsableData naming every damaged video, with or without loader processes."""
    from model.training.sources import open_source
    from model.training.train import Distributed
    from model.training.train_data import open_feed
    from yt8m.errors import NoUsableData

    data, count = damaged_data
    tc = TrainConfig(data=data, batch_size=8, workers=workers)
    feed = open_feed(open_source(data), tc, Distributed(), torch.device("cpu"), step=0, per_epoch=3)
    with pytest.raises(NoUsableData) as e:
        next(feed)
    assert len(e.value.damaged) == len(feed.damaged) == count
    assert feed.epoch == 0  # it stopped after the first epoch, not later


def write_unlabelled(data: str, n: int = 16) -> None:
    """Shards as extract writes them without --labels: a vocabulary of no classes."""
    from model_synthetic import SYNTHETIC
    from yt8m.store import FRAME, ShardMeta, ShardWriter, VideoRecord
    from yt8m.vocabulary import Vocabulary

    vocabulary = Vocabulary([], name="unlabeled")
    os.makedirs(data)
    vocabulary.save(data)
    rng = np.random.default_rng(0)
    with ShardWriter(data, ShardMeta(FRAME, SYNTHETIC, vocabulary.ref)) as writer:
        for i in range(n):
            writer.add(VideoRecord(f"v{i}", np.zeros(0, np.int32),
                                   rng.integers(0, 256, (5, 1024), dtype=np.uint8),
                                   rng.integers(0, 256, (5, 128), dtype=np.uint8)))


def test_shards_without_labels_are_refused_before_training(tmp_path):
    """Shards extracted without --labels have a vocabulary of no classes: exit 2, nothing made."""
    data = str(tmp_path / "unlabelled")
    write_unlabelled(data)
    result = run_pipeline("train", "--data", data, *TINY, "--steps", "2", "--batch-size", "8",
                          "--out", str(tmp_path / "runs"), timeout=180)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert "no labels" in result.stderr and "--labels" in result.stderr
    assert not (tmp_path / "runs").exists() or not os.listdir(tmp_path / "runs")


# ------------------------------------------------------------------ killed runs, resumed runs

def test_a_killed_writers_partial_checkpoint_is_swept_at_the_next_start(tmp_path, random_data):
    out = tmp_path / "runs"
    first = run_pipeline("train", "--data", random_data, *TINY, "--steps", "1", "--batch-size",
                         "8", "--out", str(out), timeout=180)
    assert first.returncode == 0, first.stderr
    run = first.stdout.strip().splitlines()[-1]
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()  # a process id that no longer runs
    leftover = os.path.join(run, f".checkpoint.pt.{gone.pid}.partial")
    with open(leftover, "wb") as f:  # what kill -9 during a checkpoint write leaves
        f.write(os.urandom(4 << 20))
    live = os.path.join(run, f".checkpoint.pt.{os.getpid()}.partial")  # a writer still running
    with open(live, "wb") as f:
        f.write(b"in progress")
    second = run_pipeline("train", "--data", random_data, *TINY, "--steps", "1", "--batch-size",
                          "8", "--out", str(out), timeout=180)
    assert second.returncode == 0, second.stderr
    assert not os.path.exists(leftover)
    assert os.path.exists(live)


def _run_until_step(args: list[str], runs: str, step: int, timeout: float = 240) -> str:
    """Start `pipeline.py ARGS`, kill -9 it once metrics.csv of its run has a train row at
    `step` or later; returns that run folder. It must still have been running."""
    import glob

    err = open(os.path.join(runs + "-stderr.txt"), "w+")
    proc = subprocess.Popen([sys.executable, os.path.join(ROOT, "pipeline.py"), *args],
                            stdout=subprocess.DEVNULL, stderr=err, cwd=ROOT)
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            for path in glob.glob(os.path.join(runs, "*", "metrics.csv")):
                steps = [int(s) for s in _train_steps(path)]
                if steps and max(steps) >= step:
                    proc.kill()
                    assert proc.wait() == -9  # killed while still training
                    return os.path.dirname(path)
            time.sleep(0.05)
        err.seek(0)
        raise AssertionError(f"the run ended ({proc.poll()}) or stalled first: {err.read()[-2000:]}")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        err.close()


def _train_steps(metrics_csv: str) -> list[str]:
    with open(metrics_csv) as f:
        return [r["step"] for r in csv.DictReader(f) if r["split"] == "train"]


def test_resume_continues_with_the_runs_own_settings(tmp_path, random_data):
    """A run killed, resumed with --resume alone, killed again: the resumed part checkpoints
    at the run's own interval (so its finished steps are not trained a third time) and keeps
    every setting of the run."""
    runs = str(tmp_path / "runs")
    args = ["train", "--data", random_data, *TINY, "--batch-size", "8", "--lr", "1e-3",
            "--epochs", "10000", "--checkpoint-every", "2", "--log-every", "1", "--seed", "7",
            "--out", runs]
    run = _run_until_step(args, runs, 3)
    start = Checkpoint.load(run).training.step
    assert start >= 2 and start % 2 == 0
    _run_until_step(["train", "--resume", run, "--quiet"], runs, start + 5)
    after = Checkpoint.load(run).training
    assert after.step >= start + 4 and after.step % 2 == 0  # checkpoints every 2 steps, not 1000
    settings = json.loads(open(os.path.join(run, "config.json")).read())["train"]
    for name, value in [("checkpoint_every", 2), ("epochs", 10000), ("log_every", 1),
                        ("lr", 1e-3), ("seed", 7), ("batch_size", 8), ("workers", 0),
                        ("data", random_data), ("steps", None)]:
        assert settings[name] == value == after.train_config[name], name
    rows = [int(s) for s in _train_steps(os.path.join(run, "metrics.csv"))]
    resumed = len(rows) - 1 - rows[::-1].index(start + 1)  # the resumed part's first row
    assert rows[resumed:resumed + 4] == [start + 1, start + 2, start + 3, start + 4]


def test_resume_of_a_finished_run_keeps_its_length_and_model(tmp_path, random_data):
    out = tmp_path / "runs"
    first = run_pipeline("train", "--data", random_data, *TINY, "--epochs", "1", "--batch-size",
                         "8", "--out", str(out), timeout=180)
    assert first.returncode == 0, first.stderr
    run = first.stdout.strip().splitlines()[-1]
    again = run_pipeline("train", "--resume", run, "--quiet", timeout=180)
    assert again.returncode == 0, again.stderr
    assert Checkpoint.load(run).training.step == 5  # its one epoch, not the default five
    longer = run_pipeline("train", "--resume", run, "--epochs", "2", "--quiet", timeout=180)
    assert longer.returncode == 0, longer.stderr
    assert Checkpoint.load(run).training.step == 10  # asked for: two epochs
    other = run_pipeline("train", "--resume", run, "--clusters", "16", "--quiet", timeout=180)
    assert other.returncode == 2 and "--clusters" in other.stderr
    assert "Traceback" not in other.stderr
