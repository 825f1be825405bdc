"""Nucleus grouping: lobes of one nucleus become one cell, platelets and debris go."""

from __future__ import annotations

import math

import numpy as np

from allnet_core.segmentation._morphology import dilate, erode, fill_holes, keep_labels
from allnet_core.segmentation._params import AutoParams


def group_nuclei(nuc: np.ndarray, p: AutoParams, area_floor: float) -> tuple[np.ndarray, int]:
    """Group nucleus fragments (lobes) and drop small groups; return labels and count.

    Fragments closer than ``group_distance`` times the largest fragment's radius form one
    group. Groups smaller than ``area_floor`` or ``relative_area`` of the largest group are
    dropped; a group cut by the image border needs ``border_factor`` of that. A group's
    largest fragment must reach ``min_lobe`` of the floor (platelet clumps are granules).
    """
    from skimage.measure import label

    # thin lines (blue fringes of red-cell edges) are not nuclei
    nuc = dilate(erode(nuc, 1), 1)
    nuc = fill_holes(nuc)
    comp, n = label(nuc, return_num=True, connectivity=2)
    if n == 0:
        return comp.astype(np.int32), 0
    areas = np.bincount(comp.ravel())[1:]
    # join fragments closer than a fraction of the largest fragment's radius
    r_big = math.sqrt(areas.max() / math.pi)
    gap = max(1, int(round(p.group_distance * r_big)))
    groups, n = label(dilate(nuc, gap), return_num=True, connectivity=2)
    groups = groups.astype(np.int32)
    groups[~nuc] = 0
    garea = np.bincount(groups.ravel(), minlength=n + 1)
    garea[0] = 0
    least = max(area_floor, p.relative_area * garea.max())
    floor = np.full(n + 1, least)
    # a cell cut by the image border shows only part of its nucleus
    for edge in (groups[0], groups[-1], groups[:, 0], groups[:, -1]):
        floor[edge] = least * p.border_factor
    keep = garea >= floor
    # a nucleus holds one sizeable piece (a lobe at least); a platelet clump is granules
    biggest = np.zeros(n + 1, np.int64)
    np.maximum.at(biggest, groups.ravel(), np.concatenate([[0], areas])[comp.ravel()])
    keep &= biggest >= p.min_lobe * floor
    keep[0] = False
    return keep_labels(groups, keep), int(keep.sum())
