"""What an extraction job is and how its features are made: the dataclasses the
extraction flags derive from (light: no torch, so `pipeline.py --help` stays fast)."""
from __future__ import annotations

from dataclasses import dataclass, field

from yt8m.assets import DEFAULT_PCA_DIR
from yt8m.cli_util import DEFAULT_FEATURES as DEFAULT_OUT
from yt8m.cli_util import flag_field as _f
from yt8m.representation import DEFAULT_MAX_FRAMES, MAX_FRAMES_LIMIT, check_max_frames

CPU_BATCH, GPU_BATCH = 8, 256  # frames per Inception call when --batch-size is 0
CHUNK_BYTES = 64 << 20  # decoded frames handed out at a time: 10 frames of 1080p, 2 of 4K
VIDEOS_PER_SHARD = 16  # a killed job redoes at most this many


@dataclass
class ExtractConfig:
    """How features are made: backbones, PCA, frames, and the machinery that runs them."""

    max_frames: int = _f(DEFAULT_MAX_FRAMES, f"frames (seconds) per video, at most "
                                             f"{MAX_FRAMES_LIMIT} (YouTube-8M: 300)")
    batch_size: int = _f(0, "frames per Inception call",
                         default_help=f"0: {CPU_BATCH} on CPU, {GPU_BATCH} on GPU")
    workers: int = _f(2, "decoder threads running ahead of inference (0: none)")
    device: str = "auto"
    weights_dir: str | None = _f(None, "folder holding pt_inception-2015-12-05-6726825d.pth and "
                                       "vggish-10086976.pth", default_help="the download cache",
                                 metavar="DIR")
    random_weights: bool = _f(False, "randomly initialised backbones, for smoke tests only; "
                                     "every shard and prediction made from them is marked as such")
    pca_dir: str | None = _f(DEFAULT_PCA_DIR, "mean.npy, eigenvals.npy, eigenvecs.npy, "
                                              "vggish_pca_params.npz (`download` or `fit-pca` "
                                              "fill it)", metavar="DIR")  # None: before PCA
    accept_truncated: bool = _f(False, "keep a video whose decodable frames end well before "
                                       "its declared duration (a cut file), with a warning, "
                                       "instead of rejecting it")
    chunk_bytes: int = CHUNK_BYTES
    # Largest frame the decoder may allocate, in pixels (None: no limit). A server sets its
    # --max-pixels here, so a stream whose frames grow mid-way fails before allocating them.
    max_pixels: int | None = None

    def __post_init__(self) -> None:
        check_max_frames(self.max_frames)


@dataclass
class ExtractJob:
    """Which videos, with which labels, into which folder."""

    videos: str = _f("", "folder of videos (searched recursively)", metavar="DIR")
    out: str = _f(DEFAULT_OUT, "shard folder", metavar="DIR")
    labels: str | None = _f(None, "header `video,labels`; video relative to --videos; labels "
                                  "';'-separated names or ids", metavar="CSV")
    vocabulary: str | None = _f(None, "a vocabulary.csv (YouTube-8M format) every label must "
                                      "exist in", metavar="FILE")
    videos_per_shard: int = _f(VIDEOS_PER_SHARD, "videos per shard file (a killed job redoes at "
                                                 "most this many)")
    shard: str | None = None  # this process's part of the job, I/N
    quiet: bool = False
    config: ExtractConfig = field(default_factory=ExtractConfig)
