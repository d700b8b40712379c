"""Commands of the model stage."""
from __future__ import annotations

import argparse


def add_commands(commands: argparse._SubParsersAction) -> None:
    """Land with the model issue; nothing is registered until they work."""
