"""Out-of-scope detection: how unlike the training cells a cell is.

A model only knows the kind of cell it was trained on. Each cell is described twice:

- ``features``: what the model makes of it, the features its classifier head sees (the
  input of the last ``Dense`` layer: ALLNet's second hidden dense layer);
- ``appearance``: what it looks like in the model's input: the fraction of the crop the cell
  covers (its size) and the mean and standard deviation of red, green and blue over the
  cell's (non-black) pixels (its stain), see :func:`appearance`.

For each view the training cells are summarised by their mean and a shrunk covariance
(Ledoit-Wolf); a cell's distance in that view is its Mahalanobis distance to them, divided
by the 99.5th percentile of the distances of cells the reference did not see. The cell's
out-of-scope *score* is the larger of its two relative distances, divided by the 99.5th
percentile of the validation cells' scores.

- ``features``: the reference is the training cells; the percentile is taken over the
  validation cells (the model never trained on them).
- ``appearance``: size and stain vary mostly *between subjects* (each has its own stain,
  brightness and magnification), and a fold's validation cells come from a few subjects
  only. With the cells' subjects, the reference is fitted on the training and validation
  cells together and its percentile is taken over leave-one-subject-out distances (each
  subject's cells measured against a reference fitted without that subject), so that the
  threshold reflects new subjects, not new cells of known ones. (A diagonal covariance
  would flag fewer new subjects too, but lets most real neutrophils through: their stain
  differs from the training cells' in how the channels go together.)

Why 99.5 and not 99: the threshold comes from a few subjects, and cells of *new* subjects
score higher than those (measured in ``docs/trust.md``: about twice as many cross a
99th-percentile threshold); at 99.5 about 1 % of the cells of new subjects of the training
distribution are called out of scope. Measured on a synthetic-trained model
(``docs/trust.md``), the features alone let a fifth to a third of real neutrophils through,
while size and stain catch them; the features catch cells that look right but that the
model reads as nothing it knows.

Wide features (more than ``max_dims``, e.g. ALLNet's 4096) are first projected on their
``max_dims`` principal components; the distance then adds the part of the vector outside
that subspace (the squared residual, in units of the training cells' mean squared
residual), so a cell that lights up features the training cells never used still scores
high.

Only numpy here; scikit-learn is imported when a reference is fitted.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["APPEARANCE_DIMS", "DEFAULT_PERCENTILE", "MAX_DIMS", "Mahalanobis",
           "ScopeReference", "appearance", "fit_scope"]

#: Validation cells at or below this percentile are in scope (see the module's text).
DEFAULT_PERCENTILE = 99.5
#: Features wider than this are reduced by principal components first.
MAX_DIMS = 256
#: Width of :func:`appearance`.
APPEARANCE_DIMS = 7
VIEWS = ("features", "appearance")


def appearance(x: np.ndarray) -> np.ndarray:
    """Size and stain of the cells of a model input batch ``(N, H, W, 3)`` in 0-255.

    Returns ``(N, 7)`` float32: the fraction of non-black pixels, then the mean and the
    standard deviation of R, G and B over the non-black pixels (0 for an all-black crop).
    """
    x = np.asarray(x, np.float32)
    cell = x.max(axis=-1) > 0
    n = np.maximum(cell.sum(axis=(1, 2)), 1)[:, None]
    w = cell[..., None]
    mean = (x * w).sum(axis=(1, 2)) / n
    var = (((x - mean[:, None, None, :]) ** 2) * w).sum(axis=(1, 2)) / n
    return np.concatenate([cell.mean(axis=(1, 2))[:, None], mean, np.sqrt(var)],
                          axis=1).astype(np.float32)


@dataclass(frozen=True)
class Mahalanobis:
    """One view's reference: Mahalanobis distance to the training cells, relative to the
    validation cells' percentile (``scale``)."""

    mean: np.ndarray
    precision: np.ndarray
    scale: float = 1.0
    components: np.ndarray | None = None
    residual_scale: float = 1.0

    def distance(self, x) -> np.ndarray:
        """Mahalanobis distance (float64, ``(N,)``) of vectors ``(N, d)``."""
        x = np.asarray(x, np.float64).reshape(len(x), -1) - self.mean
        extra = 0.0
        if self.components is not None:
            proj = x @ self.components.T.astype(np.float64)
            resid = np.sum(x * x, axis=1) - np.sum(proj * proj, axis=1)
            extra = np.maximum(resid, 0.0) / max(self.residual_scale, 1e-12)
            x = proj
        d2 = np.einsum("ij,jk,ik->i", x, self.precision.astype(np.float64), x) + extra
        return np.sqrt(np.maximum(d2, 0.0))

    def relative(self, x) -> np.ndarray:
        """:meth:`distance` divided by the validation percentile."""
        return self.distance(x) / max(self.scale, 1e-12)

    @classmethod
    def reference(cls, train, max_dims: int) -> Mahalanobis:
        """The training rows' mean and shrunk precision, ``scale`` 1."""
        from sklearn.covariance import LedoitWolf

        train = np.asarray(train, np.float64).reshape(len(train), -1)
        mean = train.mean(axis=0)
        x = train - mean
        components, residual_scale = None, 1.0
        if x.shape[1] > max_dims:
            k = max(1, min(max_dims, len(x) - 1))
            components = np.linalg.svd(x, full_matrices=False)[2][:k]
            proj = x @ components.T
            resid = np.sum(x * x, axis=1) - np.sum(proj * proj, axis=1)
            residual_scale = float(max(np.mean(resid), 1e-12))
            x = proj
        precision = LedoitWolf(assume_centered=True).fit(x).precision_
        return cls(mean.astype(np.float32), precision.astype(np.float32), 1.0,
                   None if components is None else components.astype(np.float32),
                   residual_scale)

    def scaled(self, distances, percentile: float) -> Mahalanobis:
        """This reference with ``scale`` the ``percentile`` of ``distances``."""
        return dataclasses.replace(self, scale=float(np.percentile(distances, percentile)))

    @classmethod
    def fit(cls, train, val, percentile: float, max_dims: int) -> Mahalanobis:
        """Fitted on ``train``, scaled by the percentile of ``val``'s distances."""
        ref = cls.reference(train, max_dims)
        return ref.scaled(ref.distance(val), percentile)

    @classmethod
    def fit_by_subject(cls, rows, subjects, percentile: float,
                       max_dims: int) -> Mahalanobis:
        """Reference fitted on all ``rows``, scaled by the percentile of their
        leave-one-subject-out distances (each subject's rows against a reference fitted on
        the other subjects'): what a cell of a new subject scores."""
        rows = np.asarray(rows, np.float64).reshape(len(rows), -1)
        subjects = np.asarray(subjects).astype(str)
        loso = np.empty(len(rows))
        for s in np.unique(subjects):
            own = subjects == s
            loso[own] = cls.reference(rows[~own], max_dims).distance(rows[own])
        return cls.reference(rows, max_dims).scaled(loso, percentile)


