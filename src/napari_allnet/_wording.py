"""Messages in a widget's own words: command-line flags become the widget's field names.

Core code speaks to the command line ("use --folds 8", "continue with
``allnet train ... --resume``"); the core messages stay as they are and a widget
translates them with :func:`in_field_words` and its own flag-to-label mapping.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

__all__ = ["in_field_words"]

_FLAG = r"--([a-z][a-z0-9-]*)"
#: "`allnet train ... --out RUN --resume`": the whole command line.
_COMMAND = re.compile(r"(?:with )?`?allnet [a-z]+ [^`\n]*?--resume`?")
#: "use --folds 8", "try --split image": set a field to a value.
_SET = re.compile(r"\b(?:use|try) `?" + _FLAG + r" ([^\s`,;)]+)`?")
#: "with --resume": a tick box.
_WITH_TICK = re.compile(r"\bwith `?" + _FLAG + r"`?")
#: "without --profile": keep the value the run was started with.
_WITHOUT = re.compile(r"\bwithout `?" + _FLAG + r"`?")
#: "another --out": another value of a field.
_ANOTHER = re.compile(r"\banother `?" + _FLAG + r"`?")
_ANY = re.compile(r"`?" + _FLAG + r"`?")


def in_field_words(text: str, labels: Mapping[str, str], ticks: tuple[str, ...] = ()) -> str:
    """``text`` with the command-line flags in ``labels`` replaced by field names.

    Parameters
    ----------
    text : str
        A message, e.g. from core code.
    labels : mapping
        ``{flag without dashes: field label}``, e.g. ``{"folds": "folds", "out": "run
        folder"}``. Flags not in it are left as they are.
    ticks : tuple of str
        Flags that are tick boxes in the widget (e.g. ``("resume",)``).

    Examples
    --------
    >>> in_field_words("too few subjects; use --folds 3", {"folds": "folds"})
    "too few subjects; set 'folds' to 3"
    >>> in_field_words("continue it with --resume or choose another --out",
    ...                {"resume": "resume", "out": "run folder"}, ticks=("resume",))
    "continue it with 'resume' ticked or choose another 'run folder'"
    """
    def label(match: re.Match) -> str | None:
        return labels.get(match.group(1))

    def sub(pattern: re.Pattern, make) -> None:
        nonlocal text
        text = pattern.sub(lambda m: make(m, label(m)) if label(m) else m.group(0), text)

    if "resume" in labels:
        text = _COMMAND.sub(f": tick '{labels['resume']}' and press Start again", text)
        text = text.replace(" : tick", ": tick")
    sub(_SET, lambda m, name: f"set '{name}' to {m.group(2)}")
    sub(_WITH_TICK, lambda m, name: (f"with '{name}' ticked" if m.group(1) in ticks
                                     else f"with '{name}'"))
    sub(_WITHOUT, lambda m, name: f"with the run's own '{name}'")
    sub(_ANOTHER, lambda m, name: f"another '{name}'")
    sub(_ANY, lambda m, name: f"'{name}'")
    return text
