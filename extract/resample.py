"""Audio to what VGGish expects: mono, 16 kHz.

The VGGish reference (`vggish_input.waveform_to_examples`) averages the channels
and resamples with `resampy.resample(..., filter='kaiser_best')`. resampy's
kaiser_best is a windowed-sinc filter with

    num_zeros = 64, rolloff = 0.9475937167399596, beta = 14.769656459379492

(zero crossings per side, cutoff as a fraction of Nyquist, Kaiser shape). In
torchaudio's bandlimited sinc resampler these are `lowpass_filter_width` (zero
crossings per side), `rolloff` and `beta` of `resampling_method="sinc_interp_kaiser"`,
so the mapping is one to one. resampy interpolates its filter from a table of
2**9 samples per zero crossing while torchaudio evaluates the sinc exactly; the
difference is far below float32 audio precision.
"""
from __future__ import annotations

import numpy as np

TARGET_RATE = 16000
KAISER_BEST = dict(lowpass_filter_width=64, rolloff=0.9475937167399596,
                   resampling_method="sinc_interp_kaiser", beta=14.769656459379492)


def to_mono_16k(samples: np.ndarray, rate: int) -> np.ndarray:
    """[channels, n] (or [n]) float audio at `rate` Hz -> float32 [m] mono at 16 kHz."""
    import torch
    import torchaudio.functional as AF

    samples = np.asarray(samples, dtype=np.float32)
    mono = samples.mean(axis=0) if samples.ndim == 2 else samples.reshape(-1)
    if rate == TARGET_RATE or mono.size == 0:
        return np.ascontiguousarray(mono, dtype=np.float32)
    if rate <= 0:
        raise ValueError(f"sample rate must be positive, got {rate}")
    out = AF.resample(torch.from_numpy(mono), int(rate), TARGET_RATE, **KAISER_BEST)
    return out.numpy().astype(np.float32, copy=False)
