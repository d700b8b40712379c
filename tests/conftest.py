"""Shared fixtures: the repository root, a runner for `python pipeline.py`, real sample clips.

The fixtures of the helper modules listed in `pytest_plugins` (clips made with ffmpeg,
a loopback HTTP mirror) are registered here for every test module: a test asks for
them by name and imports nothing."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
from dataclasses import dataclass

import pytest

from yt8m.samples import sample_clip_dir

pytest_plugins = ["media", "http_mirror"]

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_pipeline(*args: str, timeout: float = 600, env: dict | None = None,
                 cwd: str | None = None) -> subprocess.CompletedProcess:
    """Run `python pipeline.py ARGS` in a real subprocess and capture its output."""
    full_env = dict(os.environ, PYTHONUNBUFFERED="1")
    full_env.update(env or {})
    return subprocess.run([sys.executable, os.path.join(ROOT, "pipeline.py"), *args],
                          capture_output=True, text=True, timeout=timeout, env=full_env,
                          cwd=cwd or ROOT)


# The child's peak memory is read by a small Python between the test and the child: a
# process forked from pytest inherits pytest's peak (ru_maxrss survives fork and exec, and
# pytest holds gigabytes late in the suite), one forked from this small process does not.
_MEASURE = """
import os, resource, signal, subprocess, sys
code = subprocess.call(sys.argv[2:])
with open(sys.argv[1], "w") as f:
    f.write(str(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss))
if code < 0:  # die by the child's signal, so the caller sees it
    signal.signal(-code, signal.SIG_DFL)
    os.kill(os.getpid(), -code)
sys.exit(code)
"""


@dataclass
class Measured:
    returncode: int  # negative: killed by that signal
    stdout: str
    stderr: str
    peak_rss_mb: float  # the child's own


def run_measured(argv: list[str], timeout: float = 300, cwd: str | None = None) -> Measured:
    """`python ARGV` in a real subprocess: its exit status, output and own peak memory.
    A run past `timeout` (a hang) fails the test."""
    with tempfile.TemporaryDirectory() as tmp:
        peak = os.path.join(tmp, "peak")
        with open(os.path.join(tmp, "out"), "w+") as out, open(os.path.join(tmp, "err"), "w+") as err:
            proc = subprocess.Popen([sys.executable, "-c", _MEASURE, peak, sys.executable, *argv],
                                    stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                                    cwd=cwd or ROOT, start_new_session=True,
                                    env=dict(os.environ, PYTHONUNBUFFERED="1"))
            try:
                code = proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
                err.seek(0)
                pytest.fail(f"{' '.join(argv)} still running after {timeout} s (a hang): "
                            f"{err.read()[-2000:]}")
            out.seek(0)
            err.seek(0)
            with open(peak) as f:
                return Measured(code, out.read(), err.read(), int(f.read()) / 1024)


@pytest.fixture
def pipeline():
    return run_pipeline


@pytest.fixture(scope="session")
def sample_clips() -> dict[str, str]:
    d = sample_clip_dir()
    return {name[:-4]: os.path.join(d, name) for name in os.listdir(d) if name.endswith(".mp4")}
