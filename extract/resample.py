"""Audio to what VGGish expects: mono, 16 kHz, as the VGGish reference makes it.

The reference (`vggish_input.waveform_to_examples`) averages the channels and
resamples with `resampy.resample(data, rate, 16000)`, whose default filter is
`kaiser_best`. resampy interpolates its filter linearly from a precomputed
table (shipped in its package), and that interpolation is part of the result: a
Kaiser sinc computed by formula differs by up to 2.6 % RMS at 44.1 kHz. So this
module reads resampy's own table and computes what resampy's loop computes:

    output t sits at input time t * rate / 16000 = n + frac;
    y[t] = sum_i w(frac + i) * x[n - i] + sum_k w(scale - frac + k) * x[n + 1 + k],

where w(p) is the table linearly interpolated at p * precision, stepped by
int(scale * precision) entries per tap, and samples outside the signal are zero.

resampy runs that loop per output sample (numba: ~0.7 s for a minute of 48 kHz
sound on one core, plus a JIT compile in every new process). The weights only
depend on frac, which cycles through P = 16000 / gcd(rate, 16000) values while
the input advances Q = rate / gcd samples per cycle. So the weights are built
once per phase and the sums are done in bulk: by FFT when a window spans many
cycles (48 kHz: P = 1, 302 taps every 3 samples), else as one matrix product
per block (44.1 kHz: 160 phases, 276 taps every 441 samples), or phase by phase
for odd rates with thousands of phases. About 0.05 s for that minute; equal to
resampy to ~1e-10, output length included. Checked against resampy itself in
the tests.
"""
from __future__ import annotations

import functools
import importlib.util
import math
import os
from dataclasses import dataclass, field

import numpy as np

TARGET_RATE = 16000
_GEMM_MAX_ENTRIES = 1 << 22  # phase matrix H [P, A, Q] up to 32 MB of float64
_BLOCK_BYTES = 8 << 20  # float64 temporaries per block of outputs
_FFT_ROWS = 8  # windows longer than this many rows of Q samples: FFT beats the product


@functools.lru_cache(maxsize=1)
def _kaiser_best() -> tuple[np.ndarray, int]:
    """resampy's kaiser_best table (the right wing) and its entries per zero crossing.
    Read from resampy's package data without importing resampy (which loads numba)."""
    spec = importlib.util.find_spec("resampy")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("resampy is not installed: its kaiser_best filter table is needed "
                           "to resample audio as the VGGish reference does")
    path = os.path.join(spec.submodule_search_locations[0], "data", "kaiser_best.npz")
    with np.load(path) as data:
        return np.asarray(data["half_window"], np.float64), int(data["precision"])


@dataclass(frozen=True)
class _Plan:
    """Everything about rate -> 16 kHz that does not depend on the samples."""

    rate: int
    up: int  # P: outputs per cycle
    down: int  # Q: input samples per cycle
    scale: float  # min(1, 16000 / rate)
    table: np.ndarray = field(repr=False)  # resampy's wing, gain-scaled when downsampling
    delta: np.ndarray = field(repr=False)  # table[j + 1] - table[j] (0 after the last)
    precision: int  # table entries per zero crossing
    step: int  # table entries between taps: int(scale * precision)

    @property
    def half(self) -> int:
        """L: taps per wing at most; a window spans 2L input samples."""
        return len(self.table) // self.step + 1

    @property
    def width(self) -> int:
        return 2 * self.half


@functools.lru_cache(maxsize=4)  # a few rates in use; an odd rate's phases can be 10+ MB
def _plan(rate: int) -> tuple[_Plan, np.ndarray]:
    """The plan and the weights of each phase: float64 [P, 2L], row r for output t = r."""
    table, precision = _kaiser_best()
    ratio = float(TARGET_RATE) / rate
    if ratio < 1:
        table = ratio * table  # resampy scales the filter's gain when downsampling
    scale = min(1.0, ratio)
    g = math.gcd(rate, TARGET_RATE)
    plan = _Plan(rate, TARGET_RATE // g, rate // g, scale, table,
                 np.diff(table, append=table[-1]), precision, int(scale * precision))
    increment = 1.0 / ratio
    phases = np.empty((plan.up, plan.width), np.float64)
    for t in range(plan.up):
        position = t * increment  # resampy's arithmetic, so that frac is its value
        phases[t] = _weights(plan, scale * (position - int(position)))
    return plan, phases


