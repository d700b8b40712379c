"""`evaluate` and `load_for_inference`: refusals, segment mAP, video-level models, data plumbing."""
from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch

from model.architectures.config import ModelConfig
from model.training.checkpoint import load_for_inference
from model.training.data import EpochBatchSampler, collate
from model.training.evaluate import evaluate
from model.training.metrics import all_metrics
from model.training.sources.shards import ShardDataset
from model.training.train import TrainConfig, train
from model_synthetic import SYNTHETIC, write_random_frames, write_video_level
from pipeline import main as pipeline_main
from yt8m.errors import UsageError
from yt8m.store import ShardSet

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("evaluate")
    data = str(root / "data")
    write_random_frames(data, 24, num_classes=10, segments=True)
    run = train(TrainConfig(data=data, out=str(root / "runs"), steps=2, batch_size=8, workers=0,
                            quiet=True), ModelConfig("nextvlad", clusters=8, groups=4, hidden_size=16))
    return root, data, run


def test_evaluate_json_has_segment_map_on_segment_rated_shards(trained, capsys):
    _, data, run = trained
    assert pipeline_main(["evaluate", "--model", run, "--data", data, "--json", "--quiet"]) == 0
    scores = json.loads(capsys.readouterr().out)
    assert set(scores) == {"gap", "map", "hit_at_1", "perr", "segment_map"}
    assert all(0 <= v <= 1 for v in scores.values())


def test_evaluate_equals_metrics_on_predict(trained):
    """The streamed evaluation equals the metrics of LoadedModel.predict on every video."""
    _, data, run = trained
    loaded = load_for_inference(run)
    shards = ShardSet(data)
    batch = collate([ShardDataset(shards)[i] for i in range(len(shards))])
    probs = loaded.predict(batch.rgb, batch.audio, batch.mask).numpy()
    expected = all_metrics(probs, batch.labels.numpy())
    got = evaluate(loaded, data, batch_size=5)
    for key, value in expected.items():
        assert got[key] == pytest.approx(value, rel=1e-5), key


def test_model_refuses_shards_made_differently(trained, capsys):
    root, _, run = trained
    other_features = str(root / "official")
    write_random_frames(other_features, 4, num_classes=10, representation=SYNTHETIC.__class__())
    other_vocabulary = str(root / "vocab11")
    write_random_frames(other_vocabulary, 4, num_classes=11)
    for data, words in ((other_features, "rgb_backbone"), (other_vocabulary, "vocabulary")):
        assert pipeline_main(["evaluate", "--model", run, "--data", data]) == 2
        err = capsys.readouterr().err
        assert words in err and "trained on features made differently" in err


def test_missing_or_broken_checkpoint_is_usage_error(tmp_path, capsys):
    with pytest.raises(UsageError, match="python pipeline.py train"):
        load_for_inference(str(tmp_path / "nothing"))
    broken = tmp_path / "checkpoint.pt"
    broken.write_bytes(b"not a checkpoint")
    with pytest.raises(UsageError, match="not a readable checkpoint"):
        load_for_inference(str(tmp_path))
    assert pipeline_main(["evaluate", "--model", str(broken), "--data", str(tmp_path)]) == 2


def test_video_level_train_and_evaluate(tmp_path):
    data = str(tmp_path / "video")
    write_video_level(data, 32, num_classes=6)
    run = train(TrainConfig(data=data, out=str(tmp_path / "runs"), steps=3, batch_size=8, workers=0,
                            quiet=True), ModelConfig("moe"))
    loaded = load_for_inference(os.path.join(str(tmp_path / "runs"), "latest"))
    assert loaded.video_level and os.path.realpath(loaded.path).startswith(os.path.realpath(run))
    probs = loaded.predict(torch.zeros(2, 1024), torch.zeros(2, 128))
    assert probs.shape == (2, 6)
    assert set(evaluate(loaded, data)) == {"gap", "map", "hit_at_1", "perr"}


