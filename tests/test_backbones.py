"""Both backbones load state dicts with exactly the published key names and shapes.

The tables below are written down from the published ports, not taken from our
modules: pytorch-fid's `pt_inception-2015-12-05-6726825d.pth` (torchvision
Inception3 names, FID blocks, 1008-way fc, no AuxLogits) and torchvggish's
`vggish-10086976.pth` (`features.N` convolutions, `embeddings.0/2/4` linears).
"""
import numpy as np
import pytest
import torch

from extract.inception import InceptionPool3, build_inception
from extract.vggish import VGGish, build_vggish
from yt8m.errors import UsageError


def _a(name, c_in, pool):  # InceptionA (FIDInceptionA): Mixed_5b/5c/5d
    return [(f"{name}.branch1x1", 64, c_in, 1, 1), (f"{name}.branch5x5_1", 48, c_in, 1, 1),
            (f"{name}.branch5x5_2", 64, 48, 5, 5), (f"{name}.branch3x3dbl_1", 64, c_in, 1, 1),
            (f"{name}.branch3x3dbl_2", 96, 64, 3, 3), (f"{name}.branch3x3dbl_3", 96, 96, 3, 3),
            (f"{name}.branch_pool", pool, c_in, 1, 1)]


def _c(name, c7):  # InceptionC (FIDInceptionC): Mixed_6b..6e, 768 channels in
    return [(f"{name}.branch1x1", 192, 768, 1, 1), (f"{name}.branch7x7_1", c7, 768, 1, 1),
            (f"{name}.branch7x7_2", c7, c7, 1, 7), (f"{name}.branch7x7_3", 192, c7, 7, 1),
            (f"{name}.branch7x7dbl_1", c7, 768, 1, 1), (f"{name}.branch7x7dbl_2", c7, c7, 7, 1),
            (f"{name}.branch7x7dbl_3", c7, c7, 1, 7), (f"{name}.branch7x7dbl_4", c7, c7, 7, 1),
            (f"{name}.branch7x7dbl_5", 192, c7, 1, 7), (f"{name}.branch_pool", 192, 768, 1, 1)]


def _e(name, c_in):  # InceptionE (FIDInceptionE_1 / _2): Mixed_7b/7c
    return [(f"{name}.branch1x1", 320, c_in, 1, 1), (f"{name}.branch3x3_1", 384, c_in, 1, 1),
            (f"{name}.branch3x3_2a", 384, 384, 1, 3), (f"{name}.branch3x3_2b", 384, 384, 3, 1),
            (f"{name}.branch3x3dbl_1", 448, c_in, 1, 1), (f"{name}.branch3x3dbl_2", 384, 448, 3, 3),
            (f"{name}.branch3x3dbl_3a", 384, 384, 1, 3), (f"{name}.branch3x3dbl_3b", 384, 384, 3, 1),
            (f"{name}.branch_pool", 192, c_in, 1, 1)]


# (BasicConv2d name, out channels, in channels, kernel h, kernel w)
INCEPTION_CONVS = [
    ("Conv2d_1a_3x3", 32, 3, 3, 3), ("Conv2d_2a_3x3", 32, 32, 3, 3),
    ("Conv2d_2b_3x3", 64, 32, 3, 3), ("Conv2d_3b_1x1", 80, 64, 1, 1),
    ("Conv2d_4a_3x3", 192, 80, 3, 3),
    *_a("Mixed_5b", 192, 32), *_a("Mixed_5c", 256, 64), *_a("Mixed_5d", 288, 64),
    ("Mixed_6a.branch3x3", 384, 288, 3, 3), ("Mixed_6a.branch3x3dbl_1", 64, 288, 1, 1),
    ("Mixed_6a.branch3x3dbl_2", 96, 64, 3, 3), ("Mixed_6a.branch3x3dbl_3", 96, 96, 3, 3),
    *_c("Mixed_6b", 128), *_c("Mixed_6c", 160), *_c("Mixed_6d", 160), *_c("Mixed_6e", 192),
    ("Mixed_7a.branch3x3_1", 192, 768, 1, 1), ("Mixed_7a.branch3x3_2", 320, 192, 3, 3),
    ("Mixed_7a.branch7x7x3_1", 192, 768, 1, 1), ("Mixed_7a.branch7x7x3_2", 192, 192, 1, 7),
    ("Mixed_7a.branch7x7x3_3", 192, 192, 7, 1), ("Mixed_7a.branch7x7x3_4", 192, 192, 3, 3),
    *_e("Mixed_7b", 1280), *_e("Mixed_7c", 2048),
]

