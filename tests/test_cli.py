"""The command line as a user meets it: help everywhere, exit 2 without a traceback."""
from __future__ import annotations

import argparse

import pytest

from conftest import run_pipeline


def subcommands() -> list[str]:
    from pipeline import build_parser
    action = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return sorted(action.choices)


def test_top_level_help_lists_every_command():
    result = run_pipeline("--help")
    assert result.returncode == 0 and "usage: pipeline.py" in result.stdout
    assert subcommands() and all(c in result.stdout for c in subcommands())


@pytest.mark.parametrize("command", subcommands())
def test_every_subcommand_has_help(command):
    result = run_pipeline(command, "--help")
    assert result.returncode == 0, result.stderr
    assert f"pipeline.py {command}" in result.stdout


@pytest.mark.parametrize("args", [["--no-such-flag"], ["no-such-command"]]
                         + [[c, "--no-such-flag"] for c in subcommands()])
def test_bad_usage_exits_2_without_traceback(args):
    result = run_pipeline(*args)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr and "error:" in result.stderr
