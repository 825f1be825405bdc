"""The metric tables of reports: columns, formatting, mean and standard deviation over folds.

Percentages with two decimals as the paper shows them; ROC AUC as a number in [0, 1];
``n/a`` for an undefined metric, with its reason in a note.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from allnet_core.classes import NEGATIVE_CLASS, POSITIVE_CLASS
from allnet_core.metrics import METRIC_NAMES, as_float, undefined_reasons

__all__ = [
    "METRIC_LABELS",
    "TABLE_METRICS",
    "class_counts",
    "format_metric",
    "metrics_line",
    "mean_std",
    "metrics_table",
    "undefined_note",
]

#: Columns of the Table-3-style table, in the paper's order, with their headers.
TABLE_METRICS = (
    ("accuracy", "Accuracy"),
    ("specificity", "Specificity"),
    ("recall", "Recall"),
    ("f1", "F1"),
    ("precision", "Precision"),
    ("mcc", "MCC"),
)

#: Display name of every metric of :data:`allnet_core.metrics.METRIC_NAMES`.
METRIC_LABELS = {**dict(TABLE_METRICS), "roc_auc": "ROC AUC"}


def _pct(value: Any, std: float | None = None) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "n/a"
    text = f"{100.0 * float(value):.2f}"
    if std is not None and math.isfinite(float(std)):
        text += f" ± {100.0 * std:.2f}"
    return text


def mean_std(fold_metrics: Sequence[Mapping[str, Any]]) -> dict[str, dict[str, float]]:
    """Mean and standard deviation of each metric over folds: the one place they are
    computed (``report.md``, ``report.json`` and the napari train widget show these).

    The standard deviation is the sample one (``ddof=1``): the folds are a sample of the
    ways the data could have been split. Undefined values (``None`` or ``nan``, e.g. a
    precision with nothing predicted ALL) are left out of both.

    Parameters
    ----------
    fold_metrics : sequence of dict
        Each fold's metrics (from :func:`allnet_core.metrics.binary_metrics` or
        ``metrics.json``).

    Returns
    -------
    dict
        ``{metric: {"mean": float, "std": float}}`` for the :data:`TABLE_METRICS` and
        ``roc_auc``. With no finite value the mean is ``nan``; with fewer than two (one
        fold) the standard deviation is ``nan`` (undefined), and reports show the mean
        alone.

    Examples
    --------
    >>> s = mean_std([{"accuracy": 0.8}, {"accuracy": 0.9}, {"accuracy": None}])
    >>> round(s["accuracy"]["mean"], 3), round(s["accuracy"]["std"], 4)
    (0.85, 0.0707)
    >>> mean_std([{"accuracy": 0.8}])["accuracy"]
    {'mean': 0.8, 'std': nan}
    """
    out = {}
    for key, _ in TABLE_METRICS + (("roc_auc", ""),):
        values = np.array([as_float(m.get(key)) for m in fold_metrics], dtype=float)
        finite = values[np.isfinite(values)]
        out[key] = {
            "mean": float(finite.mean()) if finite.size else math.nan,
            "std": float(finite.std(ddof=1)) if finite.size > 1 else math.nan,
        }
    return out


def metrics_table(rows: Sequence[tuple[str, Mapping[str, Any]]],
                  summary: Mapping[str, Mapping[str, float]] | None = None) -> str:
    """A Markdown table with one row per ``(name, metrics)``, values in percent.

    Parameters
    ----------
    rows : sequence of (str, dict)
        Row name and a metrics dict from :func:`allnet_core.metrics.binary_metrics`.
    summary : dict, optional
        From :func:`mean_std`; adds a "Mean ± std" row after ``rows``.

    Examples
    --------
    >>> print(metrics_table([("Fold 1", {"accuracy": 0.9, "specificity": 0.8, "recall": 1.0,
    ...   "f1": 0.9, "precision": 0.85, "mcc": 0.7})]).splitlines()[2])
    | Fold 1 | 90.00 | 80.00 | 100.00 | 90.00 | 85.00 | 70.00 |
    """
    header = "| | " + " | ".join(h for _, h in TABLE_METRICS) + " |"
    lines = [header, "|---" * (len(TABLE_METRICS) + 1) + "|"]
    for name, m in rows:
        lines.append(f"| {name} | " + " | ".join(_pct(m.get(k)) for k, _ in TABLE_METRICS)
                     + " |")
    if summary is not None:
        lines.append("| Mean ± std over folds | " + " | ".join(
            _pct(summary[k]["mean"], summary[k]["std"]) for k, _ in TABLE_METRICS) + " |")
    return "\n".join(lines)




def format_metric(name: str, value: Any) -> str:
    """One metric for a sentence: ROC AUC as a number in [0, 1] (3 decimals), the others
    in percent, ``"n/a"`` when undefined.

    Examples
    --------
    >>> format_metric("roc_auc", 0.91234), format_metric("accuracy", 0.9), \\
    ...     format_metric("mcc", None)
    ('0.912', '90.00 %', 'n/a')
    """
    value = as_float(value)
    if not math.isfinite(value):
        return "n/a"
    return f"{value:.3f}" if name == "roc_auc" else f"{100.0 * value:.2f} %"


def undefined_note(metrics: Mapping[str, Any]) -> str:
    """``"n/a: Recall, F1 (no ALL cell in the set); ..."``: the undefined metrics grouped
    by reason (:func:`~allnet_core.metrics.undefined_reasons`), or ``""`` when none."""
    by_reason: dict[str, list[str]] = {}
    for name, reason in undefined_reasons(dict(metrics)).items():
        by_reason.setdefault(reason, []).append(METRIC_LABELS[name])
    if not by_reason:
        return ""
    return "n/a: " + "; ".join(f"{', '.join(names)} ({reason})"
                               for reason, names in by_reason.items())


def class_counts(metrics: Mapping[str, Any]) -> str:
    """``"12 ALL, 30 HEM"``: the true classes of the scored cells, from the confusion
    matrix."""
    return (f"{metrics['tp'] + metrics['fn']} {POSITIVE_CLASS}, "
            f"{metrics['tn'] + metrics['fp']} {NEGATIVE_CLASS}")


def metrics_line(metrics: Mapping[str, Any]) -> str:
    """Every metric of :data:`~allnet_core.metrics.METRIC_NAMES` in one line, as
    ``allnet evaluate`` prints it (see :func:`format_metric`)."""
    return ", ".join(f"{METRIC_LABELS[name]} {format_metric(name, metrics.get(name))}"
                     for name in METRIC_NAMES)
