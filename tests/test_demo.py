"""The README's main command: the whole chain on the bundled real clips."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from conftest import ROOT


@pytest.mark.slow
def test_demo_runs_extract_train_classify_end_to_end(tmp_path):
    out = tmp_path / "demo"
    result = subprocess.run([sys.executable, "-m", "demo", "--out", str(out)], cwd=ROOT,
                            capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    # Offline the demo must say plainly that it runs on random weights.
    assert "--random-weights" in result.stdout and "random weights" in result.stdout
    assert any(p.endswith(".h5") for p in os.listdir(out / "features"))
    assert (out / "runs" / "latest").exists()
    assert "classify the held-out clip" in result.stdout and "1. " in result.stdout
