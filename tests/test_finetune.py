"""`train --init-from MODEL [--freeze body]`: fine-tuning a trained model on new labels.

The "pretraining" task and the "user" task share their videos' structure
(tests/model_synthetic.py, `write_prototype_task`): the user's classes are new names,
each meaning "has both of two pretraining classes", with a few dozen examples.
"""
from __future__ import annotations

import csv
import json
import os

import numpy as np
import pytest
import torch

from conftest import run_pipeline
from model.architectures.config import ModelConfig
from model.training.checkpoint import Checkpoint, load_for_inference
from model.training.evaluate import evaluate, predict_shards
from model.training.finetune import is_classifier, shared_classes
from model.training.sources import open_source
from model.training.train import TrainConfig, prepare_run, save_checkpoint, train
from model_synthetic import write_prototype_task, write_random_frames
from yt8m.assets import sha256_of
from yt8m.representation import OFFICIAL
from yt8m.vocabulary import Vocabulary

torch.set_num_threads(1)
ENV = {"OMP_NUM_THREADS": "1"}
PATTERNS = 8  # the pretraining task's classes: class00 .. class07
ARCH = ["--model", "nextvlad", "--clusters", "8", "--groups", "4", "--hidden-size", "32",
        "--dropout", "0"]
USER = {"ab": [0, 1], "cd": [2, 3], "ef": [4, 5], "gh": [6, 7], "bc": [1, 2], "fg": [5, 6]}
FAST = ["--workers", "0", "--device", "cpu", "--quiet"]


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory) -> str:
    """A tiny NeXtVLAD trained on the pretraining task (600 videos)."""
    d = tmp_path_factory.mktemp("pretraining")
    write_prototype_task(str(d / "data"), 600, num_classes=PATTERNS, seed=0)
    run = train(TrainConfig(data=str(d / "data"), out=str(d / "runs"), steps=150, batch_size=32,
                            lr=2e-3, workers=0, quiet=True),
                ModelConfig("nextvlad", clusters=8, groups=4, hidden_size=32, dropout=0.0))
    assert evaluate(load_for_inference(run), str(d / "data"))["gap"] > 0.95  # it learned the task
    return run


@pytest.fixture(scope="module")
def user_task(tmp_path_factory) -> tuple[str, str]:
    """The user's task: 32 labelled videos to train on, 300 held out."""
    d = tmp_path_factory.mktemp("user")
    write_prototype_task(str(d / "train"), 32, num_classes=PATTERNS, seed=5, relabel=USER)
    write_prototype_task(str(d / "heldout"), 300, num_classes=PATTERNS, seed=6, relabel=USER)
    return str(d / "train"), str(d / "heldout")


def train_cli(*args: str) -> str:
    result = run_pipeline("train", *args, *FAST, env=ENV)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip().splitlines()[-1]


def body(weights: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v for k, v in weights.items() if not is_classifier(k)}


@pytest.mark.slow
def test_fine_tuning_beats_training_from_scratch_on_few_examples(pretrained, user_task, tmp_path):
    train_dir, heldout = user_task
    same = ["--data", train_dir, "--steps", "40", "--batch-size", "16", "--lr", "2e-3", "--seed", "1"]
    scratch = train_cli(*same, *ARCH, "--out", str(tmp_path / "scratch"))
    tuned = train_cli(*same, "--init-from", pretrained, "--out", str(tmp_path / "tuned"))
    gap = {name: evaluate(load_for_inference(run), heldout)["gap"]
           for name, run in (("scratch", scratch), ("tuned", tuned))}
    print(gap)
    assert gap["tuned"] > 0.85
    assert gap["tuned"] > gap["scratch"] + 0.15  # measured: 0.94 vs 0.61 (seeds 0-3: +0.25 .. +0.33)
    # The fine-tuned model carries the user's vocabulary and says where it started.
    assert list(load_for_inference(tuned).vocabulary.names) == sorted(USER)
    config = json.loads(open(os.path.join(tuned, "config.json")).read())
    origin = config["origin"]
    assert origin["init_from"] == os.path.basename(pretrained)
    assert origin["init_from_sha256"] == sha256_of(os.path.join(pretrained, "checkpoint.pt"))
    assert origin["freeze"] == "none" and origin["classes_from_init"] == "0"
    assert Checkpoint.load(tuned).origin == origin
    assert config["train"]["init_from"] == pretrained


