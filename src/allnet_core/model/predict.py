"""The one predictor: model input batches in, class probabilities and P(positive) out.

Batches are predicted with ``model.predict_on_batch`` at a few fixed batch shapes (a short
batch is padded with black images to the next power of two, at most the batch size), so
the backend compiles the forward pass once per shape (``tf.function`` on TensorFlow,
``jax.jit`` on JAX) and keeps the weights resident; Keras' ``predict`` would rebuild its
data pipeline on every call. P(positive) is read from the positive class's column, which
:func:`~allnet_core.model.loading.load_model` found from the class names: nothing here
assumes that column 1 is ALL.

A model loaded with its card (:mod:`allnet_core.model.card`) brings its calibration and its
out-of-scope reference: :meth:`Predictor.calibrate` turns raw P(positive) into calibrated
P(positive), and :meth:`Predictor.predict_batch_features` also returns the features that
:meth:`Predictor.oos_score` compares with the training cells'. Without a card both are
the identity (calibrated = raw) and ``nan``.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from allnet_core.classes import POSITIVE_INDEX
from allnet_core.errors import ConfigError, ModelError
from allnet_core.model.calibration import Calibration
from allnet_core.model.loading import LoadedModel

__all__ = ["DEFAULT_BATCH", "Predictor", "check_batch_size", "check_probabilities",
           "predict_features", "predict_p_all"]

#: Images per forward pass unless the caller says otherwise.
DEFAULT_BATCH = 16


class Predictor:
    """Class probabilities of prepared model input, at fixed padded batch shapes.

    Parameters
    ----------
    model : LoadedModel or keras.Model
        A model from :func:`~allnet_core.model.loading.load_model` (its positive class is
        used), or a Keras model in memory.
    positive_index : int, optional
        Column of the positive class; default the loaded model's, else
        :data:`allnet_core.classes.POSITIVE_INDEX`.
    calibration : Calibration, optional
        Default the loaded model's card's, else the identity.
    scope : ScopeReference, optional
        The out-of-scope reference; default the loaded model's card's, else none.

    Examples
    --------
    >>> predictor = Predictor(load_model("runs/demo"))  # doctest: +SKIP
    >>> p_raw = predictor.p_positive(x)  # x: (N, H, W, 3) float32 in 0-255  # doctest: +SKIP
    >>> p_all = predictor.calibrate(p_raw)  # doctest: +SKIP
    """

    def __init__(self, model, positive_index: int | None = None,
                 calibration: Calibration | None = None, scope=None):
        self.source = getattr(model, "source", None) or getattr(model, "name", "the model")
        if isinstance(model, LoadedModel):
            if positive_index is None:
                positive_index = model.positive_index
            card = model.card
            if card is not None and card.usable:
                calibration = calibration or card.calibration
                scope = scope if scope is not None else card.scope
            model = model.model
        self.model = model
        self.positive_index = POSITIVE_INDEX if positive_index is None else int(positive_index)
        self.calibration = calibration or Calibration()
        self.scope = scope
        self._padded: dict[int, np.ndarray] = {}
        self._scoring = None

    def _padded_input(self, x: np.ndarray, batch_size: int) -> np.ndarray:
        """``x`` padded with black images up to the next power of two (at most
        ``batch_size``), so the backend compiles at most ``log2(batch_size) + 2`` shapes
        and never computes more than twice the cells asked for."""
        n = len(x)
        target = padded_size(n, batch_size)
        if n < target:
            pad = self._padded.get(target)
            if pad is None or pad.shape[1:] != x.shape[1:]:
                pad = np.zeros((target, *x.shape[1:]), np.float32)
                self._padded[target] = pad
            pad[:n] = x
            pad[n:] = 0
            x = pad
        return x

    def predict_batch(self, x: np.ndarray, batch_size: int) -> np.ndarray:
        """Raw probabilities for ``len(x) <= batch_size`` inputs, at a few fixed batch
        shapes (see :meth:`_padded_input`)."""
        probs = self.model.predict_on_batch(self._padded_input(x, batch_size))
        probs = np.asarray(probs, dtype=np.float32)[:len(x)]
        check_probabilities(probs, self.source)
        return probs

    def predict_batch_features(self, x: np.ndarray,
                               batch_size: int) -> tuple[np.ndarray, np.ndarray]:
        """Raw probabilities and out-of-scope rows of ``len(x) <= batch_size`` inputs,
        from one forward pass: the head features (the last ``Dense`` layer's input)
        followed by the cell's size and stain in the input
        (:func:`allnet_core.model.scope.appearance`)."""
        from allnet_core.model.scope import appearance

        if self._scoring is None:
            from allnet_core.model.features import scoring_model

            self._scoring = scoring_model(self.model)
        probs, feats = self._scoring.predict_on_batch(self._padded_input(x, batch_size))
        n = len(x)
        feats = np.asarray(feats, np.float32).reshape(len(feats), -1)[:n]
        probs = np.asarray(probs, np.float32)[:n]
        check_probabilities(probs, self.source)
        return probs, np.concatenate([feats, appearance(x)], 1)

    def calibrate(self, p_raw) -> np.ndarray:
        """Calibrated P(positive) (float64) of raw P(positive), by the card's calibration."""
        return np.clip(self.calibration.apply(p_raw), 0.0, 1.0)

    def oos_score(self, features) -> np.ndarray:
        """Out-of-scope score per cell (above 1: out of scope; ``nan`` without a
        reference) of rows from :meth:`predict_batch_features`, see
        :meth:`allnet_core.model.scope.ScopeReference.score`."""
        if self.scope is None or features is None:
            return np.full(0 if features is None else len(features), np.nan)
        return self.scope.score(features)

    def proba(self, x: np.ndarray, batch_size: int = DEFAULT_BATCH) -> np.ndarray:
        """Class probabilities ``(N, n_classes)`` float32 of an ``(N, H, W, 3)`` input."""
        batch_size = check_batch_size(batch_size)
        parts = [self.predict_batch(x[i:i + batch_size], batch_size)
                 for i in range(0, len(x), batch_size)]
        if not parts:
            return np.zeros((0, *self.model.output_shape[1:]), np.float32)
        return np.concatenate(parts)

    def p_positive(self, x: np.ndarray, batch_size: int = DEFAULT_BATCH) -> np.ndarray:
        """Raw (uncalibrated) P(positive) ``(N,)`` float64 in [0, 1] of an ``(N, H, W, 3)``
        input (see :meth:`calibrate`)."""
        probs = self.proba(x, batch_size)
        return np.clip(probs[:, self.positive_index].astype(np.float64), 0.0, 1.0)


def predict_p_all(model, batches, positive_index: int | None = None,
                  batch_size: int | None = None) -> np.ndarray:
    """P(positive) (P(ALL) for ALLNet) of every image, in order.

    Parameters
    ----------
    model : Predictor, LoadedModel or keras.Model
    batches : array or batches
        An ``(N, H, W, 3)`` float32 array in 0-255; or a feed (``len`` and indexing, like
        :class:`allnet_core.feed.TrainingFeed`) or any iterable of batches, each an array
        or an ``(x, y)`` pair.
    positive_index : int, optional
        Column of the positive class; default the predictor's or loaded model's, else
        :data:`allnet_core.classes.POSITIVE_INDEX`.
    batch_size : int, optional
        Largest forward pass; default the first batch's length (16 for an array).

    Returns
    -------
    (N,) float64 array in [0, 1]
    """
    if not isinstance(model, Predictor):
        model = Predictor(model, positive_index)
    elif positive_index is not None and positive_index != model.positive_index:
        model = Predictor(model.model, positive_index)
    if isinstance(batches, np.ndarray):
        return model.p_positive(batches, batch_size or DEFAULT_BATCH)
    out = []
    for item in _iter_batches(batches):
        x = item[0] if isinstance(item, tuple) else item
        batch_size = batch_size or max(len(x), 1)
        out.append(model.p_positive(np.asarray(x, np.float32), batch_size))
    return np.concatenate(out) if out else np.zeros(0)


def predict_features(model, batches, batch_size: int | None = None
                     ) -> tuple[np.ndarray, np.ndarray]:
    """Raw P(positive) and head features (see :meth:`Predictor.predict_batch_features`) of
    every image, in order.

    Parameters are those of :func:`predict_p_all`.

    Returns
    -------
    p : (N,) float64 array in [0, 1]
    features : (N, d) float32 array
    """
    if not isinstance(model, Predictor):
        model = Predictor(model)
    parts, feats = [], []
    items = [batches] if isinstance(batches, np.ndarray) else _iter_batches(batches)
    for item in items:
        x = np.asarray(item[0] if isinstance(item, tuple) else item, np.float32)
        size = batch_size or max(len(x), 1)
        for i in range(0, len(x), size):
            probs, f = model.predict_batch_features(x[i:i + size], size)
            parts.append(np.clip(probs[:, model.positive_index].astype(np.float64), 0, 1))
            feats.append(f)
    if not parts:
        return np.zeros(0), np.zeros((0, 0), np.float32)
    return np.concatenate(parts), np.concatenate(feats)


def _iter_batches(batches) -> Iterable:
    """The batches of a feed (``len`` and indexing) or of any iterable."""
    if hasattr(batches, "__len__") and hasattr(batches, "__getitem__"):
        return (batches[i] for i in range(len(batches)))
    return iter(batches)


def padded_size(n: int, batch_size: int) -> int:
    """The batch shape that ``n <= batch_size`` inputs are padded to."""
    size = 1
    while size < n:
        size *= 2
    return min(size, batch_size)


def check_probabilities(probs: np.ndarray, source: str = "the model") -> None:
    """Raise :class:`ModelError` unless every value of ``probs`` is a probability: finite
    and within [0, 1] (a little float rounding allowed)."""
    if probs.size == 0:
        return
    if not np.isfinite(probs).all():
        raise ModelError(f"{source}: the model's outputs hold NaN or infinite values (its "
                         "weights are broken, e.g. training diverged: retrain with a lower lr)")
    lo, hi = float(probs.min()), float(probs.max())
    if lo < -1e-3 or hi > 1 + 1e-3:
        raise ModelError(f"{source}: the model's outputs range from {lo:.4g} to {hi:.4g}, so "
                         "they are not probabilities; the model needs a softmax output layer")


def check_batch_size(batch_size) -> int:
    """``batch_size`` as an int, or :class:`ConfigError` if it is not a positive integer."""
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) \
            or batch_size < 1:
        raise ConfigError(f"batch_size must be a positive integer, got {batch_size!r}")
    return int(batch_size)
