"""Calibrated P(ALL): temperature scaling (Guo et al. 2017), expected calibration error and
reliability-diagram data.

A softmax over two classes is a logistic function of the logit difference
``z = log(p_ALL / p_HEM)``. Temperature scaling divides that logit by one number ``T``
fitted on held-out predictions (the best fold's validation cells) by minimising the
negative log-likelihood: ``T > 1`` softens an over-confident model, ``T < 1`` sharpens an
under-confident one. The likelihood uses Platt's (1999) targets, ``(N+ + 1) / (N+ + 2)``
for ALL cells and ``1 / (N- + 2)`` for HEM cells, instead of 1 and 0: a validation set
that the model separates perfectly would otherwise drive ``T`` to 0 and make every later
call look certain. For the same reason ``T`` is kept at or above 0.5: calibration may
soften a model as much as its validation cells say, but sharpens it at most twofold (an
under-confident model calls more cells uncertain, which is the safe side; a sharpened one
would make confident calls it has not earned on a few validation subjects).

Scaling never changes which side of 0.5 a cell lies on, so accuracy and MCC at the 0.5
threshold stay as they are; only the probabilities become honest.

Only numpy here; scipy is imported when a temperature is fitted.

Examples
--------
>>> import numpy as np
>>> cal = Calibration(temperature=2.0)
>>> np.round(cal.apply(np.array([0.5, 0.9, 0.1])), 3)
array([0.5 , 0.75, 0.25])
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = [
    "ECE_BINS",
    "Calibration",
    "calibration_summary",
    "ece_noise_floor",
    "expected_calibration_error",
    "fit_temperature",
    "p_to_logit",
    "reliability_bins",
]

#: Equal-width bins of P(ALL) used for the ECE and the reliability diagram.
ECE_BINS = 10
#: Logits are clipped to this magnitude: a float32 softmax saturates at 1.0 exactly.
_MAX_LOGIT = 16.0
#: The temperature is searched in this range (see the module docstring).
T_RANGE = (0.5, 100.0)


def p_to_logit(p_all) -> np.ndarray:
    """The logit ``log(p / (1 - p))`` of P(ALL), clipped to +-16 (float64)."""
    p = np.clip(np.asarray(p_all, np.float64), 1e-12, 1.0 - 1e-12)
    return np.clip(np.log(p) - np.log1p(-p), -_MAX_LOGIT, _MAX_LOGIT)


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * z))


@dataclass(frozen=True)
class Calibration:
    """Temperature scaling of P(ALL).

    Attributes
    ----------
    temperature : float
        ``T`` in ``sigmoid(logit(p) / T)``; 1 leaves probabilities as they are.
    """

    temperature: float = 1.0

    def apply(self, p_all) -> np.ndarray:
        """Calibrated P(ALL) (float64) of raw P(ALL) values."""
        p = np.asarray(p_all, np.float64)
        if self.temperature == 1.0:
            return p.copy()
        return _sigmoid(p_to_logit(p) / self.temperature)

    def to_dict(self) -> dict[str, Any]:
        return {"method": "temperature", "temperature": float(self.temperature)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> Calibration:
        """From a card's ``calibration`` entry; identity when it is missing."""
        if not data or data.get("method") != "temperature":
            return cls()
        t = float(data.get("temperature", 1.0))
        return cls(temperature=t if np.isfinite(t) and t > 0 else 1.0)


def _nll(t: np.ndarray, p: np.ndarray) -> float:
    """Mean cross-entropy of targets ``t`` in [0, 1] under probabilities ``p``."""
    p = np.clip(p, 1e-12, 1.0 - 1e-12)
    return float(-np.mean(t * np.log(p) + (1 - t) * np.log1p(-p)))


def _platt_targets(y: np.ndarray) -> np.ndarray:
    n_pos = float(y.sum())
    n_neg = float(y.size - n_pos)
    return np.where(y == 1, (n_pos + 1) / (n_pos + 2), 1.0 / (n_neg + 2))


def fit_temperature(y, p_all) -> Calibration:
    """The temperature that minimises the negative log-likelihood of ``y`` (as Platt's
    targets, see the module docstring) given ``p_all``.

    Parameters
    ----------
    y : array_like of {0, 1}
        True labels (1: ALL).
    p_all : array_like of float
        Uncalibrated P(ALL) of the same cells.

    Returns
    -------
    Calibration
        ``T`` in :data:`T_RANGE`; the identity (``T = 1``) when there are no cells or only
        one class (nothing to fit) or when no ``T`` fits better than 1.
    """
    from scipy.optimize import minimize_scalar

    y = np.asarray(y, np.float64).reshape(-1)
    z = p_to_logit(p_all).reshape(-1)
    if y.size == 0 or y.min() == y.max():
        return Calibration()
    targets = _platt_targets(y)

    def loss(log_t: float) -> float:
        return _nll(targets, _sigmoid(z / np.exp(log_t)))

    lo, hi = np.log(T_RANGE[0]), np.log(T_RANGE[1])
    best = minimize_scalar(loss, bounds=(lo, hi), method="bounded",
                           options={"xatol": 1e-4})
    t = float(np.exp(best.x))
    if loss(0.0) <= best.fun:  # never worse than leaving it alone
        t = 1.0
    return Calibration(temperature=t)