@dataclass(frozen=True)
class ScopeReference:
    """The training cells' distribution in each view and the out-of-scope threshold.

    Attributes
    ----------
    views : dict of str to Mahalanobis
        ``"features"`` and ``"appearance"``.
    feature_dims : int
        Width of the model's features; the input of :meth:`score` is those features
        followed by :func:`appearance`.
    threshold : float
        Validation percentile of the larger relative distance; a score above 1 (relative
        distance above ``threshold``) is out of scope.
    meta : dict
        Facts for the card: ``percentile``, ``n_reference``, ``n_validation``,
        ``validation_flagged``, ``feature_dims``, ``dims``.
    """

    views: dict[str, Mahalanobis]
    feature_dims: int
    threshold: float
    meta: dict[str, Any] = field(default_factory=dict)

    def _split(self, x) -> dict[str, np.ndarray]:
        x = np.asarray(x, np.float64).reshape(len(x), -1)
        return {"features": x[:, :self.feature_dims], "appearance": x[:, self.feature_dims:]}

    def relative_distance(self, x) -> np.ndarray:
        """The larger of the views' relative distances of ``(N, feature_dims + 7)`` rows."""
        parts = self._split(x)
        return np.max([self.views[v].relative(parts[v]) for v in VIEWS], axis=0)

    def score(self, x) -> np.ndarray:
        """Out-of-scope score (above 1: out of scope) of ``(N, feature_dims + 7)`` rows:
        model features followed by :func:`appearance`."""
        return self.relative_distance(x) / max(self.threshold, 1e-12)

    def arrays(self) -> dict[str, np.ndarray]:
        """The arrays to store beside the card (see :meth:`from_arrays`)."""
        out = {"threshold": np.float64(self.threshold),
               "feature_dims": np.int64(self.feature_dims)}
        for name, v in self.views.items():
            out.update({f"{name}_mean": v.mean, f"{name}_precision": v.precision,
                        f"{name}_scale": np.float64(v.scale),
                        f"{name}_residual_scale": np.float64(v.residual_scale)})
            if v.components is not None:
                out[f"{name}_components"] = v.components
        return out

    @classmethod
    def from_arrays(cls, arrays: Mapping[str, np.ndarray],
                    meta: Mapping[str, Any] | None = None) -> ScopeReference:
        """Rebuild from :meth:`arrays` (e.g. an ``np.load`` of the card's ``.npz``)."""
        views = {}
        for name in VIEWS:
            comps = arrays.get(f"{name}_components")
            views[name] = Mahalanobis(
                np.asarray(arrays[f"{name}_mean"], np.float32),
                np.asarray(arrays[f"{name}_precision"], np.float32),
                float(arrays[f"{name}_scale"]),
                None if comps is None else np.asarray(comps, np.float32),
                float(arrays[f"{name}_residual_scale"]))
        return cls(views, int(arrays["feature_dims"]), float(arrays["threshold"]),
                   dict(meta or {}))