VGGISH_KEYS = {
    "features.0.weight": (64, 1, 3, 3), "features.0.bias": (64,),
    "features.3.weight": (128, 64, 3, 3), "features.3.bias": (128,),
    "features.6.weight": (256, 128, 3, 3), "features.6.bias": (256,),
    "features.8.weight": (256, 256, 3, 3), "features.8.bias": (256,),
    "features.11.weight": (512, 256, 3, 3), "features.11.bias": (512,),
    "features.13.weight": (512, 512, 3, 3), "features.13.bias": (512,),
    "embeddings.0.weight": (4096, 12288), "embeddings.0.bias": (4096,),
    "embeddings.2.weight": (4096, 4096), "embeddings.2.bias": (4096,),
    "embeddings.4.weight": (128, 4096), "embeddings.4.bias": (128,),
}


def published_inception_state(with_bn_counters: bool = False) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    state = {}
    for name, c_out, c_in, kh, kw in INCEPTION_CONVS:
        fan_in = c_in * kh * kw
        state[f"{name}.conv.weight"] = torch.randn(c_out, c_in, kh, kw, generator=g) \
            * (2.0 / fan_in) ** 0.5
        state[f"{name}.bn.weight"] = 1 + 0.1 * torch.rand(c_out, generator=g)
        state[f"{name}.bn.bias"] = 0.1 * torch.randn(c_out, generator=g)
        state[f"{name}.bn.running_mean"] = 0.1 * torch.randn(c_out, generator=g)
        state[f"{name}.bn.running_var"] = 1 + torch.rand(c_out, generator=g)
        if with_bn_counters:
            state[f"{name}.bn.num_batches_tracked"] = torch.tensor(0)
    state["fc.weight"] = 0.01 * torch.randn(1008, 2048, generator=g)
    state["fc.bias"] = torch.zeros(1008)
    return state


def test_inception_table_is_the_published_size():
    # 94 BasicConv2d in torchvision's Inception3 without AuxLogits; 23.8M parameters
    # with the 1008-way fc (pool_3 network + classifier).
    assert len(INCEPTION_CONVS) == 94
    n = sum(v.numel() for k, v in published_inception_state().items() if "running" not in k)
    assert 23_500_000 < n < 24_000_000


@pytest.fixture(scope="module")
def inception_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("w") / "pt_inception-2015-12-05-6726825d.pth"
    torch.save(published_inception_state(), path)
    return path


def test_inception_loads_published_layout_strictly(inception_file):
    torch.set_num_threads(1)
    model = build_inception(str(inception_file))
    assert isinstance(model, InceptionPool3) and model.random_weights is False
    assert model.name == "inception-2015-12-05"
    want = published_inception_state()
    got = model.net.state_dict()
    for key in ("Mixed_7c.branch_pool.conv.weight", "fc.weight", "Conv2d_1a_3x3.bn.running_var"):
        assert torch.equal(got[key], want[key])
    frames = torch.from_numpy(np.random.default_rng(0).integers(0, 256, (2, 120, 160, 3),
                                                                dtype=np.uint8))
    out = model(frames)
    assert out.shape == (2, 2048) and out.dtype == torch.float32
    assert torch.isfinite(out).all() and (out >= 0).all()  # pool of ReLUs
    # channels-last is a layout choice, not a different network.
    model.configure("cpu", channels_last=True)
    assert torch.allclose(model(frames), out, atol=1e-4, rtol=1e-4)


def test_inception_accepts_batchnorm_counters_and_legacy_format(tmp_path):
    # The port was saved in 2019: pre-1.6 (non-zip) serialization, maybe with BN counters.
    path = tmp_path / "w.pth"
    torch.save(published_inception_state(with_bn_counters=True), path,
               _use_new_zipfile_serialization=False)
    assert build_inception(str(path)).random_weights is False


def test_inception_refuses_wrong_shape_naming_file_and_key(tmp_path):
    state = published_inception_state()
    state["Mixed_6c.branch7x7_2.conv.weight"] = torch.zeros(160, 160, 7, 1)  # transposed kernel
    path = tmp_path / "bad.pth"
    torch.save(state, path)
    with pytest.raises(UsageError) as e:
        build_inception(str(path))
    assert str(path) in str(e.value) and "Mixed_6c.branch7x7_2.conv.weight" in str(e.value)
    assert "(160, 160, 7, 1)" in str(e.value)


def test_inception_refuses_torchvision_imagenet_layout(tmp_path):
    state = published_inception_state()
    state["fc.weight"] = torch.zeros(1000, 2048)  # torchvision's 1000-way ImageNet head
    state["fc.bias"] = torch.zeros(1000)
    state["AuxLogits.fc.weight"] = torch.zeros(1000, 768)
    path = tmp_path / "imagenet.pth"
    torch.save(state, path)
    with pytest.raises(UsageError, match="AuxLogits.fc.weight"):
        build_inception(str(path))


def test_inception_missing_file_names_it(tmp_path):
    with pytest.raises(UsageError, match="pt_inception-2015-12-05-6726825d.pth"):
        build_inception(str(tmp_path / "pt_inception-2015-12-05-6726825d.pth"))