def reliability_bins(y, p_all, bins: int = ECE_BINS) -> dict[str, np.ndarray]:
    """Reliability-diagram data: per equal-width bin of P(ALL), its cells, mean P(ALL) and
    the fraction that is truly ALL.

    Returns
    -------
    dict
        ``edges`` (``bins + 1``), ``count``, ``confidence`` (mean P(ALL)) and ``accuracy``
        (fraction ALL) per bin; empty bins have ``nan`` confidence and accuracy. P(ALL) = 1
        falls in the last bin.
    """
    y = np.asarray(y, np.float64).reshape(-1)
    p = np.asarray(p_all, np.float64).reshape(-1)
    edges = np.round(np.linspace(0.0, 1.0, bins + 1), 6)
    idx = np.clip(np.digitize(p, edges[1:-1], right=False), 0, bins - 1)
    count = np.bincount(idx, minlength=bins).astype(np.int64)
    with np.errstate(invalid="ignore", divide="ignore"):
        conf = np.bincount(idx, weights=p, minlength=bins) / count
        acc = np.bincount(idx, weights=y, minlength=bins) / count
    return {"edges": edges, "count": count, "confidence": conf, "accuracy": acc}


def expected_calibration_error(y, p_all, bins: int = ECE_BINS) -> float:
    """Expected calibration error of P(ALL): the cell-weighted mean, over equal-width bins,
    of ``|fraction truly ALL - mean P(ALL)|`` (``nan`` without cells).

    Examples
    --------
    >>> expected_calibration_error([1, 0, 1, 0], [1.0, 0.0, 1.0, 0.0])
    0.0
    >>> round(expected_calibration_error([1, 0], [0.99, 0.99]), 2)
    0.49
    """
    r = reliability_bins(y, p_all, bins)
    n = r["count"].sum()
    if n == 0:
        return float("nan")
    used = r["count"] > 0
    gap = np.abs(r["accuracy"][used] - r["confidence"][used])
    return float(np.sum(r["count"][used] * gap) / n)


def ece_noise_floor(p_all, bins: int = ECE_BINS, draws: int = 1000,
                    seed: int = 0) -> tuple[float, float]:
    """The ECE that a *perfectly calibrated* model with these P(ALL) values would show,
    from sampling noise alone: its mean and 95th percentile.

    The ECE of a finite set is biased upwards: in a bin of ``n`` cells the fraction truly
    ALL scatters around the mean P(ALL) by about ``sqrt(p (1 - p) / n)``, and the ECE adds
    up the absolute gaps. So an ECE is only meaningful next to this floor: labels are drawn
    ``draws`` times as ``Bernoulli(p)`` (a model whose probabilities are exactly right)
    and the ECE of each draw is computed with the same bins.

    Returns
    -------
    (mean, p95) : (float, float)
        ``nan`` without cells.

    Examples
    --------
    >>> mean, p95 = ece_noise_floor(np.full(100, 0.7))  # 100 cells: a floor near 0.036
    >>> 0.02 < mean < 0.05 < p95 < 0.1
    True
    """
    p = np.asarray(p_all, np.float64).reshape(-1)
    if p.size == 0:
        return float("nan"), float("nan")
    edges = np.round(np.linspace(0.0, 1.0, bins + 1), 6)
    idx = np.clip(np.digitize(p, edges[1:-1], right=False), 0, bins - 1)
    conf_sum = np.bincount(idx, weights=p, minlength=bins)
    onehot = np.zeros((p.size, bins))
    onehot[np.arange(p.size), idx] = 1.0
    rng = np.random.default_rng(seed)
    ece = []
    for start in range(0, draws, 100):  # 100 draws at a time: memory stays small
        y = (rng.random((min(100, draws - start), p.size)) < p).astype(np.float64)
        ece.append(np.abs(y @ onehot - conf_sum).sum(axis=1) / p.size)  # |n_b (acc - conf)|
    ece = np.concatenate(ece)
    return float(ece.mean()), float(np.percentile(ece, 95))


def calibration_summary(y, p_raw, p_cal, bins: int = ECE_BINS) -> dict[str, Any]:
    """ECE, its noise floor and reliability-diagram bins of raw and calibrated P(ALL), as
    plain lists (the card's and the reports' ``ece_before``, ``ece_after``,
    ``ece_floor_before``, ``ece_floor_after`` (the mean of :func:`ece_noise_floor`),
    ``reliability_before``, ``reliability_after``)."""
    out: dict[str, Any] = {}
    for key, p in (("before", p_raw), ("after", p_cal)):
        out[f"ece_{key}"] = expected_calibration_error(y, p, bins)
        out[f"ece_floor_{key}"] = ece_noise_floor(p, bins)[0]
        out[f"reliability_{key}"] = {k: v.tolist()
                                     for k, v in reliability_bins(y, p, bins).items()}
    return {k: out[k] for k in ("ece_before", "ece_after", "ece_floor_before",
                                "ece_floor_after", "reliability_before", "reliability_after")}
