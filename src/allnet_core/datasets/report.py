"""What a dataset check found: :class:`Problem` and :class:`DatasetReport`.

Problems are collected, never raised one by one; :meth:`DatasetReport.raise_if_errors`
raises one :class:`~allnet_core.errors.DatasetError` listing every error.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from allnet_core.errors import DatasetError

__all__ = ["DatasetReport", "Problem"]


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a dataset: ``severity`` is ``"error"`` or ``"warning"``."""

    severity: str
    message: str
    path: str = ""

    def __str__(self) -> str:
        where = f"{self.path}: " if self.path else ""
        return f"{self.severity}: {where}{self.message}"


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
        """Raise one :class:`DatasetError` naming every error, if there is any."""
        errs = self.errors
        if errs:
            shown = "\n  ".join(str(p) for p in errs[:20])
            more = f"\n  ... and {len(errs) - 20} more" if len(errs) > 20 else ""
            raise DatasetError(f"dataset {self.root} has {len(errs)} error(s):\n  {shown}{more}")

    def summary(self) -> str:
        """Human-readable counts per class, fold and subject, then the problems."""
        t = self.table
        lines = [f"Dataset: {self.root}", f"Images: {len(t)}"]
        if len(t):
            by_class = t["label"].replace("", "(none)").value_counts().sort_index()
            lines.append("Per class: " + ", ".join(f"{k} {v}" for k, v in by_class.items()))
            folds = t["fold"].replace("", "(none)").value_counts().sort_index()
            lines.append("Per fold: " + ", ".join(f"{k} {v}" for k, v in folds.items()))
            subj = t.groupby("subject")["label"].agg(["size", lambda s: "/".join(sorted(set(s)))])
            subj.columns = ["images", "labels"]
            lines.append(f"Subjects: {len(subj)}")
            for sid, row in subj.sort_index().iterrows():
                lines.append(f"  {sid:>10}  {row['labels']:<8} {row['images']}")
        if self.problems:
            lines.append(f"Problems: {len(self.errors)} error(s), {len(self.warnings)} warning(s)")
            lines.extend(f"  {p}" for p in self.problems)
        else:
            lines.append("Problems: none")
        return "\n".join(lines)
