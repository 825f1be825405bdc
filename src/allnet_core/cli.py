"""The ``allnet`` command line.

Each command group lives in a module of :mod:`allnet_core._cli` with two functions:
``register(subparsers)`` adds its parser (and sets ``func``), and the function it sets runs
the command. Command modules import nothing heavy at import time, so ``allnet --help``
starts fast and never loads Keras.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from allnet_core import __version__
from allnet_core.errors import AllnetError

__all__ = ["build_parser", "main"]

#: Command modules under ``allnet_core._cli``, in the order ``--help`` lists them.
COMMAND_MODULES = ("data", "train", "augment", "classify", "segment")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="allnet",
        description=(
            "Segment white blood cells in blood-smear images and classify single cells as "
            "ALL (leukemic blast) or HEM (healthy) with ALLNet."
        ),
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMAND_MODULES:
        importlib.import_module(f"allnet_core._cli.{name}").register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the ``allnet`` command line; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except AllnetError as exc:
        print(f"allnet: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("allnet: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
