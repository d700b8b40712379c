"""Decoding: which frame is taken for each second, audio, and bad inputs (extract/decode/).

Frames are checked against ffmpeg's own decoder (an independent reference): the frame
open_video's reader returns for second k must be the frame ffmpeg shows at t = k.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import tempfile

import numpy as np
import pytest

from extract import decode
from extract.resample import to_mono_16k
from media import BAD, GOOD, ffmpeg_frames, ffprobe_pts, make_unreadable
from yt8m.errors import RejectedInput

# ---------------------------------------------------------------- the frame-count rule

def test_frame_count_is_whole_seconds_before_the_end():
    assert decode.frame_count(5.28) == 6  # t = 0..5
    assert decode.frame_count(10.0) == 10  # t = 10 is not < 10
    assert decode.frame_count(10.0000002) == 10  # float32 timestamps: 0.1 ms tolerance
    assert decode.frame_count(4.004) == 5
    assert decode.frame_count(0.04) == 1
    assert decode.frame_count(0.0) == 0
    assert decode.frame_count(420.0, max_frames=300) == 300


def test_frame_indices_use_timestamps_not_frame_rate():
    # 29.97 fps, 4.004 s: second k is frame floor(k * 29.97) (largest start <= k).
    starts = np.arange(120) * 1001 / 30000
    idx, duration = decode.frame_indices(starts, starts + 1001 / 30000)
    assert duration == pytest.approx(4.004)
    assert idx.tolist() == [0, 29, 59, 89, 119]
    # Variable frame rate: nothing between 0.9 s and 2.5 s -> seconds 1 and 2 show frame 9.
    starts = np.array([0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 2.5, 3.0, 3.5])
    idx, duration = decode.frame_indices(starts, np.append(starts[1:], 4.0))
    assert duration == pytest.approx(4.0)
    assert idx.tolist() == [0, 9, 9, 11]
    # A stream starting at 0.021 s (Matroska) still has its first frame at t = 0.
    starts = 0.021 + np.arange(50) * 0.04
    idx, _ = decode.frame_indices(starts, starts + 0.04)
    assert idx.tolist() == [0, 25]
    # A frame exactly at t = 1 s (float32 round-off below it) is the one shown at 1 s.
    starts = np.array([0.0, 0.99999994, 1.5])
    idx, _ = decode.frame_indices(starts, np.append(starts[1:], 2.0))
    assert idx.tolist() == [0, 1]


# ---------------------------------------------------------------- real clips

@pytest.mark.parametrize("name", sorted(GOOD))
def test_frame_counts_of_real_clips(good_clips, name):
    info = decode.open_video(good_clips[name]).info
    assert info.n_frames == GOOD[name].frames
    # The same rule applied to ffprobe's timestamps of the same file.
    pts = ffprobe_pts(good_clips[name])
    assert len(pts) == info.stream_frames
    step = np.median(np.diff(pts))
    assert decode.frame_count(pts[-1] + step - pts[0]) == GOOD[name].frames


@pytest.mark.parametrize("name", ["ntsc_29_97", "vfr", "rotated", "vp9", "mkv", "avi",
                                  "no_audio"])
def test_frames_are_the_ones_ffmpeg_shows_at_each_second(good_clips, name):
    path = good_clips[name]
    video = decode.open_video(path)
    # Chunks of 2 frames: the reader seeks between chunks, which must not shift frames.
    ours = np.concatenate(list(video.chunks(chunk_frames=2)))
    h, w = ours.shape[1:3]
    # ffmpeg applies the display matrix (autorotate) by default: shapes must agree.
    reference = ffmpeg_frames(path, w, h)
    pts = ffprobe_pts(path)
    assert len(reference) == len(pts)
    t = np.arange(len(ours)) + 1e-4
    expected = np.searchsorted(pts - pts[0], t, side="right") - 1
    for k, frame in enumerate(ours):
        errors = np.abs(reference.astype(np.int16) - frame).mean(axis=(1, 2, 3))
        # Same picture as ffmpeg's (colour conversion may differ by a grey level)...
        assert errors[expected[k]] < 2.0, (k, errors[expected[k]])
        # ...and no other frame is closer, unless it is identical (a repeated frame).
        assert errors.min() >= errors[expected[k]] - 0.5, (k, int(errors.argmin()), expected[k])


def test_rotated_clip_comes_out_upright(good_clips):
    info = decode.open_video(good_clips["rotated"]).info
    # Stored 160x90 (landscape) with a 90-degree display matrix: shown as 90x160.
    assert (info.width, info.height) == (90, 160)


def test_vfr_gap_repeats_the_last_frame_before_it(good_clips):
    info = decode.open_video(good_clips["vfr"]).info
    pts = ffprobe_pts(good_clips["vfr"])
    assert pts[info.indices[1]] < 1.0 and pts[info.indices[2]] < 1.0  # the gap is 1.0-2.5 s
    assert info.indices[1] == info.indices[2]
    assert 2.5 <= pts[info.indices[3]] <= 3.0


def test_chunks_are_bounded_and_in_order(good_clips):
    path = good_clips["h264_720p_6ch"]
    video = decode.open_video(path)
    frame_bytes = video.info.width * video.info.height * 3
    chunks = list(video.chunks(chunk_bytes=2 * frame_bytes + 1))
    assert [len(c) for c in chunks] == [2, 2, 2]
    whole = decode.read_frames(path)
    np.testing.assert_array_equal(np.concatenate(chunks), whole)
    assert whole.dtype == np.uint8 and whole.shape == (6, 720, 1280, 3)


def _ffmpeg_audio(path: str) -> tuple[np.ndarray, int]:
    """All channels at the native rate, decoded by ffmpeg: float32 [channels, n], rate."""
    probe = subprocess.run(["ffprobe", "-v", "error", "-select_streams", "a:0", "-show_entries",
                            "stream=sample_rate,channels", "-of", "csv=p=0", path],
                           capture_output=True, text=True, check=True).stdout.strip()
    rate, channels = (int(x) for x in probe.split(","))
    raw = subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-i", path, "-map", "0:a:0",
                          "-f", "f32le", "-"], capture_output=True, check=True).stdout
    return np.frombuffer(raw, np.float32).reshape(-1, channels).T, rate


@pytest.mark.parametrize("name", ["h264_720p_6ch", "avi", "mkv"])
def test_audio_is_all_channels_at_native_rate_then_mono_16k(good_clips, name):
    path = good_clips[name]
    ours = decode.read_audio(path)
    samples, rate = _ffmpeg_audio(path)
    expected = to_mono_16k(samples, rate)
    assert rate in (48000, 22050, 44100)
    assert abs(len(ours) - len(expected)) <= 16000 * 0.05  # decoders may pad the last packet
    n = min(len(ours), len(expected)) - 2000  # ignore the resampler's edge at the end
    assert np.abs(ours[:n] - expected[:n]).max() < 1e-3
    assert np.abs(ours).max() > 0.01  # real sound, not silence


def test_no_audio_track_gives_none(good_clips):
    assert decode.read_audio(good_clips["no_audio"]) is None


def test_audio_is_cut_at_max_seconds(good_clips):
    audio = decode.read_audio(good_clips["h264_720p_6ch"], max_seconds=2)
    assert abs(len(audio) - 32000) <= 1


# ---------------------------------------------------------------- bad inputs

@pytest.mark.parametrize("name", sorted(BAD))
def test_bad_inputs_are_rejected_with_a_specific_reason(bad_clips, name):
    with pytest.raises(RejectedInput) as e:
        decode.open_video(bad_clips[name], name=name)
    assert e.value.name == name
    assert BAD[name] in e.value.reason, e.value.reason


def _reason_as_nobody(path: str) -> str:
    """decode.check_file(path) in a forked child that dropped root: its rejection reason."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: become nobody, try, report, exit without cleanup
        try:
            os.setgid(65534)
            os.setuid(65534)
            decode.check_file(path, "locked.mp4")
            os.write(write, b"accepted")
        except RejectedInput as e:
            os.write(write, e.reason.encode())
        finally:
            os._exit(0)
    os.close(write)
    with os.fdopen(read, "rb") as f:
        reason = f.read().decode()
    os.waitpid(pid, 0)
    return reason


