"""Nucleus candidates that are not white cells: faint colour, loose scatters, red cells.

* :func:`standing_out` (pale stains only): keep what stands ``min_standout`` standard
  deviations above the rest of the stained material; the bluish rims of red cells, stain
  debris and faint platelet dust do not;
* :func:`compact`: a nucleus group fills ``min_solidity`` of its convex hull, and more
  (up to ``small_solidity``) the smaller it is than a red cell of the field; a platelet
  clump is a loose or ragged scatter (the lobe rule, ``min_lobe``, lives with the grouping
  in :mod:`._nuclei`);
* :func:`like_red_cells`: four or more cells whose nuclei cover half of the stained
  material are the red cells themselves; the caller labels nothing and warns.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

from allnet_core.segmentation._morphology import EIGHT_CONNECTED, hysteresis, keep_labels
from allnet_core.segmentation._params import AutoParams

#: Candidates that, this many or more, cover :data:`RED_CELL_COVER` of the stained
#: material are the red cells themselves.
RED_CELL_COUNT = 4
RED_CELL_COVER = 0.5
#: Pale stains (nuclei only weakly apart from the rest) double the nucleus area floor.
WEAK_FLOOR = 2.0
#: The red-cell size of an image counts as measured (for :func:`compact`) when its
#: non-nucleus material amounts to this many red cells: a field, not a crop around one
#: white cell, whose own cytoplasm would pass for a red cell.
RED_CELLS_MEASURED = 5.0


def standing_out(nuc: np.ndarray, feat: np.ndarray, rest_mean: float, rest_std: float,
                 p: AutoParams) -> np.ndarray:
    """The part of the nucleus mask that stands out from the rest of the stained material.

    Pixels at least half of ``p.min_standout`` standard deviations (``rest_std``) above
    ``rest_mean`` (the non-nucleus material's mean :func:`~._features.blue_green`), in the
    pieces that reach ``p.min_standout`` standard deviations.
    """
    low = rest_mean + 0.5 * p.min_standout * rest_std
    high = rest_mean + p.min_standout * rest_std
    nuc = hysteresis(weak=nuc & (feat > low), strong=feat > high)
    comp, n = ndi.label(nuc, structure=EIGHT_CONNECTED)
    if n == 0:
        return nuc
    area = np.bincount(comp.ravel(), minlength=n + 1).astype(np.float64)
    total = np.bincount(comp.ravel(), weights=feat.ravel(), minlength=n + 1)
    keep = total >= high * area
    keep[0] = False
    return keep[comp]


def like_red_cells(cells: np.ndarray, nuclei: np.ndarray, material: np.ndarray) -> bool:
    """Whether the labelled cells look like the red cells of the field (see module)."""
    n = int(cells.max())
    if n < RED_CELL_COUNT:
        return False
    stained = int(np.count_nonzero(material | (cells > 0)))
    return np.count_nonzero(nuclei) >= RED_CELL_COVER * max(stained, 1)


def compact(groups: np.ndarray, n: int, p: AutoParams,
            rbc_area: float | None = None) -> tuple[np.ndarray, int]:
    """Keep the nucleus groups that fill enough of their convex hull.

    A nucleus, even a lobed one, is compact; a clump of platelets is a scatter of granules
    whose hull is partly empty. Every group fills ``p.min_solidity`` of its hull. Lobed
    (less compact) nuclei belong to the large granulocytes, so a group smaller than a red
    cell (``rbc_area`` pixels, when measured) must be rounder: the solidity it needs rises
    linearly from ``p.min_solidity`` at one red-cell area to ``p.small_solidity`` at none.
    A platelet clump, about a third of a red cell and ragged, fails this. A group cut by
    the image border shows only part of its nucleus and needs ``p.min_solidity`` only.
    """
    from skimage.measure import regionprops

    if n == 0 or (p.min_solidity <= 0 and p.small_solidity <= 0):
        return groups, n
    keep = np.zeros(n + 1, bool)
    cut = np.zeros(n + 1, bool)
    for edge in (groups[0], groups[-1], groups[:, 0], groups[:, -1]):
        cut[edge] = True
    for region in regionprops(groups):
        need = p.min_solidity
        if rbc_area and not cut[region.label]:
            small = max(1.0 - region.area / rbc_area, 0.0)
            need += small * max(p.small_solidity - p.min_solidity, 0.0)
        keep[region.label] = region.area_convex > 0 and region.area >= need * region.area_convex
    return keep_labels(groups, keep), int(keep.sum())
