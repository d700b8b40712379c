"""A run's metrics: metrics.csv and TensorBoard events, one row per log window or validation."""
from __future__ import annotations

import csv
import os

METRIC_COLUMNS = ["step", "split", "examples", "loss", "lr", "videos_per_s", "data_wait",
                  "gap", "map", "hit_at_1", "perr"]


class MetricsLog:
    """metrics.csv (appended, so a resumed run continues it) and TensorBoard events."""

    def __init__(self, run_dir: str):
        path = os.path.join(run_dir, "metrics.csv")
        new = not os.path.exists(path)
        self._file = open(path, "a", newline="", encoding="utf-8")
        self._csv = csv.DictWriter(self._file, fieldnames=METRIC_COLUMNS)
        if new:
            self._csv.writeheader()
        try:
            from torch.utils.tensorboard import SummaryWriter
            self._tb = SummaryWriter(run_dir)
        except ImportError:  # tensorboard not installed: the CSV still has everything
            self._tb = None

    def row(self, **values) -> None:
        self._csv.writerow({k: values.get(k, "") for k in METRIC_COLUMNS})
        self._file.flush()
        if self._tb is not None:
            for k, v in values.items():
                if k not in ("step", "split", "examples") and isinstance(v, float):
                    self._tb.add_scalar(f"{values['split']}/{k}", v, values["step"])

    def close(self) -> None:
        self._file.close()
        if self._tb is not None:
            self._tb.close()
