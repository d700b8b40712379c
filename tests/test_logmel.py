"""VGGish log-mel frontend and the 16 kHz resampler, on real audio.

The NumPy reference below is written from the formulas of AudioSet's
mel_features.py / vggish_input.py (not from extract/logmel.py): whole 400-sample
windows every 160 samples, periodic Hann, |rfft| over 512 points, HTK-mel
triangles over the FFT bins' mel positions with the DC bin zeroed, log(x + 0.01),
then 96-frame examples every 100 frames.
"""
import os
import shutil
import subprocess

import numpy as np
import pytest
import torch

from extract import logmel
from extract.resample import resample_to_16k, to_mono_16k
from yt8m.samples import sample_clip_dir

CLIP = os.path.join(sample_clip_dir(), "bigbuckbunny.mp4")  # 6-channel 48 kHz AAC


def decode_audio_ffmpeg(path: str) -> tuple[np.ndarray, int]:
    """[channels, n] float32 at the native rate, decoded by the ffmpeg CLI."""
    probe = subprocess.run(["ffprobe", "-v", "error", "-select_streams", "a:0", "-show_entries",
                            "stream=sample_rate,channels", "-of", "csv=p=0", path],
                           capture_output=True, text=True, check=True).stdout.strip()
    rate, channels = (int(v) for v in probe.split(","))
    raw = subprocess.run(["ffmpeg", "-v", "error", "-i", path, "-vn", "-f", "f32le",
                          "-acodec", "pcm_f32le", "-"], capture_output=True, check=True).stdout
    return np.frombuffer(raw, dtype=np.float32).reshape(-1, channels).T.copy(), rate