def test_predict_ignores_padding_and_respects_max_frames(trained):
    _, data, run = trained
    loaded = load_for_inference(run)
    video = ShardSet(data)[3]
    rgb, audio = torch.from_numpy(video.rgb)[None], torch.from_numpy(video.audio)[None]
    t = rgb.shape[1]
    alone = loaded.predict(rgb, audio, torch.ones(1, t))
    pad = torch.full((1, 4, 1024), 255, dtype=torch.uint8), torch.full((1, 4, 128), 7, dtype=torch.uint8)
    padded = loaded.predict(torch.cat([rgb, pad[0]], 1), torch.cat([audio, pad[1]], 1),
                            torch.cat([torch.ones(1, t), torch.zeros(1, 4)], 1))
    torch.testing.assert_close(padded, alone, rtol=0, atol=2e-6)


@pytest.mark.parametrize("world", [1, 2, 4])
def test_batches_are_the_same_videos_for_any_number_of_processes(world):
    one = list(EpochBatchSampler(50, 8, seed=3, epoch=1))
    parts = [list(EpochBatchSampler(50, 8, seed=3, epoch=1, rank=r, world_size=world))
             for r in range(world)]
    for b, batch in enumerate(one):
        assert sorted(sum((p[b] for p in parts), [])) == sorted(batch)
    assert len(one) == 6 and len({i for batch in one for i in batch}) == 48
    assert list(EpochBatchSampler(50, 8, seed=3, epoch=1, start=4)) == one[4:]
    assert list(EpochBatchSampler(50, 8, seed=3, epoch=2)) != one


def test_collate_keeps_uint8_and_pads(trained):
    _, data, _ = trained
    shards = ShardSet(data)
    items = [ShardDataset(shards, max_frames=7)[i] for i in range(4)]
    batch = collate(items)
    assert batch.rgb.dtype == torch.uint8 and batch.audio.dtype == torch.uint8
    lengths = [min(7, n) for n in shards.n_frames[:4]]
    assert batch.rgb.shape[1] == max(lengths)
    assert batch.mask.sum(1).tolist() == lengths
    assert np.array_equal(batch.labels[0].nonzero().ravel().numpy(), np.unique(shards.labels(0)))


def test_evaluate_on_data_without_one_usable_video_reports_it(trained, tmp_path):
    from conftest import run_pipeline
    from test_train import _damage_every_video

    _, _, run = trained
    data = str(tmp_path / "damaged")
    write_random_frames(data, 12, num_classes=10)
    count = _damage_every_video(data)
    result = run_pipeline("evaluate", "--model", run, "--data", data, "--json", "--quiet",
                          "--report-dir", str(tmp_path), timeout=180)
    assert result.returncode == 3, result.stderr
    assert "Traceback" not in result.stderr and "no usable video" in result.stderr
    assert result.stdout.strip() == ""  # no metrics of nothing
    assert len(json.load(open(tmp_path / "report-evaluate.json"))["rejected"]) == count


def test_evaluate_refuses_a_model_without_classes(tmp_path):
    """A model of no classes (trained on unlabelled shards before train refused them): exit 2."""
    from conftest import run_pipeline
    from model.architectures.config import build_model
    from model.training.checkpoint import Checkpoint
    from test_train import write_unlabelled
    from yt8m.store import FRAME
    from yt8m.vocabulary import Vocabulary

    data = str(tmp_path / "data")
    write_unlabelled(data, 4)  # the shards such a model was trained on
    config = ModelConfig("nextvlad", num_classes=0, clusters=8, groups=4, hidden_size=16)
    Checkpoint(build_model(config).state_dict(), config, SYNTHETIC,
               Vocabulary([], name="unlabeled"), FRAME).save(str(tmp_path / "checkpoint.pt"))
    result = run_pipeline("evaluate", "--model", str(tmp_path / "checkpoint.pt"), "--data", data,
                          "--quiet", timeout=180)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr and "has no classes" in result.stderr