def test_unreadable_file_is_rejected(tmp_path_factory):
    d = tempfile.mkdtemp(prefix="yt8m-locked-")  # under /tmp: other users can traverse it
    try:
        path = make_unreadable(d)
        if os.geteuid() != 0:
            with pytest.raises(RejectedInput, match="permission denied"):
                decode.open_video(path)
        else:  # root reads mode-000 files; check as an ordinary user instead
            assert "permission denied" in _reason_as_nobody(path)
            decode.check_file(path)  # and root itself may read it
    finally:
        os.chmod(os.path.join(d, "locked.mp4"), 0o600)
        shutil.rmtree(d)


@pytest.mark.slow
def test_seven_minute_clip_is_capped_and_streamed(long_clip):
    video = decode.open_video(long_clip)
    info = video.info
    assert info.duration == pytest.approx(420, abs=0.5)  # stream copy cuts at a frame
    assert info.n_frames == 300
    # Its packets are read only as far as the frame rule needs (and its last seconds).
    import av
    with av.open(long_clip) as container:
        total = sum(1 for p in container.demux(video=0) if p.size)
    assert 300 / 420 * total < info.stream_frames < 312 / 420 * total
    info360 = decode.open_video(long_clip, max_frames=360).info
    assert info360.n_frames == 360
    frames = 0
    for chunk in video.chunks(chunk_bytes=1 << 20):
        assert chunk.nbytes <= 1 << 20
        frames += len(chunk)
    assert frames == 300
    audio = decode.read_audio(long_clip, max_seconds=300)
    assert abs(len(audio) - 300 * 16000) <= 1
