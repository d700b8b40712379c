"""The PyAV reader (the one tried first), decord taking over where PyAV cannot, and the
audio stream: rotations as ffmpeg shows them, clips decord cannot decode, frames identical
to a plain full decode, only the packets the kept frames need decoded, resampling equal to
resampy, audio decoded only as far as needed."""
from __future__ import annotations

import subprocess

import numpy as np
import pytest

from conftest import run_pipeline
from extract import decode
from extract.decode.audio import RESAMPLE_MARGIN_S, decode_audio
from synthetic.pca import write_random_pca
from yt8m.errors import RejectedInput
from yt8m.samples import sample_clip_dir
from yt8m.store import ShardSet


def ffmpeg(*args: str) -> None:
    subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-y", *args], check=True)


def ffmpeg_frames(path: str) -> np.ndarray:
    """Every frame as ffmpeg shows it (display matrix applied), RGB [N, H, W, 3]."""
    info = subprocess.run(["ffmpeg", "-v", "error", "-i", path, "-frames:v", "1", "-f", "rawvideo",
                           "-pix_fmt", "rgb24", "-"], capture_output=True, check=True).stdout
    probe = subprocess.run(["ffmpeg", "-v", "error", "-i", path, "-frames:v", "1", "-f", "image2pipe",
                            "-vcodec", "ppm", "-"], capture_output=True, check=True).stdout
    w, h = (int(x) for x in probe.split(b"\n")[1].split())
    assert len(info) == w * h * 3
    raw = subprocess.run(["ffmpeg", "-v", "error", "-i", path, "-fps_mode", "passthrough", "-f",
                          "rawvideo", "-pix_fmt", "rgb24", "-"], capture_output=True, check=True).stdout
    return np.frombuffer(raw, np.uint8).reshape(-1, h, w, 3)


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    d = tmp_path_factory.mktemp("paths")
    carphone = f"{sample_clip_dir()}/carphone_pristine.mp4"
    bbb = f"{sample_clip_dir()}/bigbuckbunny.mp4"
    out = {}
    # B-frames (x264's default), then the same stream with each display rotation, as
    # phones write it (ffmpeg 5 turns the `rotate` tag into the display matrix).
    out["bframes"] = str(d / "bframes.mp4")
    ffmpeg("-i", carphone, "-t", "3.5", "-c:v", "libx264", "-bf", "3", "-g", "40", "-an",
           out["bframes"])
    for angle in ("90", "-90", "270", "180"):
        out[f"rot{angle}"] = str(d / f"rot{angle}.mp4")
        ffmpeg("-i", out["bframes"], "-c", "copy", "-metadata:s:v:0", f"rotate={angle}",
               out[f"rot{angle}"])
    # Open GOPs with B-frames across keyframes, and a variable frame rate.
    out["open_gop"] = str(d / "open_gop.mp4")
    ffmpeg("-i", bbb, "-t", "4", "-vf", "scale=320:-2", "-c:v", "libx264", "-x264opts",
           "open_gop=1:keyint=20:bframes=3", "-an", out["open_gop"])
    out["vfr"] = str(d / "vfr.mp4")
    ffmpeg("-i", carphone, "-vf", "select='not(between(t,1.0,2.5))'", "-fps_mode", "vfr",
           "-c:v", "libx264", "-an", out["vfr"])
    # No reordering, so whole groups of pictures and their tails need no decoding: short
    # groups (0.4 s), groups that start at every kept frame (1 s at 25 fps), every frame
    # a keyframe (all-intra), and short groups in MPEG-TS (H.264 in Annex B form).
    # And short groups with B-frames (x264's default).
    for name, container, gop, bframes in (("short_gop", "mp4", 12, 0), ("aligned", "mp4", 25, 0),
                                          ("intra", "mp4", 1, 0), ("short_gop_ts", "ts", 10, 0),
                                          ("short_gop_bframes", "mp4", 12, 3)):
        out[name] = str(d / f"{name}.{container}")
        ffmpeg("-i", bbb, "-t", "4.6", "-vf", "scale=320:-2,fps=25", "-c:v", "libx264", "-bf",
               str(bframes), "-g", str(gop), "-keyint_min", str(gop), "-sc_threshold", "0", "-an",
               out[name])
    # Trimmed by stream copy: the file starts at a keyframe before 1.3 s, and an edit list
    # hides the frames before 1.3 s (decoded as references, never shown).
    out["trimmed"] = str(d / "trimmed.mp4")
    ffmpeg("-ss", "1.3", "-i", out["short_gop_bframes"], "-c", "copy", out["trimmed"])
    # A valid 16x16 H.264 clip (decord returns 6 channels for it).
    out["tiny"] = str(d / "tiny16.mp4")
    ffmpeg("-f", "lavfi", "-i", "testsrc=size=16x16:rate=25", "-t", "3", "-c:v", "libx264",
           "-pix_fmt", "yuv420p", out["tiny"])
    return out


