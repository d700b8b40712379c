"""VGGish's log-mel frontend in torch (docs/reference.md, "Representation"; AudioSet's mel_features.py).

16 kHz mono waveform -> frames of 25 ms (400 samples) every 10 ms (160), only
whole frames, no padding -> periodic Hann -> |rfft| with 512 points (257 bins) ->
64 HTK-mel triangles from 125 to 7500 Hz, built on the bins' mel positions with
the DC bin zeroed -> log(mel + 0.01) -> examples of 96 frames (0.96 s) every 100
frames (1.0 s: one audio vector per second, as YouTube-8M; the AudioSet
reference hops 0.96 s).
"""
from __future__ import annotations

import numpy as np
import torch

SAMPLE_RATE = 16000
WINDOW_SAMPLES = 400  # round(0.025 * 16000)
HOP_SAMPLES = 160  # round(0.010 * 16000)
FFT_LENGTH = 512  # next power of two >= WINDOW_SAMPLES
NUM_BANDS = 64
MEL_MIN_HZ = 125.0
MEL_MAX_HZ = 7500.0
LOG_OFFSET = 0.01
EXAMPLE_FRAMES = 96  # 0.96 s of 10 ms frames
EXAMPLE_HOP_FRAMES = 100  # 1.0 s
_BLOCK_FRAMES = 6000  # STFT this many frames at a time: memory stays flat for long tracks


def hertz_to_mel(hz: np.ndarray | float) -> np.ndarray:
    """HTK mel scale: 1127 ln(1 + f / 700)."""
    return 1127.0 * np.log1p(np.asarray(hz, dtype=np.float64) / 700.0)


def mel_matrix(num_bands: int = NUM_BANDS, num_bins: int = FFT_LENGTH // 2 + 1,
               sample_rate: int = SAMPLE_RATE, low_hz: float = MEL_MIN_HZ,
               high_hz: float = MEL_MAX_HZ) -> np.ndarray:
    """[num_bins, num_bands] float64 weights: triangles on the mel positions of the
    FFT bins (not interpolated between band edges in Hz), DC row zeroed."""
    bins_mel = hertz_to_mel(np.linspace(0.0, sample_rate / 2.0, num_bins))
    edges = np.linspace(hertz_to_mel(low_hz), hertz_to_mel(high_hz), num_bands + 2)
    lower, center, upper = edges[:-2], edges[1:-1], edges[2:]
    rising = (bins_mel[:, None] - lower) / (center - lower)
    falling = (upper - bins_mel[:, None]) / (upper - center)
    weights = np.maximum(0.0, np.minimum(rising, falling))
    weights[0, :] = 0.0  # the DC bin carries no band
    return weights


def num_frames(num_samples: int) -> int:
    """STFT frames of a waveform: only whole windows."""
    return 0 if num_samples < WINDOW_SAMPLES else 1 + (num_samples - WINDOW_SAMPLES) // HOP_SAMPLES


def num_examples(num_samples: int) -> int:
    """0.96 s examples (one per second) of a 16 kHz waveform of `num_samples`."""
    f = num_frames(num_samples)
    return 0 if f < EXAMPLE_FRAMES else 1 + (f - EXAMPLE_FRAMES) // EXAMPLE_HOP_FRAMES


def log_mel_spectrogram(waveform: torch.Tensor) -> torch.Tensor:
    """float [n] at 16 kHz -> float32 [num_frames(n), 64] log-mel, on the input's device."""
    x = waveform.reshape(-1).float()
    total = num_frames(x.numel())
    mel = torch.from_numpy(mel_matrix()).to(device=x.device, dtype=torch.float32)
    if total == 0:
        return x.new_zeros((0, NUM_BANDS))
    window = torch.hann_window(WINDOW_SAMPLES, periodic=True, dtype=torch.float32,
                               device=x.device)
    frames = x.unfold(0, WINDOW_SAMPLES, HOP_SAMPLES)  # a view: [total, 400]
    out = []
    for start in range(0, total, _BLOCK_FRAMES):
        block = frames[start:start + _BLOCK_FRAMES] * window
        magnitude = torch.fft.rfft(block, n=FFT_LENGTH).abs()
        out.append(torch.log(magnitude @ mel + LOG_OFFSET))
    return torch.cat(out)


def frame_examples(log_mel: torch.Tensor) -> torch.Tensor:
    """[frames, 64] -> [N, 96, 64]: windows of 96 frames every 100, whole windows only."""
    if log_mel.shape[0] < EXAMPLE_FRAMES:
        return log_mel.new_zeros((0, EXAMPLE_FRAMES, NUM_BANDS))
    # unfold puts the window last: [N, 64, 96] -> [N, 96, 64]
    return log_mel.unfold(0, EXAMPLE_FRAMES, EXAMPLE_HOP_FRAMES).transpose(1, 2).contiguous()


def waveform_to_examples(waveform: np.ndarray | torch.Tensor,
                         device: torch.device | str | None = None) -> torch.Tensor:
    """16 kHz mono float waveform -> float32 [num_examples(n), 96, 64] VGGish input."""
    x = torch.as_tensor(np.asarray(waveform, dtype=np.float32)) \
        if not isinstance(waveform, torch.Tensor) else waveform
    if device is not None:
        x = x.to(device)
    return frame_examples(log_mel_spectrogram(x))

