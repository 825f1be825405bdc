"""What classification returns: the classified cell table's columns and :class:`ImageResult`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["TABLE_COLUMNS", "ImageResult"]

#: Leading columns of a classified cell table, in order (other columns follow).
TABLE_COLUMNS = ["label", "class", "p_all", "area", "centroid_row", "centroid_col",
                 "bbox_min_row", "bbox_min_col", "bbox_max_row", "bbox_max_col",
                 "touches_border", "scale"]


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
