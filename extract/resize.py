"""TensorFlow 1's legacy bilinear resize (`tf.image.resize_bilinear`, align_corners=False).

The inception-2015-12-05 graph resizes every frame with it, so features equal
Google's only if we resize the same way. It maps output pixel d to source
coordinate s = d * in / out (no half-pixel offset), blends the pixels floor(s)
and floor(s) + 1 (the latter clamped to the last row/column). torch's
`interpolate(..., align_corners=False)` uses s = (d + 0.5) * in / out - 0.5: a
different image.
"""
from __future__ import annotations

import torch

INCEPTION_SIZE = 299


def _taps(n_in: int, n_out: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor,
                                                                 torch.Tensor]:
    """Source indices (low, high) and the weight of `high` for each output position."""
    # float32, as TF's kernel computes the scale and the source coordinate in `float`;
    # doing it in double moves some taps by ~1e-5 pixel (~0.01 grey level).
    scale = torch.tensor(float(n_in), dtype=torch.float32) / float(n_out)
    src = torch.arange(n_out, dtype=torch.float32) * scale
    low = src.floor()
    frac = src - low
    low = low.long().clamp_(max=n_in - 1)
    high = (low + 1).clamp_(max=n_in - 1)
    return low.to(device), high.to(device), frac.to(device)


def resize_bilinear_tf1(images: torch.Tensor, size: tuple[int, int] | int = INCEPTION_SIZE,
                        channels_last: bool = True) -> torch.Tensor:
    """Resize a batch of images like TF1's `resize_bilinear(align_corners=False)`.

    images: [N, H, W, C] when `channels_last` (the decoder's layout), else [N, C, H, W];
    any dtype (uint8 frames are converted to float32). Returns float32 (or the input's
    floating dtype) in the same layout, on the same device.
    """
    if isinstance(size, int):
        size = (size, size)
    out_h, out_w = size
    dtype = images.dtype if images.is_floating_point() else torch.float32
    h_axis, w_axis = (1, 2) if channels_last else (2, 3)
    in_h, in_w = images.shape[h_axis], images.shape[w_axis]

    y0, y1, wy = _taps(in_h, out_h, images.device)
    x0, x1, wx = _taps(in_w, out_w, images.device)
    wy = wy.to(dtype)
    wx = wx.to(dtype)
    # Broadcast the weights along the resized axis.
    wy_shape = [1] * images.dim()
    wy_shape[h_axis] = out_h
    wx_shape = [1] * images.dim()
    wx_shape[w_axis] = out_w

    # Pick the needed rows before converting to float: a 1080p uint8 frame never
    # becomes a full-size float copy.
    top = images.index_select(h_axis, y0).to(dtype)
    bottom = images.index_select(h_axis, y1).to(dtype)
    rows = top + (bottom - top) * wy.view(wy_shape)
    left = rows.index_select(w_axis, x0)
    right = rows.index_select(w_axis, x1)
    return left + (right - left) * wx.view(wx_shape)
