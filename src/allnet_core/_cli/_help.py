"""The help layout of every ``allnet`` command: wrapped prose, examples kept as written.

Only argparse at import time: ``allnet --help`` builds every command's parser.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

#: Help of ``--classes`` (``data check``, ``train``, ``evaluate``): the class mapping of
#: :func:`allnet_core.datasets.parse_class_map`.
CLASSES_HELP = ("class folder names beyond all/hem/blast/normal/...: NAME=ALL,NAME=HEM "
                "(case-insensitive), or a file with one NAME=CLASS per line")


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Text without line breaks (a description) is wrapped to the terminal; text with line
    breaks (an ``examples:`` epilog) is printed line by line, as written.

    :attr:`expansions` maps a placeholder to a function that returns its text; it is
    called only when the help is shown, so text that needs an import (the training
    profiles) costs nothing to ``allnet --help``. Subclass to set it.
    """

    expansions: dict[str, Callable[[], str]] = {}

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        for mark, make in self.expansions.items():
            if mark in text:
                text = text.replace(mark, make())
        if "\n" not in text.strip("\n"):
            return argparse.HelpFormatter._fill_text(self, text, width, indent)
        return super()._fill_text(text, width, indent)


def examples(*lines: str) -> str:
    """An ``examples:`` epilog, one command (with an optional ``# comment``) per line."""
    return "examples:\n" + "".join(f"  {line}\n" for line in lines)