def test_freeze_body_keeps_the_body_bit_identical_and_resumes_exactly(pretrained, user_task,
                                                                       tmp_path):
    train_dir, _ = user_task
    initial = Checkpoint.load(pretrained).weights

    def config(out: str, steps: int, resume: str | None = None) -> TrainConfig:
        return TrainConfig(data=train_dir, out=str(tmp_path / out), steps=steps, batch_size=8,
                           lr=1e-2, workers=0, quiet=True, log_every=1, resume=resume,
                           **({} if resume else dict(init_from=pretrained, freeze="body")))
    whole = train(config("whole", 6), ModelConfig())
    part = train(config("part", 3), ModelConfig())
    part = train(config("part", 6, resume=part), ModelConfig())
    a, b = Checkpoint.load(whole), Checkpoint.load(part)
    assert a.training.step == b.training.step == 6
    for got in (a, b):
        for key, value in body(initial).items():  # parameters and batch-norm statistics
            assert torch.equal(got.weights[key], value), key
    # The classifier did train: it moved from where the run started, and the loss fell.
    start = prepare_run(config("start", 6), ModelConfig()).model.state_dict()
    for key in ("classifier.fc.weight", "classifier.fc.bias"):
        assert not torch.allclose(a.weights[key], start[key], atol=1e-3), key
    for key in a.weights:
        torch.testing.assert_close(b.weights[key], a.weights[key], rtol=0, atol=1e-6, msg=key)
    assert b.origin == a.origin and a.origin["freeze"] == "body"
    with open(os.path.join(whole, "metrics.csv")) as f:
        losses = [float(r["loss"]) for r in csv.DictReader(f) if r["split"] == "train"]
    assert losses[-1] < losses[0]


def test_zero_steps_on_a_subset_reproduces_the_old_scores(pretrained, tmp_path):
    """Classes the new vocabulary shares by name start from their old rows: before any
    step, their scores are the old model's; a new class gets a fresh row."""
    data = str(tmp_path / "subset")
    write_prototype_task(data, 40, num_classes=PATTERNS, seed=9,
                         relabel={"class02": [2], "CLASS05": [5], "new one": [0, 1]})
    run = prepare_run(TrainConfig(data=data, out=str(tmp_path / "runs"), init_from=pretrained,
                                  workers=0, quiet=True, batch_size=8), ModelConfig())
    save_checkpoint(run)
    new, old = load_for_inference(run.run_dir), load_for_inference(pretrained)
    assert list(new.vocabulary.names) == ["CLASS05", "class02", "new one"]
    shards = open_source(data)
    p_new, _ = predict_shards(new.model, shards, new.device, 16, new.max_frames)
    p_old, _ = predict_shards(old.model, shards, old.device, 16, old.max_frames)
    # The weights are the old ones bit for bit; the scores then differ by at most float32
    # rounding (a matrix product over 3 classes may sum in another order than over 8).
    for key, value in old.model.state_dict().items():
        rows = value[[5, 2]] if is_classifier(key) else value
        assert torch.equal(new.model.state_dict()[key][:2] if is_classifier(key) else
                           new.model.state_dict()[key], rows), key
    np.testing.assert_allclose(p_new[:, [0, 1]], p_old[:, [5, 2]], rtol=0, atol=1e-6)
    assert not np.allclose(p_new[:, 2], p_old[:, 0], atol=1e-3)
    assert run.origin["classes_from_init"] == "2"


def test_classes_are_matched_by_name_or_knowledge_graph_id():
    columns = [{"KnowledgeGraphId": kg} for kg in ("/m/01", "/m/02", "/m/03", "")]
    old = Vocabulary(["Bicycle", "Game", "Car", "Telephone"], name="old", rows=columns)
    new = Vocabulary(["/m/02", "bicycle", "Telephone", "Cart", "Automobile"], name="new",
                     rows=[{}, {}, {}, {}, {"KnowledgeGraphId": "/m/03"}])
    assert shared_classes(new, old) == {0: (1, "KnowledgeGraph id"), 1: (0, "name"),
                                        2: (3, "name"), 4: (2, "KnowledgeGraph id")}
    assert shared_classes(old, old) == {i: (i, "same vocabulary") for i in range(4)}


