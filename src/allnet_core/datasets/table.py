"""The one normalisation of "a dataset": a folder or a table, as training and evaluation take it."""

from __future__ import annotations

import os
from collections.abc import Mapping

import pandas as pd

from allnet_core.errors import DatasetError

__all__ = ["as_table"]


def as_table(dataset: str | os.PathLike | pd.DataFrame,
             classes: Mapping[str, str] | str | None = None,
             require_both_classes: bool = True) -> tuple[pd.DataFrame, bool]:
    """``(table, verified)`` for a dataset folder or a table of ``path, label, subject``.

    A folder is read with :func:`~allnet_core.datasets.discover` (every file decoded once,
    so ``verified`` is True), with its ``classes`` (a class mapping for other folder names)
    and ``require_both_classes`` (False for evaluation); a DataFrame is copied and not
    re-checked (``verified`` is False). Paths become strings, labels upper case, subjects
    lower case (C-NMC subject ids are case-insensitive).

    Raises
    ------
    DatasetError
        If the table lacks one of the columns ``path``, ``label``, ``subject``, or the
        folder has errors (see :func:`~allnet_core.datasets.discover`).
    """
    if isinstance(dataset, pd.DataFrame):
        table, verified = dataset.copy(), False
    else:
        from allnet_core.datasets.scanning import discover

        table = discover(dataset, classes=classes, require_both_classes=require_both_classes)
        verified = True
    missing = {"path", "label", "subject"} - set(table.columns)
    if missing:
        raise DatasetError(f"dataset table lacks column(s) {sorted(missing)}")
    table = table.reset_index(drop=True)
    table["path"] = table["path"].astype(str)
    table["label"] = table["label"].astype(str).str.upper()
    table["subject"] = table["subject"].astype(str).str.lower()
    return table, verified
