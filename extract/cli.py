"""Commands of the extraction stage (extract, fit-pca, download)."""
from __future__ import annotations

import argparse


def add_commands(commands: argparse._SubParsersAction) -> None:
    """Land with the extraction issue; nothing is registered until they work."""
