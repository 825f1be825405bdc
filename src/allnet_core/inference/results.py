"""What classification returns: the classified cell table's columns, :class:`CellScores`
and :class:`ImageResult`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["TABLE_COLUMNS", "CellScores", "ImageResult"]

#: Leading columns of a classified cell table, in order (other columns follow). ``class``
#: is the model's class at the threshold; ``call`` adds ``uncertain`` and ``out_of_scope``
#: (:mod:`allnet_core.inference.calls`); ``p_all`` is calibrated, ``p_all_raw`` not. The
#: columns added with the model card come last, so older readers of the CSV keep working.
TABLE_COLUMNS = ["label", "class", "p_all", "area", "centroid_row", "centroid_col",
                 "bbox_min_row", "bbox_min_col", "bbox_max_row", "bbox_max_col",
                 "touches_border", "scale", "call", "p_all_raw", "oos_score"]


@dataclass
class CellScores:
    """What the model says about each of N cells (from :meth:`Classifier.predict_cells`).

    Attributes
    ----------
    probs : (N, n_classes) float32 array
        Raw class probabilities (averaged over test-time transforms).
    p_all : (N,) float64 array
        Calibrated P(ALL) (the model card's calibration; raw without a card).
    oos_score : (N,) float64 array
        Out-of-scope score, above 1 out of scope (``nan`` without a card).
    p_all_raw : (N,) float64 array
        Raw P(ALL).
    """

    probs: np.ndarray
    p_all: np.ndarray
    oos_score: np.ndarray
    p_all_raw: np.ndarray

    def __len__(self) -> int:
        return len(self.p_all)

    def __getitem__(self, index) -> CellScores:
        return CellScores(self.probs[index], self.p_all[index], self.oos_score[index],
                          self.p_all_raw[index])


@dataclass
class ImageResult:
    """What :meth:`Classifier.classify_image` returns; unpacks as ``labels, table``.

    Attributes
    ----------
    labels : (H, W) int32 array
        Instance labels of the classified cells.
    table : pandas.DataFrame
        One row per cell (see :meth:`Classifier.classify_image`).
    mode : str
        ``"cells"`` or ``"smear"``.
    heatmap : (H, W) float32 array or None
        Grad-CAM mapped into the image (with ``gradcam=True``).
    cell_heatmaps : (N, s, s) float32 array or None
        Grad-CAM per crop (with ``gradcam=True``).
    """

    labels: np.ndarray
    table: Any
    mode: str = "smear"
    heatmap: np.ndarray | None = None
    cell_heatmaps: np.ndarray | None = None

    def __iter__(self):
        return iter((self.labels, self.table))
