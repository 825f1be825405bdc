"""The auto method from end to end: detect on a reduced image, refine at full resolution.

The steps live in their own modules (thresholds, nucleus grouping, cytoplasm, splitting,
cut-out cells, refinement); this module only runs them in order.
"""

from __future__ import annotations

import numpy as np

from allnet_core.segmentation._cutout import cutout_labels
from allnet_core.segmentation._cytoplasm import grow_cells
from allnet_core.segmentation._features import normalise_white, white_point
from allnet_core.segmentation._morphology import fill_holes, subsample
from allnet_core.segmentation._nuclei import group_nuclei
from allnet_core.segmentation._params import AutoParams
from allnet_core.segmentation._refine import refine
from allnet_core.segmentation._reject import (
    RED_CELLS_MEASURED,
    WEAK_FLOOR,
    compact,
    like_red_cells,
    standing_out,
)
from allnet_core.segmentation._scale import (
    FLOOR_PERCENTILE,
    MAX_DOWNSCALE,
    area_floor,
    choose_downscale,
    red_cell_radius,
)
from allnet_core.segmentation._split import split_touching
from allnet_core.segmentation._thresholds import thresholds
from allnet_core.segmentation.status import STAIN_NOT_RECOGNISED, warn


def _smear_cells(reduced: np.ndarray, th, p: AutoParams, factor: int):
    """Cells and nuclei of a smear field (bright background) on the reduced image.

    Returns ``(coarse, coarse_nuc, floor, rule)``, None when it holds no cell, or a
    message when the candidates look like the red cells of the field.
    """
    if not th.contrast_ok:
        return None
    material = th.valid & (reduced[..., 1] <= th.t_g)
    rbc_radius = None
    if p.min_area is None:
        rbc_radius = red_cell_radius((material & ~th.nuc)[::2, ::2], FLOOR_PERCENTILE, 2)
        if rbc_radius is not None and p.downscale is None and factor < MAX_DOWNSCALE:
            # the reduction factor was chosen from the red cells: their reduced radius is
            # about rbc_pixels; far more means clumped red cells merged in the material
            rbc_radius = min(rbc_radius, 1.5 * p.rbc_pixels)
    floor = area_floor(p, int(th.valid.sum()), factor, rbc_radius)
    nuc = th.nuc
    if th.weak:  # a pale stain: only what stands out, and twice the size floor
        nuc = standing_out(nuc, th.feat, th.rest_mean, th.rest_std, p)
        floor *= WEAK_FLOOR
    rbc_area = None
    if rbc_radius is not None:
        rbc_area = np.pi * rbc_radius**2
        if np.count_nonzero(material & ~th.nuc) < RED_CELLS_MEASURED * rbc_area:
            rbc_area = None  # a crop around a cell: its red cells are not measured
    groups, n = compact(*group_nuclei(nuc, p, floor), p, rbc_area)
    if n == 0:
        return None
    coarse, rule = grow_cells(groups, n, material, reduced, p)
    coarse_nuc = np.where(groups > 0, coarse, 0).astype(np.int32)
    if like_red_cells(coarse, coarse_nuc, material):
        return (f"{int(coarse.max())} candidate white cells look like the red cells of the "
                "field (their nuclei cover half of the stained material)")
    return coarse, coarse_nuc, floor, rule


def _detect(reduced: np.ndarray, p: AutoParams, factor: int):
    """Cells and nuclei on the reduced image.

    Returns ``(coarse, coarse_nuc, t_nuc, t_g, rule, feature)``, or None when it holds no cell.
    Warns (:data:`~.status.STAIN_NOT_RECOGNISED`) when the red cells fell on the nucleus
    side and no white cell could be told from them.
    """
    th = thresholds(reduced, p)
    rule = None
    if th.cutout:
        floor = area_floor(p, int(th.valid.sum()), factor)
        coarse = cutout_labels(th.valid, th.nuc, p, floor)
        coarse_nuc = np.where(fill_holes(th.nuc) & (coarse > 0), coarse, 0).astype(np.int32)
    else:
        found = _smear_cells(reduced, th, p, factor)
        if found is None or isinstance(found, str):
            if th.red_cells_in or found is not None:
                why = found or ("the red cells take the colour of nuclei and no white cell "
                                "stands out from them")
                warn(STAIN_NOT_RECOGNISED, f"{why}; no white cells labelled", stacklevel=4)
            return None
        coarse, coarse_nuc, floor, rule = found
    if coarse.max() == 0:
        return None
    coarse, coarse_nuc = split_touching(coarse, coarse_nuc, floor, p)
    return coarse, coarse_nuc, th.t_nuc, th.t_g, rule, th.feature


def auto_labels(a: np.ndarray, p: AutoParams, want_nuclei: bool = True):
    """Cell and nucleus labels of the auto method (int32; nuclei None unless wanted)."""
    bg = white_point(a, p.black_level)
    if bg is not None:
        a = normalise_white(a, bg)
    factor = choose_downscale(a, p)
    found = _detect(subsample(a, factor), p, factor)
    if found is None:
        empty = np.zeros(a.shape[:2], np.int32)
        return empty, (empty.copy() if want_nuclei else None)
    coarse, coarse_nuc, t_nuc, t_g, rule, feature = found
    if factor == 1:
        return coarse, (coarse_nuc if want_nuclei else None)
    return refine(a, coarse, coarse_nuc, t_nuc, t_g, rule, p, factor, want_nuclei, feature)
