"""The per-cell table of a single-cell image (the whole image is the one cell's crop)."""

from __future__ import annotations

from typing import Any

import numpy as np

#: Columns of a cell table before classification, in order.
_CELL_COLUMNS = [
    "label", "bbox_min_row", "bbox_min_col", "bbox_max_row", "bbox_max_col", "area",
    "centroid_row", "centroid_col", "touches_border", "scale",
]


def _whole_cell(a: np.ndarray) -> tuple[np.ndarray, np.ndarray, Any]:
    """A single-cell image as one cell: labels, the image as its crop, the table."""
    import pandas as pd

    h, w = a.shape[:2]
    mask = a.any(axis=-1)
    if not mask.any():  # an all-black image holds no cell
        mask = np.zeros((h, w), bool)
        crops = np.zeros((0, h, w, 3), np.uint8)
        return mask.astype(np.int32), crops, _empty_cell_table()
    rr, cc = np.nonzero(mask)
    r0, r1, c0, c1 = int(rr.min()), int(rr.max()) + 1, int(cc.min()), int(cc.max()) + 1
    row = dict(
        label=1, bbox_min_row=r0, bbox_min_col=c0, bbox_max_row=r1, bbox_max_col=c1,
        area=int(rr.size), centroid_row=float(rr.mean()), centroid_col=float(cc.mean()),
        touches_border=bool(r0 == 0 or c0 == 0 or r1 == h or c1 == w), scale=1.0,
    )
    return mask.astype(np.int32), a[None].copy(), pd.DataFrame([row], columns=_CELL_COLUMNS)


def _empty_cell_table():
    """A cell table without rows, with the columns and types of a filled one."""
    import pandas as pd

    return pd.DataFrame({c: [] for c in _CELL_COLUMNS}).astype(
        {"label": np.int32, "area": np.int64, "touches_border": bool, "scale": float}
    )