def _weights(plan: _Plan, frac: float) -> np.ndarray:
    """The window's weights for an output at n + frac: x[n - i] sits at column L - 1 - i,
    x[n + 1 + k] at column L + k."""
    left = _wing(plan, frac)
    right = _wing(plan, plan.scale - frac)
    out = np.zeros(plan.width, np.float64)
    out[plan.half - len(left):plan.half] = left[::-1]
    out[plan.half:plan.half + len(right)] = right
    return out


def _wing(plan: _Plan, frac: float) -> np.ndarray:
    """One side's weights, as resampy interpolates them: entries offset + i * step, each
    moved by eta toward the next entry."""
    index = frac * plan.precision
    offset = int(index)
    eta = index - offset
    taps = offset + plan.step * np.arange((len(plan.table) - offset) // plan.step)
    return plan.table[taps] + eta * plan.delta[taps]


def _output_length(n: int, rate: int) -> int:
    return int(n * float(TARGET_RATE) / float(rate))  # resampy's expression, to the sample


def _segment(x: np.ndarray, plan: _Plan, start: int, length: int) -> np.ndarray:
    """Samples start .. start + length - 1 of the padded signal (L - 1 zeros, then x, then
    zeros: the window of output 0 starts at 0), as float64. Blocks of it are built one
    at a time, so a long track is never copied whole."""
    out = np.zeros(length, np.float64)
    lo = start - (plan.half - 1)  # where the segment starts in x
    a, b = max(lo, 0), min(lo + length, len(x))
    if b > a:
        out[a - lo:b - lo] = x[a:b]
    return out


def _by_gemm(x: np.ndarray, plan: _Plan, phases: np.ndarray, y: np.ndarray) -> None:
    """All phases at once. Input rows of Q samples X[m]; output t = mP + r is
    sum_a X[m + a] . H[r, a], where H[r] holds phase r's window from n_r = rQ // P < Q."""
    P, Q, W = plan.up, plan.down, plan.width
    A = -(-(Q - 1 + W) // Q)  # rows a window can touch
    H = np.zeros((P, A * Q), np.float64)
    for r in range(P):
        start = (r * Q) // P
        H[r, start:start + W] = phases[r]
    H = H.reshape(P * A, Q).T  # [Q, P*A]
    step = max(1, _BLOCK_BYTES // (8 * max(Q, P * A)))
    for m0 in range(0, len(y), step):
        rows = min(step, len(y) - m0)
        X = _segment(x, plan, m0 * Q, (rows + A - 1) * Q).reshape(rows + A - 1, Q)
        Z = (X @ H).reshape(rows + A - 1, P, A)
        block = Z[0:rows, :, 0].copy()
        for a in range(1, A):
            block += Z[a:a + rows, :, a]
        y[m0:m0 + rows] = block


def _by_phase(x: np.ndarray, plan: _Plan, phases: np.ndarray, y: np.ndarray) -> None:
    """Phase by phase: the windows of outputs r, r + P, ... step by Q >= W input samples,
    a strided view that BLAS reads in place."""
    P, Q, W = plan.up, plan.down, plan.width
    step = max(1, 8 * _BLOCK_BYTES // (8 * Q))  # larger blocks: a Python loop of P per block
    for m0 in range(0, len(y), step):
        rows = min(step, len(y) - m0)
        X = _segment(x, plan, m0 * Q, (rows + 1) * Q + W)
        for r in range(P):
            windows = np.lib.stride_tricks.as_strided(X[(r * Q) // P:], (rows, W), (Q * 8, 8),
                                                      writeable=False)
            y[m0:m0 + rows, r] = windows @ phases[r]


def _by_fft(x: np.ndarray, plan: _Plan, phases: np.ndarray, y: np.ndarray,
            size: int = 8192, group: int = 64) -> None:
    """Few phases with long windows (48 kHz: one phase, 302 taps every 3 samples): each
    phase's sums at every input position by FFT (overlap-save, blocks of `hop` positions,
    a multiple of Q), of which every Q-th is an output."""
    P, Q, W = plan.up, plan.down, plan.width
    size = max(size, 1 << (2 * (W + Q)).bit_length())
    hop = (size - W + 1) // Q * Q
    per_block = hop // Q  # outputs of one phase per block
    blocks = -(-len(y) // per_block)
    for r in range(P):
        kernel = np.conj(np.fft.rfft(phases[r], size))
        for b0 in range(0, blocks, group):
            b1 = min(blocks, b0 + group)
            X = _segment(x, plan, (r * Q) // P + b0 * hop, (b1 - b0) * hop + W - 1)
            segments = np.lib.stride_tricks.as_strided(X, (b1 - b0, hop + W - 1), (hop * 8, 8),
                                                       writeable=False)
            sums = np.fft.irfft(np.fft.rfft(segments, size, axis=1) * kernel, size, axis=1)
            outputs = sums[:, :hop:Q].reshape(-1)
            m0 = b0 * per_block
            y[m0:m0 + len(outputs), r] = outputs[:len(y) - m0]


def resample_to_16k(mono: np.ndarray, rate: int) -> np.ndarray:
    """Mono samples at `rate` Hz -> 16 kHz, equal to `resampy.resample(mono, rate, 16000)`
    (kaiser_best) including the output length and both ends; computed in float64 and
    returned in the input's float precision."""
    mono = np.asarray(mono).reshape(-1)
    dtype = mono.dtype if mono.dtype in (np.float32, np.float64) else np.dtype(np.float64)
    if rate <= 0:
        raise ValueError(f"sample rate must be positive, got {rate}")
    if rate == TARGET_RATE or mono.size == 0:
        return mono.astype(dtype, copy=False)
    n_out = _output_length(len(mono), rate)
    if n_out < 1:
        raise ValueError(f"{len(mono)} samples at {rate} Hz are too few to resample")
    plan, phases = _plan(int(rate))
    y = np.empty((-(-n_out // plan.up), plan.up), dtype)  # row m: outputs mP .. mP + P - 1
    rows = -(-(plan.down - 1 + plan.width) // plan.down)  # A: input rows of Q per window
    if rows > _FFT_ROWS:
        _by_fft(mono, plan, phases, y)
    elif plan.up * rows * plan.down <= _GEMM_MAX_ENTRIES:
        _by_gemm(mono, plan, phases, y)
    else:  # thousands of phases (an odd rate): then Q >= W and the strided view is free
        _by_phase(mono, plan, phases, y)
    y = y.reshape(-1)[:n_out]
    _refit_rounded(mono, plan, y)
    return y


def _refit_rounded(x: np.ndarray, plan: _Plan, y: np.ndarray, chunk: int = 1 << 17) -> None:
    """Outputs where resampy's float time t * rate / 16000 rounds to another input sample
    than the exact one (none at the usual rates, checked up to an hour) get resampy's
    own weights for that sample, so the result follows resampy there too."""
    increment = 1.0 / (float(TARGET_RATE) / plan.rate)
    for t0 in range(0, len(y), chunk):
        t = np.arange(t0, min(len(y), t0 + chunk), dtype=np.int64)
        position = t * increment
        n = position.astype(np.int64)
        for i in np.nonzero(n != (t * plan.down) // plan.up)[0]:
            weights = _weights(plan, plan.scale * (position[i] - n[i]))
            y[t[i]] = _segment(x, plan, int(n[i]), plan.width) @ weights


def to_mono_16k(samples: np.ndarray, rate: int) -> np.ndarray:
    """[channels, n] (or [n]) audio at `rate` Hz -> float32 [m] mono at 16 kHz."""
    samples = np.asarray(samples, dtype=np.float64)
    mono = samples.mean(axis=0) if samples.ndim == 2 else samples.reshape(-1)
    return resample_to_16k(mono, rate).astype(np.float32)
