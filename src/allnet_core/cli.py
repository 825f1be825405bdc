"""The ``allnet`` command line.

Each command group lives in a module of :mod:`allnet_core._cli` with two functions:
``register(subparsers)`` adds its parser (and sets ``func``), and the function it sets runs
the command. Command modules import nothing heavy at import time, so ``allnet --help``
starts fast and never loads Keras.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from allnet_core import __version__
from allnet_core.errors import AllnetError, describe_os_error

__all__ = ["build_parser", "main"]

#: Command modules under ``allnet_core._cli``, in the order ``--help`` lists them.
COMMAND_MODULES = ("data", "train", "augment", "classify", "segment", "model")


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
    """Run the ``allnet`` command line; returns the exit code.

    A user's mistake (an :class:`~allnet_core.errors.AllnetError` or an operating-system
    error such as a read-only or full output folder) is one line on stderr and exit code
    2; Ctrl-C is 130; a closed pipe (``allnet data check X | head``) ends quietly.
    """
    parser = build_parser()
    argv = sys.argv[1:] if argv is None else argv
    if not argv:  # a bare ``allnet``: the command list, not a usage error
        parser.print_help()
        return 0
    args = parser.parse_args(argv)
    code = 0
    try:
        code = int(args.func(args) or 0)
        sys.stdout.flush()  # a reader gone before the last buffered line: caught here
        return code
    except AllnetError as exc:
        print(f"allnet: error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        _silence_stdout()
        return code
    except OSError as exc:
        print(f"allnet: error: {describe_os_error(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("allnet: interrupted", file=sys.stderr)
        return 130


def _silence_stdout() -> None:
    """After a closed pipe, point stdout at devnull so Python's exit flush stays quiet."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):  # stdout without a file descriptor (tests)
        pass


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