def test_mismatched_initial_models_are_refused_naming_each_difference(pretrained, user_task,
                                                                      tmp_path):
    train_dir, _ = user_task
    out = tmp_path / "runs"
    result = run_pipeline("train", "--data", train_dir, "--init-from", pretrained, "--clusters",
                          "4", "--groups", "2", "--out", str(out), *FAST, env=ENV)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert "--clusters 4 vs the initial model's 8" in result.stderr
    assert "--groups 2 vs the initial model's 4" in result.stderr
    assert not out.exists() or not [p for p in out.iterdir() if p.name != "latest"]

    # Features made another way than the initial model's training data: each field named.
    official = str(tmp_path / "official")
    write_random_frames(official, 20, num_classes=4, representation=OFFICIAL)
    result = run_pipeline("train", "--data", official, "--init-from", pretrained, "--hidden-size",
                          "64", "--out", str(out), *FAST, env=ENV)
    assert result.returncode == 2, result.stderr
    for difference in ("--hidden-size 64 vs the initial model's 32",
                       "rgb_backbone: 'inception-2015-12-05' vs 'synthetic'",
                       "rgb_pca: 'yt8m_pca' vs 'none'"):
        assert difference in result.stderr, difference
    assert "Traceback" not in result.stderr

    for args, words in ((["--freeze", "body"], "needs --init-from"),
                        (["--init-from", str(tmp_path)], "there is no model there"),
                        (["--init-from", pretrained, "--resume", pretrained], "one or the other")):
        result = run_pipeline("train", "--data", train_dir, *args, *FAST, env=ENV)
        assert result.returncode == 2 and words in result.stderr, result.stderr


def test_published_model_as_start_with_the_fine_tune_defaults(tmp_path):
    """`--init-from published`: the converted published model (a stand-in with its real
    layout) in the cache; classes shared by name keep their rows; the settings not given
    take the fine-tune defaults."""
    from model.apps.paddle_nextvlad import convert_file
    from synthetic.paddle import random_params, write_pdparams
    from test_paddle_convert import SMALL

    cache = tmp_path / "cache"
    source = write_pdparams(random_params(SMALL), str(tmp_path / "NEXTVLAD.pdparams"))
    names = [f"class{i:02d}" for i in range(SMALL.num_classes)]
    convert_file(source, str(cache / "yt8m-toolkit" / "models" / "nextvlad-youtube8m-paddle"),
                 Vocabulary(names, name="published-stand-in"))
    data = str(tmp_path / "data")
    write_random_frames(data, 40, num_classes=4, representation=OFFICIAL)  # class00 .. class03
    result = run_pipeline("train", "--data", data, "--init-from", "published", "--freeze", "body",
                          "--out", str(tmp_path / "runs"), *FAST, cwd=str(tmp_path),
                          env=dict(ENV, XDG_CACHE_HOME=str(cache)))
    assert result.returncode == 0, result.stderr
    assert "4 of them from the initial model's rows" in result.stderr
    run = result.stdout.strip().splitlines()[-1]
    config = json.loads(open(os.path.join(run, "config.json")).read())
    assert {k: config["train"][k] for k in ("batch_size", "epochs", "lr")} == \
        {"batch_size": 32, "epochs": 30, "lr": 1e-3}
    assert config["model"]["audio_clusters"] == config["model"]["clusters"] == SMALL.clusters
    origin = config["origin"]
    assert origin["init_from"] == "nextvlad-youtube8m-paddle"
    assert origin["init_origin_converted_from"] == "paddle"
    assert origin["init_origin_sha256"] == sha256_of(source)
    assert Checkpoint.load(run).training.step == 30  # 40 videos: one batch of 32 per epoch


def test_warmup_raises_the_learning_rate_linearly_and_a_fine_tune_warms_up_by_default(
        pretrained, user_task, tmp_path):
    train_data, _ = user_task
    scratch = prepare_run(TrainConfig(data=train_data, out=str(tmp_path / "a"), lr=1e-3,
                                      warmup_steps=4, workers=0, quiet=True, batch_size=8),
                          ModelConfig("nextvlad", clusters=8, groups=4, hidden_size=32))
    rates = []
    for _ in range(6):
        rates.append(scratch.scheduler.get_last_lr()[0])
        scratch.optimizer.step()
        scratch.scheduler.step()
    assert rates == pytest.approx([2.5e-4, 5e-4, 7.5e-4, 1e-3, 1e-3, 1e-3])
    tuned = prepare_run(TrainConfig(data=train_data, out=str(tmp_path / "b"), init_from=pretrained,
                                    workers=0, quiet=True), ModelConfig())
    assert tuned.tc.warmup_steps == 30 and tuned.scheduler.get_last_lr()[0] == pytest.approx(2e-4 / 30)
    frozen = prepare_run(TrainConfig(data=train_data, out=str(tmp_path / "c"), init_from=pretrained,
                                     freeze="body", workers=0, quiet=True), ModelConfig())
    assert frozen.tc.warmup_steps == 0 and frozen.scheduler.get_last_lr()[0] == pytest.approx(1e-3)