def reference_examples(wave: np.ndarray) -> np.ndarray:
    wave = wave.astype(np.float64)
    win, hop, nfft, bands = 400, 160, 512, 64
    n_frames = 1 + (len(wave) - win) // hop
    hann = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(win) / win)  # periodic
    spec = np.stack([np.abs(np.fft.rfft(wave[i * hop:i * hop + win] * hann, nfft))
                     for i in range(n_frames)])

    def mel(hz):
        return 1127.0 * np.log(1.0 + np.asarray(hz) / 700.0)

    bin_mel = mel(np.linspace(0, 8000, nfft // 2 + 1))
    edges = np.linspace(mel(125.0), mel(7500.0), bands + 2)
    matrix = np.zeros((nfft // 2 + 1, bands))
    for b in range(bands):
        lo, mid, hi = edges[b], edges[b + 1], edges[b + 2]
        for k in range(1, nfft // 2 + 1):  # k = 0, the DC bin, stays 0
            matrix[k, b] = max(0.0, min((bin_mel[k] - lo) / (mid - lo),
                                        (hi - bin_mel[k]) / (hi - mid)))
    log_mel = np.log(spec @ matrix + 0.01)
    n_examples = 1 + (n_frames - 96) // 100 if n_frames >= 96 else 0
    return np.stack([log_mel[i * 100:i * 100 + 96] for i in range(n_examples)])


@pytest.fixture(scope="module")
def real_audio_16k() -> np.ndarray:
    if shutil.which("ffmpeg") is None:
        pytest.skip("ffmpeg not installed")
    samples, rate = decode_audio_ffmpeg(CLIP)
    assert samples.shape[0] == 6 and rate == 48000
    return to_mono_16k(samples, rate)


def test_log_mel_matches_reference_on_real_audio(real_audio_16k):
    wave = real_audio_16k
    assert wave.dtype == np.float32 and abs(len(wave) - 5.312 * 16000) <= 2
    want = reference_examples(wave)
    got = logmel.waveform_to_examples(wave).numpy()
    assert got.shape == want.shape == (5, 96, 64)
    assert np.abs(got - want).max() < 1e-4  # float32 FFT vs float64, in log units
    assert got.std() > 0.5 and got.max() > -2.0  # real sound, not silence at log(0.01) = -4.6


def test_mel_matrix_has_no_dc_and_triangles_sum_reasonably():
    m = logmel.mel_matrix()
    assert m.shape == (257, 64)
    assert np.all(m[0] == 0) and np.all(m >= 0) and np.all(m <= 1)
    assert np.all(m.max(axis=0) > 0)  # every band catches at least one bin


@pytest.mark.parametrize("n", [0, 399, 400, 15839, 15840, 15999, 16000, 16000 * 3, 16000 * 3 + 159,
                               16000 * 60 + 7])
def test_example_count_follows_reference_framing(n):
    frames = 1 + (n - 400) // 160 if n >= 400 else 0
    examples = 1 + (frames - 96) // 100 if frames >= 96 else 0
    wave = np.random.default_rng(n).standard_normal(n).astype(np.float32) * 0.1
    out = logmel.waveform_to_examples(wave)
    assert logmel.num_examples(n) == examples == out.shape[0]
    assert out.shape[1:] == (96, 64) and out.dtype == torch.float32


def test_examples_one_per_second():
    # 96 whole windows (400 + 95 * 160 samples, 0.975 s) make the first example;
    # each further second one more.
    assert logmel.num_examples(15600) == 1 and logmel.num_examples(15599) == 0
    assert logmel.num_examples(16000 * 10) == 10


@pytest.mark.parametrize("rate", [44100, 48000, 22050, 8000])
def test_resampler_keeps_tone_frequency_and_amplitude(rate):
    freq, amp = 1000.0, 0.5
    t = np.arange(int(rate * 1.5)) / rate
    tone = (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)
    out = to_mono_16k(tone[None, :], rate)
    assert out.dtype == np.float32
    assert abs(len(out) - 1.5 * 16000) <= 1
    middle = out[4000:20000]  # away from the filter's edge effects; exactly 1 s
    spectrum = np.abs(np.fft.rfft(middle * np.hanning(len(middle))))
    assert abs(np.argmax(spectrum) * 16000 / len(middle) - freq) <= 1.0
    assert abs(np.abs(middle).max() - amp) < 0.01
    assert abs(np.sqrt(np.mean(middle ** 2)) - amp / np.sqrt(2)) < 0.005


def test_resampler_averages_channels():
    rate = 48000
    t = np.arange(rate) / rate
    tone = np.sin(2 * np.pi * 440 * t)
    six = np.stack([tone * g for g in (1.0, 0.5, 0.0, 0.2, 0.3, 0.0)]).astype(np.float32)
    out = to_mono_16k(six, rate)
    single = to_mono_16k(tone[None, :].astype(np.float32) * 2.0 / 6.0, rate)
    assert np.allclose(out, single, atol=1e-5)
    assert abs(np.abs(out[2000:14000]).max() - 2.0 / 6.0) < 0.01


def test_resampler_passes_16k_through():
    x = np.random.default_rng(0).standard_normal((2, 1000)).astype(np.float32)
    assert np.array_equal(to_mono_16k(x, 16000), x.mean(axis=0))


def _sound_at(rate: int) -> np.ndarray:
    """Big Buck Bunny's soundtrack, mono float64, resampled by ffmpeg to `rate` Hz."""
    raw = subprocess.run(["ffmpeg", "-v", "error", "-i", CLIP, "-vn", "-ac", "1", "-ar", str(rate),
                          "-f", "f64le", "-"], capture_output=True, check=True).stdout
    return np.frombuffer(raw, dtype=np.float64)


# The three ways of computing the sums: FFT (48k, 96k, 8k, 32k), one matrix product
# per block (44.1k, 22.05k, 11.025k, 88.2k), phase by phase (44.056k: 2,000 phases).
@pytest.mark.parametrize("rate", [8000, 11025, 22050, 32000, 44056, 44100, 48000, 88200, 96000])
def test_resampler_equals_resampy_on_real_sound(rate):
    import resampy

    sound = _sound_at(rate)
    assert np.abs(sound).max() > 0.05
    expected = resampy.resample(sound, rate, 16000)
    ours = resample_to_16k(sound, rate)
    assert len(ours) == len(expected)
    np.testing.assert_allclose(ours, expected, atol=1e-9, rtol=0)
    # float32 in, float32 out, still within the contract's 1e-4.
    ours32 = resample_to_16k(sound.astype(np.float32), rate)
    assert ours32.dtype == np.float32
    np.testing.assert_allclose(ours32, expected, atol=1e-5, rtol=0)


@pytest.mark.parametrize("n", [3, 50, 301, 1000])
def test_resampler_equals_resampy_on_inputs_shorter_than_its_filter(n):
    import resampy

    sound = _sound_at(48000)[40000:40000 + n]
    for rate in (48000, 44100):
        np.testing.assert_allclose(resample_to_16k(sound, rate), resampy.resample(sound, rate, 16000),
                                   atol=1e-9, rtol=0)
