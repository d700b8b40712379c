"""Commands for the official YouTube-8M data (import-yt8m, export-tfrecord)."""
from __future__ import annotations

import argparse


def add_commands(commands: argparse._SubParsersAction) -> None:
    """Land with the TFRecord issue; nothing is registered until they work."""
