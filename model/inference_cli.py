"""Commands that use a trained model on new inputs (classify, predict, serve)."""
from __future__ import annotations

import argparse


def add_commands(commands: argparse._SubParsersAction) -> None:
    """Land with the classify/predict/serve issue; nothing is registered until they work."""