def test_inception_random_init_says_so():
    torch.manual_seed(0)
    model = build_inception(None)
    assert model.random_weights is True and "random" in model.name
    frames = torch.from_numpy(np.random.default_rng(1).integers(0, 256, (2, 64, 64, 3),
                                                                dtype=np.uint8))
    out = model(frames)
    assert out.shape == (2, 2048) and out.std() > 1e-3  # varied, not vanished


def test_tf_average_pool_excludes_padding():
    # TF's SAME avg pool of a constant map is that constant at the borders too.
    from extract.inception import _tf_avg_pool
    x = torch.full((1, 2, 5, 5), 3.0)
    assert torch.allclose(_tf_avg_pool(x), x)


def test_last_block_pools_its_pool_branch_with_max():
    """The graph's Mixed_7c max-pools what its pool branch sees, Mixed_7b averages it
    (TF's SAME average, padding excluded): what reaches the branch's convolution."""
    import torch.nn.functional as F

    from extract.inception import InceptionV3
    net = InceptionV3().eval()
    seen = {}
    for name in ("Mixed_7b", "Mixed_7c"):
        block = getattr(net, name)
        block.branch_pool.register_forward_hook(
            lambda _m, args, _out, name=name: seen.__setitem__(name, args[0]))
    g = torch.Generator().manual_seed(0)
    x7b, x7c = torch.randn(1, 1280, 8, 8, generator=g), torch.randn(1, 2048, 8, 8, generator=g)
    with torch.no_grad():
        net.Mixed_7b(x7b)
        net.Mixed_7c(x7c)
    torch.testing.assert_close(seen["Mixed_7c"], F.max_pool2d(x7c, 3, stride=1, padding=1))
    ones = torch.ones(1, 1, 8, 8)
    average = F.avg_pool2d(x7b, 3, 1, 1, count_include_pad=False)
    torch.testing.assert_close(seen["Mixed_7b"], average)
    assert not torch.allclose(F.avg_pool2d(ones, 3, 1, 1), ones)  # padding would count


def published_vggish_state() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    state = {}
    for key, shape in VGGISH_KEYS.items():
        fan_in = int(np.prod(shape[1:])) if len(shape) > 1 else 1
        state[key] = torch.randn(*shape, generator=g) * (2.0 / fan_in) ** 0.5 \
            if len(shape) > 1 else 0.01 * torch.randn(*shape, generator=g)
    return state


@pytest.fixture(scope="module")
def vggish_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("w") / "vggish-10086976.pth"
    torch.save(published_vggish_state(), path)
    return path


def test_vggish_loads_published_layout_strictly(vggish_file):
    model = build_vggish(str(vggish_file))
    assert isinstance(model, VGGish) and model.random_weights is False and model.name == "vggish"
    want = published_vggish_state()
    assert torch.equal(model.state_dict()["embeddings.4.weight"], want["embeddings.4.weight"])
    examples = torch.randn(3, 96, 64) - 3.0
    out = model(examples)
    assert out.shape == (3, 128) and out.dtype == torch.float32
    assert (out < 0).any()  # fc2 before the port's trailing ReLU


def test_vggish_flattens_in_tf_order(vggish_file):
    """The embedding's first layer sees features in TF's (time, mel, channel) order."""
    model = build_vggish(str(vggish_file))
    examples = torch.randn(2, 96, 64)
    with torch.no_grad():
        fmap = model.features(examples.unsqueeze(1))  # [2, 512, 6, 4]
        flat = torch.stack([fmap[:, c, t, m] for t in range(6) for m in range(4)
                            for c in range(512)], dim=1)
        want = model.embeddings(flat)
    assert torch.allclose(model(examples), want, atol=1e-4)


def test_vggish_refuses_wrong_shape_naming_file_and_key(tmp_path):
    state = published_vggish_state()
    state["embeddings.4.weight"] = torch.zeros(128, 4095)
    path = tmp_path / "bad.pth"
    torch.save(state, path)
    with pytest.raises(UsageError) as e:
        build_vggish(str(path))
    assert str(path) in str(e.value) and "embeddings.4.weight" in str(e.value)


def test_vggish_refuses_a_non_weights_file(tmp_path):
    path = tmp_path / "vggish-10086976.pth"
    path.write_bytes(b"<html>404 Not Found</html>")
    with pytest.raises(UsageError, match="not a readable PyTorch weights file"):
        build_vggish(str(path))


def test_inception_skips_resize_for_frames_already_299(inception_file):
    from extract.resize import resize_bilinear_tf1
    model = build_inception(str(inception_file))
    frames = torch.from_numpy(np.random.default_rng(4).integers(0, 256, (2, 180, 320, 3),
                                                                dtype=np.uint8))
    assert torch.equal(model(resize_bilinear_tf1(frames, 299)), model(frames))