def fit_scope(train, val, percentile: float = DEFAULT_PERCENTILE,
              max_dims: int = MAX_DIMS, train_subjects=None,
              val_subjects=None) -> ScopeReference:
    """Fit the reference on training rows, set the thresholds on validation rows (and,
    with the rows' subjects, the appearance view's on new subjects; see the module's text).

    Parameters
    ----------
    train : (n, d + 7) array
        Rows of the training cells (unaugmented): model features followed by
        :func:`appearance`.
    val : (m, d + 7) array
        Rows of validation cells of the same kind, not trained on.
    percentile : float
        Percentile of the validation cells used for each view and for the score.
    max_dims : int
        Views wider than this are reduced to this many principal components (at most
        ``n - 1``).
    train_subjects, val_subjects : sequence, optional
        The subject of each row. With both (and at least 3 subjects), the appearance view
        is fitted on all rows and scaled by their leave-one-subject-out distances; without,
        like the features, it is fitted on the training rows and scaled on the validation
        rows.

    Returns
    -------
    ScopeReference
    """
    train = np.asarray(train, np.float64).reshape(len(train), -1)
    val = np.asarray(val, np.float64).reshape(len(val), -1)
    if len(train) < 2 or len(val) < 1:
        raise ValueError("fit_scope needs at least 2 training and 1 validation rows")
    d = train.shape[1] - APPEARANCE_DIMS
    if d < 1:
        raise ValueError(f"rows must hold model features and {APPEARANCE_DIMS} appearance "
                         f"values, got width {train.shape[1]}")
    views = {"features": Mahalanobis.fit(train[:, :d], val[:, :d], percentile, max_dims)}
    subjects = None
    if train_subjects is not None and val_subjects is not None:
        subjects = np.concatenate([np.asarray(train_subjects, str),
                                   np.asarray(val_subjects, str)])
        if len(subjects) != len(train) + len(val):
            raise ValueError("train_subjects and val_subjects must name one subject per row")
    if subjects is not None and len(np.unique(subjects)) >= 3:
        views["appearance"] = Mahalanobis.fit_by_subject(
            np.concatenate([train[:, d:], val[:, d:]]), subjects, percentile, max_dims)
        on = f"leave-one-subject-out over {len(np.unique(subjects))} subjects"
    else:
        views["appearance"] = Mahalanobis.fit(train[:, d:], val[:, d:], percentile, max_dims)
        on = "validation cells"
    ref = ScopeReference(views, d, 1.0)
    rel = ref.relative_distance(val)
    threshold = float(np.percentile(rel, percentile))
    meta = {"percentile": float(percentile), "n_reference": int(len(train)),
            "n_validation": int(len(val)), "feature_dims": int(d),
            "dims": int(views["features"].precision.shape[0]),
            "validation_flagged": float(np.mean(rel > threshold)),
            "appearance_scaled_on": on}
    return ScopeReference(views, d, threshold, meta)
