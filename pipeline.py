#!/usr/bin/env python3
"""Raw video -> YouTube-8M features -> NeXtVLAD -> labels. One command line for all of it.

Each package adds its own subcommands; this file only parses and maps expected
failures to exit codes (docs/reference.md, "Exit codes"): 0 ok, 2 bad usage/configuration, 3 some
inputs rejected.
"""
from __future__ import annotations

import argparse
import sys

from extract import cli as extract_cli
from model.apps import cli as model_cli
from model.apps import inference_cli
from yt8m import cli as yt8m_cli
from yt8m.errors import EXIT_USAGE, UsageError


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # argparse's default exit code is 2 as well
        self.print_usage(sys.stderr)
        print(f"{self.prog}: error: {message}\nRun `{self.prog} --help` for the options.",
              file=sys.stderr)
        sys.exit(EXIT_USAGE)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="pipeline.py", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND",
                                     parser_class=_Parser)
    for module in (extract_cli, yt8m_cli, model_cli, inference_cli):
        module.add_commands(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except UsageError as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("interrupted; finished shards are kept and a rerun resumes", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
