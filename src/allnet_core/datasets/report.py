"""What a dataset check found: :class:`Problem` and :class:`DatasetReport`.

Problems are collected, never raised one by one; :meth:`DatasetReport.raise_if_errors`
raises one :class:`~allnet_core.errors.DatasetError` listing every error. Problems with
the same message (e.g. every file of an unknown class folder) are shown as one line with
their count and a few example paths (:func:`group_problems`).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from allnet_core.errors import DatasetError

__all__ = ["DEFAULT_EXAMPLES", "DatasetReport", "Problem", "group_problems"]

#: How many example paths a grouped problem shows by default.
DEFAULT_EXAMPLES = 3
#: Subject ids of images that have no subject and stand for themselves: ``img:<path>``.
OWN_SUBJECT_PREFIX = "img:"


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a dataset: ``severity`` is ``"error"`` or ``"warning"``."""

    severity: str
    message: str
    path: str = ""

    def __str__(self) -> str:
        where = f"{self.path}: " if self.path else ""
        return f"{self.severity}: {where}{self.message}"


def _short(path: str, root: Path | None) -> str:
    """``path`` relative to ``root`` when it lies below it."""
    if root is not None and path:
        try:
            return Path(path).relative_to(root).as_posix()
        except ValueError:
            pass
    return path


def group_problems(problems: list[Problem], show: int = DEFAULT_EXAMPLES,
                   root: Path | None = None) -> list[str]:
    """One line per distinct problem: a lone problem as ``str(problem)``, a repeated one
    as ``"error: unknown class folder 'blast' (...): 120 files, e.g. blast/a.bmp, ..."``.

    Parameters
    ----------
    problems : list of Problem
        In the order found; groups keep the order of their first problem.
    show : int
        Example paths per group (0: counts only).
    root : path, optional
        Example paths are shown relative to it.
    """
    if show < 0:
        raise ValueError(f"show must be >= 0, got {show}")
    groups: dict[tuple[str, str], list[str]] = defaultdict(list)
    for p in problems:
        groups[(p.severity, p.message)].append(p.path)
    lines = []
    for (severity, message), paths in groups.items():
        if len(paths) == 1:
            lines.append(str(Problem(severity, message, paths[0])))
            continue
        examples = [_short(path, root) for path in paths[:show] if path]
        more = f", e.g. {', '.join(examples)}" if examples else ""
        lines.append(f"{severity}: {message}: {len(paths)} files{more}")
    return lines


@dataclass
class DatasetReport:
    """What :func:`scan` found under ``root``: the table and the problems."""

    root: Path
    table: pd.DataFrame
    problems: list[Problem] = field(default_factory=list)

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "error"]

    @property
    def warnings(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "warning"]

    def raise_if_errors(self) -> None:
        """Raise one :class:`DatasetError` naming every error, if there is any (repeated
        errors grouped, see :func:`group_problems`)."""
        errs = self.errors
        if errs:
            lines = group_problems(errs, root=self.root)
            shown = "\n  ".join(lines[:20])
            more = f"\n  ... and {len(lines) - 20} more" if len(lines) > 20 else ""
            raise DatasetError(f"dataset {self.root} has {len(errs)} error(s):\n  {shown}{more}")

    def summary(self, show: int = DEFAULT_EXAMPLES) -> str:
        """Human-readable counts per class, fold and subject, then the problems, grouped
        with ``show`` example paths each (see :func:`group_problems`)."""
        t = self.table
        lines = [f"Dataset: {self.root}", f"Images: {len(t)}"]
        if len(t):
            by_class = t["label"].replace("", "(none)").value_counts().sort_index()
            lines.append("Per class: " + ", ".join(f"{k} {v}" for k, v in by_class.items()))
            folds = t["fold"].replace("", "(none)").value_counts().sort_index()
            lines.append("Per fold: " + ", ".join(f"{k} {v}" for k, v in folds.items()))
            own = t["subject"].str.startswith(OWN_SUBJECT_PREFIX)
            subj = t[~own].groupby("subject")["label"].agg(
                ["size", lambda s: "/".join(sorted(set(s)))])
            subj.columns = ["images", "labels"]
            lines.append(f"Subjects: {len(subj) + int(own.sum())}")
            for sid, row in subj.sort_index().iterrows():
                lines.append(f"  {sid:>10}  {row['labels']:<8} {row['images']}")
            if own.any():  # one line, not one per image
                per_class = t[own]["label"].value_counts().sort_index()
                lines.append(f"  {int(own.sum())} image(s) without a subject, each its own ("
                             + ", ".join(f"{k} {v}" for k, v in per_class.items()) + ")")
        if self.problems:
            lines.append(f"Problems: {len(self.errors)} error(s), {len(self.warnings)} warning(s)")
            lines.extend(f"  {line}" for line in group_problems(self.problems, show, self.root))
        else:
            lines.append("Problems: none")
        return "\n".join(lines)
