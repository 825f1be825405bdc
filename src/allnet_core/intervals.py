"""95 % confidence intervals: hold-out metrics by bootstrap over subjects, proportions by
Wilson's score interval.

Cells of one patient are not independent: they share the patient's disease, stain and
microscope. A hold-out of 2,000 cells from 10 patients holds 10 independent observations,
not 2,000, so its metrics are resampled by *subject*: each bootstrap replicate draws
subjects with replacement (ALL and HEM subjects separately, so every replicate holds both
classes as the hold-out does) and pools their cells. The interval is the 2.5th to 97.5th
percentile of the replicates (the percentile bootstrap).

Examples
--------
>>> lo, hi = wilson_interval(8, 10)
>>> round(lo, 3), round(hi, 3)
(0.49, 0.943)
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["BOOTSTRAP_METRICS", "N_BOOTSTRAP", "subject_bootstrap", "wilson_interval"]

#: Metrics that :func:`subject_bootstrap` gives intervals for.
BOOTSTRAP_METRICS = ("accuracy", "specificity", "recall", "precision", "f1", "mcc")
#: Bootstrap replicates unless asked otherwise.
N_BOOTSTRAP = 2000


def wilson_interval(k: int, n: int, level: float = 0.95) -> tuple[float, float]:
    """Wilson's score interval of a proportion ``k / n`` (``(nan, nan)`` when ``n == 0``)."""
    if n <= 0:
        return (math.nan, math.nan)
    from scipy.stats import binomtest

    ci = binomtest(int(k), int(n)).proportion_ci(confidence_level=level, method="wilson")
    return (float(ci.low), float(ci.high))


def _metrics_from_counts(tp, fp, tn, fn) -> dict[str, np.ndarray]:
    """Metrics of arrays of confusion counts (``nan`` where undefined; MCC 0 when a row or
    column of the confusion matrix is empty, scikit-learn's convention)."""
    tp, fp, tn, fn = (np.asarray(v, np.float64) for v in (tp, fp, tn, fn))
    n = tp + fp + tn + fn
    with np.errstate(invalid="ignore", divide="ignore"):
        den = np.sqrt((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn))
        mcc = np.where(den > 0, (tp * tn - fp * fn) / np.where(den > 0, den, 1), 0.0)
        return {"accuracy": (tp + tn) / n, "specificity": tn / (tn + fp),
                "recall": tp / (tp + fn), "precision": tp / (tp + fp),
                "f1": 2 * tp / (2 * tp + fp + fn), "mcc": mcc}


def subject_bootstrap(y, p_all, subjects, threshold: float = 0.5,
                      n_boot: int = N_BOOTSTRAP, level: float = 0.95,
                      seed: int = 0) -> dict[str, dict[str, float]]:
    """Metrics with percentile-bootstrap intervals, resampling subjects (not cells).

    Parameters
    ----------
    y : array_like of {0, 1}
        True labels (1: ALL).
    p_all : array_like of float
        P(ALL) of the same cells.
    subjects : array_like
        Subject of each cell.
    threshold : float
        A cell is called ALL when ``p_all >= threshold``.
    n_boot : int
        Replicates.
    level : float
        Coverage of the interval.
    seed : int
        Seed of the resampling.

    Returns
    -------
    dict
        ``{metric: {"value", "low", "high"}}`` for :data:`BOOTSTRAP_METRICS`; ``value`` is
        the metric on the hold-out as it is. Undefined bounds are ``nan``.
    """
    y = np.asarray(y, np.int64).reshape(-1)
    called = np.asarray(p_all, np.float64).reshape(-1) >= threshold
    names, inverse = np.unique(np.asarray(subjects).astype(str), return_inverse=True)
    k = len(names)
    counts = np.zeros((k, 4))  # tp, fp, tn, fn per subject
    for col, mask in enumerate((called & (y == 1), called & (y == 0),
                                ~called & (y == 0), ~called & (y == 1))):
        counts[:, col] = np.bincount(inverse, weights=mask, minlength=k)
    whole = _metrics_from_counts(*counts.sum(axis=0))
    rng = np.random.default_rng(seed)
    subject_class = np.bincount(inverse, weights=y, minlength=k) / np.maximum(
        np.bincount(inverse, minlength=k), 1) >= 0.5
    weights = np.zeros((n_boot, k))
    for group in (np.flatnonzero(subject_class), np.flatnonzero(~subject_class)):
        if len(group):
            draws = rng.integers(0, len(group), size=(n_boot, len(group)))
            for j in range(len(group)):
                np.add.at(weights, (np.arange(n_boot), group[draws[:, j]]), 1.0)
    reps = _metrics_from_counts(*(weights @ counts).T)
    alpha = (1 - level) / 2
    out = {}
    for name in BOOTSTRAP_METRICS:
        r = reps[name][np.isfinite(reps[name])]
        low, high = (np.quantile(r, [alpha, 1 - alpha]) if r.size else (math.nan, math.nan))
        out[name] = {"value": float(whole[name]), "low": float(low), "high": float(high)}
    return out
