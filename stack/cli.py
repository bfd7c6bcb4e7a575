"""The command-line shape the stack's tools share: `python -m stack.<tool> COMMAND ...`, with
the module's docstring as its help."""

from __future__ import annotations

import argparse


def subcommand_parser(
    prog: str, description: str | None
) -> tuple[argparse.ArgumentParser, argparse._SubParsersAction[argparse.ArgumentParser]]:
    """A parser whose first argument names a required command, and the set to add them to."""
    parser = argparse.ArgumentParser(
        prog=prog, description=description, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    return parser, parser.add_subparsers(dest="command", required=True)
