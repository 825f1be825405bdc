"""Cut-out cells: cells on a black background, taken whole."""

from __future__ import annotations

import numpy as np

from allnet_core.segmentation._morphology import fill_holes, keep_labels
from allnet_core.segmentation._params import AutoParams


def cutout_labels(valid: np.ndarray, nuc: np.ndarray, p: AutoParams, floor: float) -> np.ndarray:
    """Cells of an image without bright background: every non-black component that holds
    nucleus pixels and is at least ``floor`` pixels and ``relative_area`` of the largest."""
    from skimage.measure import label

    comp, n = label(fill_holes(valid), return_num=True, connectivity=2)
    if n == 0:
        return comp.astype(np.int32)
    areas = np.bincount(comp.ravel())
    areas[0] = 0
    keep = areas >= max(floor, p.relative_area * areas.max())
    keep &= np.bincount(comp[nuc], minlength=n + 1) > 0
    return keep_labels(comp, keep)
