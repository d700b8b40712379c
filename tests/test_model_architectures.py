"""Architectures: parameter counts against the papers' formulas, padding invariance."""
from __future__ import annotations

import copy

import pytest
import torch

from model.architectures.config import FRAME_MODELS, ModelConfig, build_model

torch.set_num_threads(1)


def count(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def nextvlad_paper(n: int, k: int, g: int, h: int, lam: int) -> float:
    """Lin et al. 2018, section 3: lambda*N*(N + G + K*(G + (H + 1)/G)) for one stream
    (expansion, group attention, assignment, centres and its share of the FC to H;
    no biases, no batch norm)."""
    return lam * n * (n + g + k * (g + (h + 1) / g))


def netvlad_paper(n: int, k: int, h: int) -> int:
    """Same paper, NetVLAD: N*K*(H + 2) for one stream (assignment, centres, FC to H)."""
    return n * k * (h + 2)


def test_nextvlad_default_parameter_count_matches_the_paper():
    n_v, n_a, k, g, h, lam, r, c = 1024, 128, 128, 8, 2048, 2, 8, 3862
    paper_streams = nextvlad_paper(n_v, k, g, h, lam) + nextvlad_paper(n_a, k // 2, g // 2, h, lam)
    assert paper_streams == 79_844_352  # the authors' "79M parameters" (slides, ECCV 2018 workshop)
    # What the formula leaves out, each written from the architecture:
    biases = (lam * n_v + g) + (lam * n_a + g // 2)  # expansion and attention FCs
    stream_bn = 2 * (g * k + k * lam * n_v // g) \
        + 2 * ((g // 2) * (k // 2) + (k // 2) * lam * n_a // (g // 2))
    head = 2 * h + (2 * h * (h // r) + 2 * (h // r)) + (h * c + c)  # hidden BN, SE gating, logistic
    model = build_model(ModelConfig("nextvlad", num_classes=c))
    total = count(model)
    assert total == paper_streams + biases + stream_bn + head
    assert total == 88_889_378
    assert abs(total - 89e6) / 89e6 < 0.01  # the paper's "about 89M"


def test_netvlad_parameter_count_matches_the_paper():
    n_v, n_a, k, h, c, m = 1024, 128, 64, 1024, 3862, 2
    paper_streams = netvlad_paper(n_v, k, h) + netvlad_paper(n_a, k // 2, h)
    extra = 2 * k + 2 * (k // 2) + 2 * h + (h * h + 2 * h) + (h * c * (m + 1) + h * c * m + c * m)
    model = build_model(ModelConfig("netvlad", num_classes=c, clusters=k, hidden_size=h, mixtures=m))
    assert count(model) == paper_streams + extra
    # The paper's example: N=1024, K=256, H=2048 -> about 537M for the video stream.
    assert abs(netvlad_paper(1024, 256, 2048) - 537e6) / 537e6 < 0.001


def small(name: str) -> torch.nn.Module:
    config = ModelConfig(name, num_classes=12, clusters=16 if name != "dbof" else 64, groups=4,
                         hidden_size=32, dropout=0.0, branches=2)
    torch.manual_seed(0)
    return build_model(config)


def frames(b: int, t: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(b, t, 1024, generator=g), torch.randn(b, t, 128, generator=g)


def padded(rgb, audio, mask, extra: int):
    """Append `extra` padding frames holding garbage (mask 0)."""
    b = rgb.shape[0]
    junk_rgb, junk_audio = frames(b, extra, seed=99)
    return (torch.cat([rgb, junk_rgb * 50], 1), torch.cat([audio, junk_audio * 50], 1),
            torch.cat([mask, torch.zeros(b, extra)], 1))


@pytest.mark.parametrize("name", FRAME_MODELS)
def test_padding_never_changes_outputs_in_eval_mode(name):
    model = small(name).eval()
    rgb, audio = frames(3, 9)
    mask = torch.ones(3, 9)
    mask[1, 5:] = 0  # videos of 9, 5 and 1 frames
    mask[2, 1:] = 0
    with torch.no_grad():
        before, _ = model(rgb, audio, mask)
        after, _ = model(*padded(rgb, audio, mask, 7))
    assert torch.isfinite(before).all()
    torch.testing.assert_close(after, before, rtol=0, atol=2e-6)


@pytest.mark.parametrize("name", FRAME_MODELS)
def test_padding_never_changes_training_step(name):
    """Training mode too: batch-norm statistics come from real frames only."""
    model = small(name).train()
    twin = copy.deepcopy(model)
    rgb, audio = frames(4, 6, seed=1)
    mask = torch.ones(4, 6)
    mask[0, 2:] = 0
    labels = (torch.rand(4, 12, generator=torch.Generator().manual_seed(2)) < 0.3).float()
    out_a, loss_a = model(rgb, audio, mask, labels)
    out_b, loss_b = twin(*padded(rgb, audio, mask, 5), labels)
    torch.testing.assert_close(out_b, out_a, rtol=0, atol=2e-6)
    torch.testing.assert_close(loss_b, loss_a, rtol=1e-6, atol=1e-5)
    for (key, a), (_, b) in zip(model.state_dict().items(), twin.state_dict().items()):
        torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-6, msg=key)  # running statistics


@pytest.mark.parametrize("name", FRAME_MODELS)
def test_one_frame_video(name):
    model = small(name)
    rgb, audio = frames(1, 1)
    model.eval()
    with torch.no_grad():
        probs, _ = model(rgb, audio, torch.ones(1, 1))
    assert probs.shape == (1, 12) and torch.isfinite(probs).all()
    assert ((probs >= 0) & (probs <= 1)).all()
    model.train()  # and a training step on a batch of one-frame videos
    rgb, audio = frames(2, 1)
    _, loss = model(rgb, audio, torch.ones(2, 1), torch.ones(2, 12))
    loss.backward()
    assert torch.isfinite(loss)


@pytest.mark.parametrize("name", ["logistic", "moe"])
def test_video_level_models(name):
    model = build_model(ModelConfig(name, num_classes=7)).eval()
    probs, loss = model(torch.randn(5, 1024), torch.randn(5, 128), None, torch.zeros(5, 7))  # one signature
    assert probs.shape == (5, 7) and loss.item() > 0


def test_mix_nextvlad_distillation_term():
    """The mixture loss is the branches' and mixture's cross entropies plus a KL >= 0 term."""
    model = small("mix-nextvlad").train()
    rgb, audio = frames(3, 4)
    labels = torch.zeros(3, 12)
    labels[:, 0] = 1
    torch.manual_seed(0)
    _, with_kl = model(rgb, audio, torch.ones(3, 4), labels)
    model.distill_weight = 0.0
    torch.manual_seed(0)
    _, without = model(rgb, audio, torch.ones(3, 4), labels)
    assert with_kl.item() > without.item()
