"""Out-of-scope detection: how unlike the training cells a cell's features are.

A model only knows the kind of cell it was trained on. The features that its classifier
head sees (the input of the last ``Dense`` layer: ALLNet's second 4096-unit layer) of the
training cells are summarised by their mean and a shrunk covariance (Ledoit-Wolf); a new
cell's score is its Mahalanobis distance to that distribution. The threshold is the 99th
percentile of the distances of the validation cells (cells the model did not train on but
of the same kind), so about 1 % of in-distribution cells are flagged.

Wide features (more than ``max_dims``, e.g. ALLNet's 4096) are first projected on their
``max_dims`` principal components; the distance then adds the part of the feature vector
outside that subspace (the squared residual, in units of the training cells' mean squared
residual), so a cell that lights up features the training cells never used still scores
high.

Only numpy here; scikit-learn is imported when a reference is fitted.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["DEFAULT_PERCENTILE", "MAX_DIMS", "ScopeReference", "fit_scope"]

#: Validation cells at or below this percentile of distance are in scope.
DEFAULT_PERCENTILE = 99.0
#: Features wider than this are reduced by principal components first.
MAX_DIMS = 256


@dataclass(frozen=True)
class ScopeReference:
    """The training cells' feature distribution and the out-of-scope threshold.

    Attributes
    ----------
    mean : (d,) float32 array
        Mean training feature vector.
    precision : (k, k) float32 array
        Inverse of the shrunk covariance (in the principal subspace when reduced).
    threshold : float
        Distance above which a cell is out of scope.
    components : (k, d) float32 array or None
        Principal axes when the features were reduced, else None.
    residual_scale : float
        Mean squared residual outside the principal subspace of the training cells
        (1 without reduction).
    meta : dict
        Facts for the card: ``percentile``, ``n_reference``, ``n_validation``,
        ``validation_flagged``, ``dims``, ``feature_dims``.
    """

    mean: np.ndarray
    precision: np.ndarray
    threshold: float
    components: np.ndarray | None = None
    residual_scale: float = 1.0
    meta: dict[str, Any] = field(default_factory=dict)

    def distance(self, features) -> np.ndarray:
        """Mahalanobis distance (float64, ``(N,)``) of feature vectors ``(N, d)``."""
        x = np.asarray(features, np.float64).reshape(len(features), -1) - self.mean
        if self.components is not None:
            proj = x @ self.components.T.astype(np.float64)
            resid = np.sum(x * x, axis=1) - np.sum(proj * proj, axis=1)
            extra = np.maximum(resid, 0.0) / max(self.residual_scale, 1e-12)
            x = proj
        else:
            extra = 0.0
        d2 = np.einsum("ij,jk,ik->i", x, self.precision.astype(np.float64), x) + extra
        return np.sqrt(np.maximum(d2, 0.0))

    def flags(self, features) -> np.ndarray:
        """True for the cells whose distance exceeds the threshold."""
        return self.distance(features) > self.threshold

    def arrays(self) -> dict[str, np.ndarray]:
        """The arrays to store beside the card (see :meth:`from_arrays`)."""
        out = {"mean": self.mean, "precision": self.precision,
               "threshold": np.float64(self.threshold),
               "residual_scale": np.float64(self.residual_scale)}
        if self.components is not None:
            out["components"] = self.components
        return out

    @classmethod
    def from_arrays(cls, arrays: Mapping[str, np.ndarray],
                    meta: Mapping[str, Any] | None = None) -> ScopeReference:
        """Rebuild from :meth:`arrays` (e.g. an ``np.load`` of the card's ``.npz``)."""
        comps = arrays.get("components") if "components" in arrays else None
        return cls(mean=np.asarray(arrays["mean"], np.float32),
                   precision=np.asarray(arrays["precision"], np.float32),
                   threshold=float(arrays["threshold"]),
                   components=None if comps is None else np.asarray(comps, np.float32),
                   residual_scale=float(arrays["residual_scale"]), meta=dict(meta or {}))


def fit_scope(train_features, val_features, percentile: float = DEFAULT_PERCENTILE,
              max_dims: int = MAX_DIMS) -> ScopeReference:
    """Fit the reference on training features, set the threshold on validation features.

    Parameters
    ----------
    train_features : (n, d) array
        Features of the training cells (unaugmented).
    val_features : (m, d) array
        Features of validation cells of the same kind, not trained on.
    percentile : float
        Percentile of the validation distances used as the threshold.
    max_dims : int
        Features wider than this are reduced to this many principal components (at most
        ``n - 1``).

    Returns
    -------
    ScopeReference
    """
    from sklearn.covariance import LedoitWolf

    train = np.asarray(train_features, np.float64).reshape(len(train_features), -1)
    val = np.asarray(val_features, np.float64).reshape(len(val_features), -1)
    if len(train) < 2 or len(val) < 1:
        raise ValueError("fit_scope needs at least 2 training and 1 validation feature vector")
    mean = train.mean(axis=0)
    x = train - mean
    components, residual_scale = None, 1.0
    if x.shape[1] > max_dims:
        k = max(1, min(max_dims, len(x) - 1))
        _, _, vt = np.linalg.svd(x, full_matrices=False)
        components = vt[:k]
        proj = x @ components.T
        resid = np.sum(x * x, axis=1) - np.sum(proj * proj, axis=1)
        residual_scale = float(max(np.mean(resid), 1e-12))
        x = proj
    precision = LedoitWolf(assume_centered=True).fit(x).precision_
    ref = ScopeReference(mean=mean.astype(np.float32), precision=precision.astype(np.float32),
                         threshold=np.inf,
                         components=None if components is None else components.astype(np.float32),
                         residual_scale=residual_scale)
    d_val = ref.distance(val)
    threshold = float(np.percentile(d_val, percentile))
    meta = {"percentile": float(percentile), "n_reference": int(len(train)),
            "n_validation": int(len(val)), "feature_dims": int(train.shape[1]),
            "dims": int(x.shape[1]),
            "validation_flagged": float(np.mean(d_val > threshold))}
    return ScopeReference(mean=ref.mean, precision=ref.precision, threshold=threshold,
                          components=ref.components, residual_scale=residual_scale, meta=meta)
