"""TF1 legacy bilinear resize vs. an independent NumPy transcription of TF's formula."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from extract.resize import resize_bilinear_tf1


def tf1_resize_reference(image: np.ndarray, out_h: int, out_w: int) -> np.ndarray:
    """resize_bilinear(align_corners=False) as TF 1.x's kernel defines it, one HWC image:
    source = dest * (in / out); blend floor(source) and min(floor(source) + 1, in - 1).
    TF's kernel computes the scale and the source coordinate in C++ `float`, so do we."""
    f32 = np.float32
    in_h, in_w = image.shape[:2]
    scale_y, scale_x = f32(in_h) / f32(out_h), f32(in_w) / f32(out_w)
    img = image.astype(np.float64)
    # Column taps once (the same formula), then one output row at a time.
    sx = np.array([f32(x) * scale_x for x in range(out_w)], dtype=np.float64)
    left = np.floor(sx).astype(int)
    right = np.minimum(left + 1, in_w - 1)
    dx = (sx - left)[:, None]
    out = np.zeros((out_h, out_w, image.shape[2]))
    for y in range(out_h):
        sy = float(f32(y) * scale_y)
        top = int(np.floor(sy))
        bottom = min(top + 1, in_h - 1)
        dy = sy - top
        row = img[top] * (1 - dy) + img[bottom] * dy  # [in_w, C]
        out[y] = row[left] * (1 - dx) + row[right] * dx
    return out


@pytest.mark.parametrize("in_hw,out_hw", [
    ((240, 320), (299, 299)),   # upscale, non-integer ratios
    ((480, 854), (299, 299)),   # downscale, non-integer ratios
    ((37, 1001), (299, 299)),   # up in one axis, down in the other
    ((299, 299), (299, 299)),   # identity
    ((50, 70), (123, 31)),      # arbitrary target
])
def test_matches_tf1_formula(in_hw, out_hw):
    rng = np.random.default_rng(sum(in_hw))
    images = rng.integers(0, 256, size=(2, *in_hw, 3), dtype=np.uint8)
    got = resize_bilinear_tf1(torch.from_numpy(images), out_hw).numpy()
    assert got.dtype == np.float32 and got.shape == (2, *out_hw, 3)
    for i in range(2):
        want = tf1_resize_reference(images[i], *out_hw)
        assert np.abs(got[i] - want).max() <= 1e-4


def test_nchw_float_layout_equals_nhwc():
    rng = np.random.default_rng(1)
    images = torch.from_numpy(rng.random((3, 90, 160, 3), dtype=np.float32) * 255)
    nhwc = resize_bilinear_tf1(images, 299, channels_last=True)
    nchw = resize_bilinear_tf1(images.permute(0, 3, 1, 2), 299, channels_last=False)
    assert torch.allclose(nhwc.permute(0, 3, 1, 2), nchw, atol=1e-5)


def test_differs_from_torch_half_pixel_resize():
    """torch's align_corners=False (half-pixel centres) is a different image: the test
    above would catch an implementation that used it."""
    rng = np.random.default_rng(2)
    images = torch.from_numpy(rng.integers(0, 256, (1, 240, 320, 3), dtype=np.uint8))
    ours = resize_bilinear_tf1(images, 299, channels_last=True).permute(0, 3, 1, 2)
    theirs = F.interpolate(images.permute(0, 3, 1, 2).float(), size=(299, 299),
                           mode="bilinear", align_corners=False)
    assert (ours - theirs).abs().max() > 10


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_equals_cpu():
    rng = np.random.default_rng(3)
    images = torch.from_numpy(rng.integers(0, 256, (4, 720, 1280, 3), dtype=np.uint8))
    cpu = resize_bilinear_tf1(images, 299)
    gpu = resize_bilinear_tf1(images.cuda(), 299).cpu()
    assert (cpu - gpu).abs().max() <= 1e-3