@pytest.mark.parametrize("name", ["rot90", "rot-90", "rot270", "rot180"])
def test_rotated_clips_come_out_as_ffmpeg_shows_them(clips, name):
    video = decode.open_video(clips[name])
    ours = np.concatenate(list(video.chunks(chunk_frames=2)))
    reference = ffmpeg_frames(clips[name])
    assert ours.shape[1:] == reference.shape[1:]
    if name != "rot180":  # stored 176x144, shown portrait
        assert (video.info.width, video.info.height) == (144, 176)
    np.testing.assert_array_equal(ours, reference[video.info.indices])


def test_a_clip_decord_cannot_decode_goes_the_second_way(clips):
    video = decode.open_video(clips["tiny"])
    assert video.decoder == "pyav"
    ours = np.concatenate(list(video.chunks()))
    np.testing.assert_array_equal(ours, ffmpeg_frames(clips["tiny"])[video.info.indices])
    assert len(ours) == 3


@pytest.mark.parametrize("name", ["bframes", "open_gop", "vfr"])
def test_kept_frames_are_exactly_those_of_a_full_decode(clips, name):
    """Skipping unneeded non-reference frames changes none of the kept ones, and the
    second decoder (decord, read in one pass) keeps the same frames."""
    from extract.decode import DecordVideo, check_file

    video = decode.open_video(clips[name])
    assert video.decoder == "pyav"
    ours = np.concatenate(list(video.chunks(chunk_frames=3)))
    np.testing.assert_array_equal(ours, ffmpeg_frames(clips[name])[video.info.indices])
    second = DecordVideo.open(clips[name], 300, name, check_file(clips[name]))
    np.testing.assert_array_equal(second.info.indices, video.info.indices)
    np.testing.assert_array_equal(np.concatenate(list(second.chunks(chunk_frames=64))), ours)
    threaded = decode.open_video(clips[name], frame_threads=True)  # as on a GPU machine
    np.testing.assert_array_equal(np.concatenate(list(threaded.chunks(chunk_frames=3))), ours)


def _packets(path: str) -> list:
    import av

    with av.open(path) as container:
        stream = container.streams.video[0]
        return [(p.is_keyframe, bytes(p), stream.codec_context.extradata)
                for p in container.demux(stream) if p.size]


# Kept frames at 0, 25, 50, 75, 100 of 115: a group of 12 starting at 24 needs 24 and 25,
# and so on (1 + 2 + 3 + 4 + 5); groups of 10 need 1 + 6 + 1 + 6 + 1. With B-frames the
# count depends on the encoder's choices: at most what the frames before need.
@pytest.mark.parametrize("name, decoded", [("short_gop", 15), ("aligned", 5), ("intra", 5),
                                           ("short_gop_ts", 15), ("short_gop_bframes", 40),
                                           ("bframes", 80), ("open_gop", None), ("vfr", None)])
def test_only_the_packets_kept_frames_need_are_decoded(clips, name, decoded):
    """Groups of pictures with no kept frame, and what follows a group's last kept frame,
    are not decoded; the kept frames stay those of a full decode (one thread or frame
    threads). An open GOP's keyframes are no restart points: there, and in a clip with a
    single group, decoding runs on to the last kept frame."""
    reference = ffmpeg_frames(clips[name])
    for threads in (False, True):
        video = decode.open_video(clips[name], frame_threads=threads)
        ours = np.concatenate(list(video.chunks(chunk_frames=2)))
        np.testing.assert_array_equal(ours, reference[video.info.indices])
        if name == "open_gop":
            assert len(video.gops.restarts) == 1  # the first packet only
        elif name in ("aligned", "intra", "short_gop", "short_gop_ts"):
            assert video.decoded_packets == decoded, (video.decoded_packets, len(reference))
        elif decoded is not None:
            assert video.decoded_packets <= decoded < len(reference), video.decoded_packets


