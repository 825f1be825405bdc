"""The call of each cell (ALL, HEM, uncertain, out of scope) and what to count.

A cell is called, in this order:

1. ``out_of_scope`` when its out-of-scope score is above 1: its features lie farther from
   the training cells' than those of 99.5 % of the validation cells (see
   :mod:`allnet_core.model.scope`). The model never saw such a cell; its P(ALL) means
   nothing. Models without a card have no reference and never call this.
2. ``uncertain`` when its calibrated P(ALL) lies strictly inside the uncertain band
   (default :data:`DEFAULT_UNCERTAIN`, 0.35 to 0.65): the model cannot tell.
3. Otherwise the class at the threshold: ALL when P(ALL) >= ``threshold`` (0.5), else HEM.

So with the default band a cell at exactly 0.35 is HEM and one at exactly 0.65 is ALL; a
band ``(0.5, 0.5)`` is empty (no cell is uncertain). The ALL fraction that screening a
patient needs counts the *confident, in-scope* cells only: ``ALL / (ALL + HEM)``, with a
95 % Wilson interval.

Examples
--------
>>> import numpy as np
>>> call_cells(np.array([0.1, 0.35, 0.5, 0.65, 0.9, 0.9]),
...            np.array([0.2, 0.2, 0.2, 0.2, 0.2, 1.5])).tolist()
['HEM', 'HEM', 'uncertain', 'ALL', 'ALL', 'out_of_scope']
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from allnet_core.classes import NEGATIVE_CLASS, POSITIVE_CLASS
from allnet_core.errors import ConfigError

__all__ = [
    "DEFAULT_UNCERTAIN",
    "OUT_OF_SCOPE",
    "SUMMARY_COLUMNS",
    "UNCERTAIN",
    "call_cells",
    "call_counts",
    "check_band",
    "counts_text",
    "summarize_calls",
    "summary_columns",
]

#: Calibrated P(ALL) strictly between these two values is called uncertain.
DEFAULT_UNCERTAIN: tuple[float, float] = (0.35, 0.65)
UNCERTAIN = "uncertain"
OUT_OF_SCOPE = "out_of_scope"
#: Columns of :func:`summarize_calls` after the grouping columns.
SUMMARY_COLUMNS = ["cells", POSITIVE_CLASS, NEGATIVE_CLASS, UNCERTAIN, OUT_OF_SCOPE,
                   "all_fraction", "all_fraction_low", "all_fraction_high"]


def check_band(uncertain: Sequence[float] | None,
               threshold: float = 0.5) -> tuple[float, float]:
    """The uncertain band as ``(low, high)``, checked: ``0 <= low <= threshold <= high <= 1``.

    None means no band (``(threshold, threshold)``).
    """
    if uncertain is None:
        return (float(threshold), float(threshold))
    try:
        low, high = (float(v) for v in uncertain)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"the uncertain band must be two numbers (low, high), got "
                          f"{uncertain!r}") from exc
    if not 0.0 <= low <= threshold <= high <= 1.0:
        raise ConfigError(f"the uncertain band ({low:g}, {high:g}) must hold the threshold "
                          f"{threshold:g} and lie in [0, 1]")
    return (low, high)


def call_cells(p_all, oos_score=None, threshold: float = 0.5,
               uncertain: Sequence[float] | None = DEFAULT_UNCERTAIN,
               positive: str = POSITIVE_CLASS, negative: str = NEGATIVE_CLASS) -> np.ndarray:
    """The call of every cell (see the module docstring for the rule).

    Parameters
    ----------
    p_all : array_like of float
        Calibrated P(ALL).
    oos_score : array_like of float, optional
        Out-of-scope scores (above 1: out of scope; ``nan``: no reference).
    threshold : float
        P(ALL) at or above which a confident cell is ALL.
    uncertain : (float, float) or None
        The uncertain band (open interval); None for none.
    positive, negative : str
        Names of the two classes.

    Returns
    -------
    numpy.ndarray of str
    """
    p = np.asarray(p_all, np.float64).reshape(-1)
    low, high = check_band(uncertain, threshold)
    calls = np.where(p >= threshold, positive, negative).astype(object)
    calls[(p > low) & (p < high)] = UNCERTAIN
    if oos_score is not None:
        score = np.asarray(oos_score, np.float64).reshape(-1)
        calls[np.nan_to_num(score, nan=0.0) > 1.0] = OUT_OF_SCOPE
    return calls.astype(str)


def call_counts(calls, positive: str = POSITIVE_CLASS,
                negative: str = NEGATIVE_CLASS) -> dict[str, float | int]:
    """Counts of each call and the ALL fraction among the confident, in-scope cells.

    Returns
    -------
    dict
        ``cells``, ``<positive>``, ``<negative>``, ``uncertain``, ``out_of_scope``,
        ``all_fraction`` (``nan`` without confident cells) and its 95 % Wilson interval
        ``all_fraction_low``, ``all_fraction_high``.
    """
    from allnet_core.intervals import wilson_interval

    c = np.asarray(calls).astype(str)
    n_pos, n_neg = int((c == positive).sum()), int((c == negative).sum())
    confident = n_pos + n_neg
    low, high = wilson_interval(n_pos, confident)
    return {"cells": int(c.size), positive: n_pos, negative: n_neg,
            UNCERTAIN: int((c == UNCERTAIN).sum()), OUT_OF_SCOPE: int((c == OUT_OF_SCOPE).sum()),
            "all_fraction": n_pos / confident if confident else float("nan"),
            "all_fraction_low": low, "all_fraction_high": high}


def summarize_calls(cells, by: Sequence[str], positive: str = POSITIVE_CLASS,
                    negative: str = NEGATIVE_CLASS):
    """One row per group of a cell table (with a ``call`` column): :func:`call_counts`.

    Parameters
    ----------
    cells : pandas.DataFrame
    by : sequence of str
        Grouping columns (e.g. ``["subject"]``); groups keep their first appearance order.

    Returns
    -------
    pandas.DataFrame
        ``by`` columns, then :data:`SUMMARY_COLUMNS` (with the class names given).
    """
    import pandas as pd

    columns = [*by, *summary_columns(positive, negative)]
    rows = []
    if len(cells):
        for key, group in cells.groupby(list(by), sort=False):
            key = key if isinstance(key, tuple) else (key,)
            rows.append({**dict(zip(by, key, strict=True)),
                         **call_counts(group["call"], positive, negative)})
    return pd.DataFrame(rows, columns=columns)


def summary_columns(positive: str = POSITIVE_CLASS, negative: str = NEGATIVE_CLASS
                    ) -> list[str]:
    """:data:`SUMMARY_COLUMNS` with the given class names."""
    names = {POSITIVE_CLASS: positive, NEGATIVE_CLASS: negative}
    return [names.get(c, c) for c in SUMMARY_COLUMNS]


def counts_text(counts, positive: str = POSITIVE_CLASS, negative: str = NEGATIVE_CLASS) -> str:
    """``"12 cells: 3 ALL, 5 HEM, 2 uncertain, 2 out of scope; ALL fraction among the 8
    confident in-scope cells 38 % (95 % CI 14 to 69 %)"``."""
    n = int(counts["cells"])
    text = (f"{n} cell{'s' if n != 1 else ''}: {int(counts[positive])} {positive}, "
            f"{int(counts[negative])} {negative}, {int(counts[UNCERTAIN])} uncertain, "
            f"{int(counts[OUT_OF_SCOPE])} out of scope")
    confident = int(counts[positive]) + int(counts[negative])
    if not confident:
        return text + f"; no confident in-scope cell, so no {positive} fraction"
    return (text + f"; {positive} fraction among the {confident} confident in-scope "
            f"cell{'s' if confident != 1 else ''} {100 * counts['all_fraction']:.0f} % "
            f"(95 % CI {100 * counts['all_fraction_low']:.0f} to "
            f"{100 * counts['all_fraction_high']:.0f} %)")
