"""Classification metrics for ALL/HEM cells, with ALL as the positive class.

All values are fractions in [0, 1] (MCC in [-1, 1]); reports multiply by 100 to show
percentages as the paper does. Metrics are computed with scikit-learn so that they agree
with what a reader would compute; undefined values (e.g. precision when nothing is
predicted ALL, ROC AUC when only one class is present) are ``nan`` rather than an error or
a silent 0.

Examples
--------
>>> import numpy as np
>>> m = binary_metrics(["ALL", "HEM", "ALL", "HEM"], np.array([0.9, 0.2, 0.4, 0.1]))
>>> m["tp"], m["fn"], m["tn"], m["fp"]
(1, 1, 2, 0)
>>> round(m["accuracy"], 2), round(m["recall"], 2), m["precision"]
(0.75, 0.5, 1.0)
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd

from allnet_core.classes import CLASS_NAMES, NEGATIVE_CLASS, POSITIVE_CLASS
from allnet_core.errors import ConfigError, DatasetError

__all__ = [
    "METRIC_NAMES",
    "PREDICTION_COLUMNS",
    "binary_metrics",
    "as_float",
    "json_safe",
    "labels_to_int",
    "per_subject_summary",
    "prediction_table",
    "undefined_reasons",
]

#: Scalar metrics returned by :func:`binary_metrics`, in the order reports show them.
METRIC_NAMES = ("accuracy", "specificity", "recall", "precision", "f1", "mcc", "roc_auc")

#: Columns of a prediction table (:func:`prediction_table`; ``predictions.csv`` of
#: ``allnet evaluate`` and of a training run's hold-out), in the vocabulary of
#: ``allnet classify``'s cell table: ``source`` the file, ``class`` the class at the
#: threshold (ALL or HEM; the cell table's ``call`` also says uncertain or out of scope).
PREDICTION_COLUMNS = ("source", "subject", "true_class", "class", "p_all")


def labels_to_int(labels: Sequence | np.ndarray) -> np.ndarray:
    """Turn class labels into ``0`` (HEM) / ``1`` (ALL).

    Parameters
    ----------
    labels : sequence
        ``"ALL"`` / ``"HEM"`` strings (any case), booleans, or integers 0/1.

    Returns
    -------
    numpy.ndarray of int64

    Raises
    ------
    DatasetError
        If a label is none of the above.
    """
    a = np.asarray(labels)
    if a.ndim != 1:
        a = a.reshape(-1)
    if a.size == 0:
        return np.zeros(0, np.int64)
    if a.dtype.kind in "biu":
        out = a.astype(np.int64)
        bad = ~np.isin(out, (0, 1))
        if bad.any():
            raise DatasetError(f"labels must be 0 (HEM) or 1 (ALL), got {out[bad][0]!r}")
        return out
    upper = np.char.upper(a.astype(str))
    bad = ~np.isin(upper, CLASS_NAMES)
    if bad.any():
        raise DatasetError(f"labels must be 'ALL' or 'HEM', got {a[bad][0]!r}")
    return (upper == POSITIVE_CLASS).astype(np.int64)


def json_safe(obj):
    """Copy of ``obj`` with non-finite floats (``nan``, ``inf``) replaced by ``None``.

    Metrics files are strict JSON (``null`` for an undefined metric), readable by any tool.

    Examples
    --------
    >>> json_safe({"precision": float("nan"), "n": 3})
    {'precision': None, 'n': 3}
    """
    if isinstance(obj, dict):
        return {k: json_safe(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [json_safe(v) for v in obj]
    if isinstance(obj, float | np.floating):
        return float(obj) if math.isfinite(obj) else None
    if isinstance(obj, np.integer):
        return int(obj)
    return obj


def as_float(value) -> float:
    """``value`` as a float, ``nan`` for ``None`` (undefined metrics read back from JSON)."""
    return math.nan if value is None else float(value)


def _check_probabilities(p_all, n: int) -> np.ndarray:
    p = np.asarray(p_all, dtype=np.float64).reshape(-1)
    if p.shape[0] != n:
        raise ConfigError(f"got {n} labels but {p.shape[0]} probabilities")
    if not np.all(np.isfinite(p)) or (p.size and (p.min() < 0.0 or p.max() > 1.0)):
        raise ConfigError("P(ALL) must be finite and in [0, 1]")
    return p


def _ratio(num: float, den: float) -> float:
    return float(num) / float(den) if den else math.nan


def binary_metrics(y_true, p_all, threshold: float = 0.5) -> dict[str, float | int]:
    """Confusion matrix and summary metrics with ALL as the positive class.

    Parameters
    ----------
    y_true : sequence
        True labels, ``"ALL"``/``"HEM"`` or 1/0 (see :func:`labels_to_int`).
    p_all : array_like of float
        Predicted probability of ALL for each cell, in [0, 1].
    threshold : float
        A cell is called ALL when ``p_all >= threshold``.

    Returns
    -------
    dict
        ``n``, ``tn``, ``fp``, ``fn``, ``tp`` (ints) and ``accuracy``, ``specificity``
        (TN / (TN + FP)), ``recall`` (sensitivity, TP / (TP + FN)), ``precision``, ``f1``,
        ``mcc``, ``roc_auc`` (floats, fractions). A metric whose denominator is zero is
        ``nan``. With one true class only (a set of healthy cells, to measure
        specificity) MCC and ROC AUC are ``nan``, and so are recall and F1 when no cell is
        truly ALL; :func:`undefined_reasons` says why. With both true classes but one
        predicted class MCC is 0 (scikit-learn's convention for a degenerate matrix).

    Raises
    ------
    ConfigError
        If the lengths differ, probabilities are outside [0, 1] or ``threshold`` is.
    """
    if not 0.0 <= threshold <= 1.0:
        raise ConfigError(f"threshold must be in [0, 1], got {threshold}")
    from sklearn.metrics import confusion_matrix, matthews_corrcoef, roc_auc_score

    y = labels_to_int(y_true)
    p = _check_probabilities(p_all, y.shape[0])
    pred = (p >= threshold).astype(np.int64)
    if y.size:
        tn, fp, fn, tp = (int(v) for v in confusion_matrix(y, pred, labels=[0, 1]).ravel())
    else:
        tn = fp = fn = tp = 0
    recall = _ratio(tp, tp + fn)
    precision = _ratio(tp, tp + fp)
    f1 = _ratio(2 * tp, 2 * tp + fp + fn) if tp + fn else math.nan  # F1 needs recall
    both = bool(y.size) and 0 < y.sum() < y.size
    mcc = float(matthews_corrcoef(y, pred)) if both else math.nan
    auc = float(roc_auc_score(y, p)) if both else math.nan
    return {
        "n": int(y.size),
        "tn": tn,
        "fp": fp,
        "fn": fn,
        "tp": tp,
        "accuracy": _ratio(tp + tn, y.size),
        "specificity": _ratio(tn, tn + fp),
        "recall": recall,
        "precision": precision,
        "f1": f1,
        "mcc": mcc,
        "roc_auc": auc,
        "threshold": float(threshold),
    }


def undefined_reasons(metrics: dict) -> dict[str, str]:
    """Why each undefined metric of :func:`binary_metrics` is undefined.

    Parameters
    ----------
    metrics : dict
        From :func:`binary_metrics` (or read back from ``metrics.json``, ``None`` for
        undefined).

    Returns
    -------
    dict
        ``{metric: reason}`` for each of :data:`METRIC_NAMES` that is ``nan`` or ``None``.

    Examples
    --------
    >>> m = binary_metrics(["HEM", "HEM", "HEM"], [0.1, 0.7, 0.2])
    >>> round(m["specificity"], 3)
    0.667
    >>> undefined_reasons(m)["recall"]
    'no ALL cell in the set'
    >>> undefined_reasons(m)["roc_auc"]
    'needs both classes; the set has HEM only'
    """
    n_all, n_hem = metrics["tp"] + metrics["fn"], metrics["tn"] + metrics["fp"]
    present = [name for name, n in ((POSITIVE_CLASS, n_all), (NEGATIVE_CLASS, n_hem)) if n]
    both = f"needs both classes; the set has {present[0]} only" if len(present) == 1 \
        else "no cells"
    why = {
        "accuracy": "no cells",
        "specificity": f"no {NEGATIVE_CLASS} cell in the set",
        "recall": f"no {POSITIVE_CLASS} cell in the set",
        "f1": f"no {POSITIVE_CLASS} cell in the set",
        "precision": f"no cell called {POSITIVE_CLASS}",
        "mcc": both,
        "roc_auc": both,
    }
    return {name: why[name] for name in METRIC_NAMES
            if not math.isfinite(as_float(metrics.get(name)))}


def prediction_table(table: pd.DataFrame, p_all, threshold: float = 0.5) -> pd.DataFrame:
    """One row per image of a labelled dataset table: its file, truth, call and P(ALL).

    Parameters
    ----------
    table : pandas.DataFrame
        A dataset table: ``path``, ``subject``, ``label`` (the true class).
    p_all : array_like of float
        P(ALL) per row.
    threshold : float
        An image is called ALL when ``p_all >= threshold``.

    Returns
    -------
    pandas.DataFrame
        Columns :data:`PREDICTION_COLUMNS`: ``source`` (the file), ``subject``,
        ``true_class``, ``class`` (``"ALL"`` or ``"HEM"`` at the threshold) and ``p_all``, the
        names of ``allnet classify``'s cell table.
    """
    p = _check_probabilities(p_all, len(table))
    return pd.DataFrame({
        "source": table["path"].astype(str).to_numpy(),
        "subject": table["subject"].to_numpy(),
        "true_class": table["label"].to_numpy(),
        "class": np.where(p >= threshold, POSITIVE_CLASS, NEGATIVE_CLASS),
        "p_all": p,
    }, columns=list(PREDICTION_COLUMNS))


def per_subject_summary(
    table: pd.DataFrame,
    threshold: float = 0.5,
    subject_threshold: float = 0.5,
) -> pd.DataFrame:
    """One row per subject: cells, fraction called ALL, and the subject-level call.

    Parameters
    ----------
    table : pandas.DataFrame
        Columns ``subject``, ``true_class`` (``"ALL"``/``"HEM"``; a dataset table's
        ``label`` is read when there is no ``true_class``) and ``p_all``, such as a
        :func:`prediction_table`.
    threshold : float
        A cell is called ALL when ``p_all >= threshold``.
    subject_threshold : float
        A subject is called ALL when at least this fraction of its cells is called ALL.

    Returns
    -------
    pandas.DataFrame
        Columns ``subject``, ``cells``, ``true_class`` (the majority class of the
        subject's cells; C-NMC subjects hold one class only), ``fraction_all`` (fraction of
        cells called ALL), ``mean_p_all``, ``cell_accuracy``, ``class`` (the subject's
        call) and ``correct``, sorted by subject.
    """
    truth = "true_class" if "true_class" in table.columns else "label"
    missing = {"subject", truth, "p_all"} - set(table.columns)
    if missing:
        raise DatasetError(f"per-subject summary needs columns {sorted(missing)}")
    y = labels_to_int(table[truth].to_numpy())
    p = _check_probabilities(table["p_all"].to_numpy(), y.shape[0])
    frame = pd.DataFrame(
        {"subject": table["subject"].astype(str).to_numpy(), "y": y, "p": p,
         "called": (p >= threshold).astype(np.int64)}
    )
    rows = []
    for subject, g in frame.groupby("subject", sort=True):
        frac_all = float(g["called"].mean())
        is_all = int(g["y"].mean() >= 0.5)
        call = int(frac_all >= subject_threshold)
        rows.append(
            {
                "subject": subject,
                "cells": len(g),
                "true_class": CLASS_NAMES[is_all],
                "fraction_all": frac_all,
                "mean_p_all": float(g["p"].mean()),
                "cell_accuracy": float((g["called"] == g["y"]).mean()),
                "class": CLASS_NAMES[call],
                "correct": bool(call == is_all),
            }
        )
    columns = ["subject", "cells", "true_class", "fraction_all", "mean_p_all",
               "cell_accuracy", "class", "correct"]
    return pd.DataFrame(rows, columns=columns)