def test_a_trimmed_clip_starts_at_its_first_shown_frame(clips):
    """Frames an edit list hides are decoded for reference but are not frames of the
    video: t = 0 is the first frame a player shows, and the duration starts there."""
    reference = ffmpeg_frames(clips["trimmed"])  # what ffmpeg shows: 25 fps from 1.3 s
    video = decode.open_video(clips["trimmed"])
    assert video.info.n_frames == -(-len(reference) // 25)
    np.testing.assert_array_equal(np.concatenate(list(video.chunks())),
                                  reference[video.info.indices])


def test_packets_are_read_far_enough_after_a_long_hidden_start(tmp_path):
    """Reading stops max_frames + 10 s after the first *shown* frame: here the edit list
    hides 14.5 s before it (a 15 s group trimmed by stream copy)."""
    whole, trimmed = str(tmp_path / "whole.mp4"), str(tmp_path / "trimmed.mp4")
    ffmpeg("-f", "lavfi", "-i", "testsrc=size=160x96:rate=25", "-t", "45", "-c:v", "libx264",
           "-bf", "0", "-g", "375", "-keyint_min", "375", "-sc_threshold", "0", whole)
    ffmpeg("-ss", "14.5", "-i", whole, "-c", "copy", trimmed)
    video = decode.open_video(trimmed, max_frames=20)
    assert video.info.n_frames == 20
    reference = ffmpeg_frames(trimmed)
    np.testing.assert_array_equal(np.concatenate(list(video.chunks())),
                                  reference[video.info.indices])


def test_h264_restart_points_are_idr_pictures_only(clips):
    """The packet test behind skipping: IDR access units (MP4's length-prefixed NAL units
    and MPEG-TS's start codes) are restart points, other pictures are not."""
    from extract.decode.packets import _h264_has_idr

    for name in ("short_gop", "short_gop_ts"):
        packets = _packets(clips[name])
        assert [_h264_has_idr(data, extra) for _, data, extra in packets] == \
            [key for key, _, _ in packets]
        assert sum(key for key, _, _ in packets) > 5


def test_decord_takes_over_when_pyav_cannot(clips, monkeypatch):
    from extract.decode import AvVideo, DecoderFailed

    def refuse(path, max_frames, name, *flags):
        raise DecoderFailed(name, "PyAV cannot open it (simulated)")
    monkeypatch.setattr(AvVideo, "open", classmethod(lambda cls, *a: refuse(*a)))
    video = decode.open_video(clips["bframes"])
    assert video.decoder == "decord"
    assert len(np.concatenate(list(video.chunks()))) == video.info.n_frames


def test_neither_decoder_decodes_it(tmp_path):
    bad = tmp_path / "cut.mp4"
    data = open(f"{sample_clip_dir()}/carphone_pristine.mp4", "rb").read()
    bad.write_bytes(data[:3000])
    with pytest.raises(RejectedInput) as e:
        decode.open_video(str(bad), name="cut.mp4")
    assert e.value.name == "cut.mp4" and "truncated" in e.value.reason


@pytest.mark.slow
def test_extract_takes_rotated_and_tiny_clips(clips, tmp_path):
    videos = tmp_path / "videos"
    videos.mkdir()
    for name in ("rot90", "tiny"):
        (videos / f"{name}.mp4").write_bytes(open(clips[name], "rb").read())
    pca = write_random_pca(str(tmp_path / "pca"))
    result = run_pipeline("extract", "--videos", str(videos), "--out", str(tmp_path / "out"),
                          "--random-weights", "--pca-dir", pca, "--quiet", "--workers", "1")
    assert result.returncode == 0, result.stderr
    shards = ShardSet(str(tmp_path / "out"))
    assert sorted(shards.ids) == ["rot90.mp4", "tiny.mp4"]


# ---------------------------------------------------------------- audio

def _recording(tmp_path, rate: int) -> str:
    """Real sound (Big Buck Bunny's soundtrack) as a 16-bit WAV at `rate` Hz, 2 channels."""
    path = str(tmp_path / f"sound_{rate}.wav")
    ffmpeg("-i", f"{sample_clip_dir()}/bigbuckbunny.mp4", "-vn", "-ac", "2", "-ar", str(rate),
           "-c:a", "pcm_s16le", path)
    return path


def _reference(path: str) -> np.ndarray:
    """What the VGGish reference does: int16 / 32768, mean of channels, resampy."""
    import resampy
    from scipy.io import wavfile

    rate, data = wavfile.read(path)
    data = data / 32768.0
    if data.ndim > 1:
        data = data.mean(axis=1)
    return resampy.resample(data, rate, 16000) if rate != 16000 else data


@pytest.mark.parametrize("rate", [8000, 16000, 22050, 44100, 48000])
def test_audio_equals_the_vggish_reference_resampling(tmp_path, rate):
    path = _recording(tmp_path, rate)
    expected = _reference(path)
    ours = decode.read_audio(path)
    assert len(ours) == len(expected)  # the output length, and both ends below
    np.testing.assert_allclose(ours, expected, atol=1e-4, rtol=0)
    assert np.abs(expected).max() > 0.05  # real sound
    # Decoding only the first seconds gives the same samples as the whole track.
    part = decode.read_audio(path, max_seconds=2)
    assert len(part) == 32000
    np.testing.assert_allclose(part, expected[:32000], atol=1e-4, rtol=0)


@pytest.mark.slow
def test_long_many_channel_audio_is_decoded_only_as_far_as_needed(tmp_path):
    path = str(tmp_path / "film.mka")
    # 20 minutes of 6-channel 48 kHz sound at a tiny bitrate.
    ffmpeg("-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000:duration=1200",
           "-af", "pan=5.1|c0=c0|c1=c0|c2=c0|c3=c0|c4=c0|c5=c0", "-c:a", "ac3", "-b:a", "96k", path)
    track = decode_audio(path, max_seconds=10)
    assert track.channels == 6 and track.native_rate == 48000
    assert len(track.samples) == 10 * 16000
    # What was decoded: the 10 s asked for, the resampling margin and one packet.
    assert 10 <= track.decoded_seconds <= 10 + RESAMPLE_MARGIN_S + 0.1
    assert np.abs(track.samples).max() > 0.1


def test_a_file_cut_after_its_index_is_reported_not_shortened(tmp_path):
    """A faststart MP4 (index at the front) cut at 60 %: its index still declares 12 s."""
    whole = str(tmp_path / "whole.mp4")
    ffmpeg("-stream_loop", "2", "-i", f"{sample_clip_dir()}/bigbuckbunny.mp4", "-t", "12",
           "-vf", "scale=320:-2", "-c:v", "libx264", "-c:a", "aac", "-movflags", "+faststart",
           whole)
    data = open(whole, "rb").read()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[:len(data) * 6 // 10])
    assert decode.open_video(whole).info.n_frames == 12
    with pytest.raises(RejectedInput) as e:
        decode.open_video(str(cut), name="cut.mp4")
    assert "truncated" in e.value.reason and "12.0 s" in e.value.reason
    kept = decode.open_video(str(cut), accept_truncated=True)
    assert 5 <= kept.info.n_frames < 12
    assert len(np.concatenate(list(kept.chunks()))) == kept.info.n_frames
    # Also when the frames asked for end long before the cut (the file's end is checked).
    with pytest.raises(RejectedInput) as e:
        decode.open_video(str(cut), max_frames=1, name="cut.mp4")
    assert "truncated" in e.value.reason and "12.0 s" in e.value.reason


def test_audio_comes_from_the_stream_with_sound_and_silence_counts_as_none(tmp_path):
    two = str(tmp_path / "two_audio.mp4")  # a silent default stream, then one with sound
    ffmpeg("-f", "lavfi", "-i", "testsrc=size=64x64:rate=10", "-f", "lavfi", "-i",
           "anullsrc=r=48000:cl=stereo", "-f", "lavfi", "-i", "sine=frequency=300:sample_rate=44100",
           "-t", "3", "-map", "0:v", "-map", "1:a", "-map", "2:a", "-c:v", "libx264", "-c:a", "aac",
           two)
    track = decode_audio(two, 3)
    assert track.native_rate == 44100 and np.abs(track.samples).max() > 0.1
    silent = str(tmp_path / "silent.mp4")
    ffmpeg("-f", "lavfi", "-i", "testsrc=size=64x64:rate=10", "-f", "lavfi", "-i",
           "anullsrc=r=48000:cl=stereo", "-t", "3", "-map", "0:v", "-map", "1:a", "-c:v", "libx264",
           "-c:a", "aac", silent)
    assert decode_audio(silent, 3) is None  # extracted as a video without sound


@pytest.mark.slow
def test_a_file_name_that_is_not_utf8_is_rejected_as_such(tmp_path, clips):
    import json
    import os

    videos = tmp_path / "videos"
    videos.mkdir()
    good = open(clips["tiny"], "rb").read()
    (videos / "good.mp4").write_bytes(good)
    with open(os.path.join(os.fsencode(str(videos)), b"caf\xe9.mp4"), "wb") as f:  # Latin-1
        f.write(good)
    pca = write_random_pca(str(tmp_path / "pca"))
    out = tmp_path / "out"
    result = run_pipeline("extract", "--videos", str(videos), "--out", str(out), "--random-weights",
                          "--pca-dir", pca, "--quiet", "--workers", "1")
    assert result.returncode == 3, result.stderr
    rejected = json.load(open(out / "report-extract.json"))["rejected"]
    assert len(rejected) == 1 and "not valid UTF-8" in rejected[0]["reason"]
    assert "caf" in rejected[0]["input"]
    assert ShardSet(str(out)).ids == ["good.mp4"]


def test_a_stream_whose_frames_grow_mid_way_is_refused(tmp_path):
    """Memory is planned on the first frame's size (and a server checks it against its
    limit): a stream that switches to larger frames later is refused, not decoded."""
    small, large = str(tmp_path / "small.ts"), str(tmp_path / "large.ts")
    for path, size in ((small, "64x64"), (large, "640x480")):
        ffmpeg("-f", "lavfi", "-i", f"testsrc=size={size}:rate=10", "-t", "3", "-c:v", "libx264",
               "-bsf:v", "h264_mp4toannexb", path)
    joined = str(tmp_path / "grows.ts")
    ffmpeg("-i", f"concat:{small}|{large}", "-c", "copy", joined)
    with pytest.raises(RejectedInput) as e:
        video = decode.open_video(joined)
        list(video.chunks())
    assert "frame size changes" in e.value.reason


def test_both_readers_implement_the_reader_interface():
    """AvVideo and DecordVideo are both VideoReaders, and on a clip both decode, they
    agree on which frames are kept and on those frames (within rounding of the colour
    conversion: decord carries its own FFmpeg build)."""
    from extract.decode import AvVideo, DecordVideo, VideoReader, check_file

    clip = f"{sample_clip_dir()}/carphone_pristine.mp4"
    readers = [AvVideo.open(clip, 300, "carphone"),
               DecordVideo.open(clip, 300, "carphone", check_file(clip))]
    frames = []
    for reader in readers:
        assert isinstance(reader, VideoReader), type(reader)
        chunks = list(reader.chunks(chunk_frames=2))
        assert all(c.dtype == np.uint8 and len(c) <= 2 for c in chunks)
        frames.append(np.concatenate(chunks))
        assert frames[-1].shape == (reader.info.n_frames, reader.info.height, reader.info.width, 3)
    assert [r.decoder for r in readers] == ["pyav", "decord"]
    assert not isinstance(readers[0].info, VideoReader)  # the check looks at what is there
    np.testing.assert_array_equal(readers[0].info.indices, readers[1].info.indices)
    assert frames[0].shape == (5, 144, 176, 3)
    difference = np.abs(frames[0].astype(np.int16) - frames[1])
    assert difference.max() <= 2 and difference.mean() < 0.1, (difference.max(), difference.mean())
