"""Touching cells: split a cell that is two round cells by a distance-transform watershed."""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

from allnet_core.segmentation._morphology import EIGHT_CONNECTED, relabel_sequential
from allnet_core.segmentation._params import AutoParams


def _parts(m: np.ndarray, split_depth: float):
    """Watershed parts of the mask ``m`` around its deep distance maxima, or None.

    Maxima count when they stand out by more than ``split_depth`` of the highest; near-equal
    neighbouring tops merge into one plateau. Returns the part labels and their number, or
    None when ``m`` is too small or has a single maximum.
    """
    from skimage.morphology import local_maxima, reconstruction
    from skimage.segmentation import watershed

    # quarter-pixel integer distances: h-maxima on integers is exact
    d = np.rint(ndi.distance_transform_edt(m) * 4).astype(np.int32)
    dmax = int(d.max())
    if dmax < 12:
        return None
    # regional maxima of the h-dome reconstruction
    h = max(1, int(split_depth * dmax))
    rec = reconstruction(np.maximum(d - h, 0), d, method="dilation")
    peaks = local_maxima(rec, connectivity=2) & m
    markers, k = ndi.label(peaks, structure=EIGHT_CONNECTED)
    if k < 2:
        return None
    return watershed(-d, markers, mask=m), k


def split_touching(coarse: np.ndarray, coarse_nuc: np.ndarray, floor: float, p: AutoParams):
    """Split cells that are two touching round cells (distance-transform watershed).

    A cell whose distance transform has several maxima standing out by more than
    ``p.split_depth`` of the highest is cut along the watershed between them, but only if
    every part keeps a nucleus of at least ``floor`` pixels and a quarter of the largest
    part's (lobes of one nucleus never make a cell of their own).

    Returns
    -------
    coarse, coarse_nuc : int32 arrays
        New cell and nucleus labels, renumbered ``1..N``.
    """
    if p.split_depth <= 0:
        return coarse, coarse_nuc
    objs = ndi.find_objects(coarse)
    out, out_nuc = coarse, coarse_nuc
    next_id = len(objs) + 1
    changed = False
    for lab, sl in enumerate(objs, start=1):
        if sl is None:
            continue
        sl = tuple(slice(max(q.start - 1, 0), q.stop + 1) for q in sl)
        found = _parts(coarse[sl] == lab, p.split_depth)
        if found is None:
            continue
        parts, k = found
        own_nuc = coarse_nuc[sl] == lab
        nuc_area = np.bincount(parts[own_nuc], minlength=k + 1)[1:]
        if nuc_area.min() < max(floor, 0.25 * nuc_area.max()):
            continue
        if not changed:
            out, out_nuc, changed = coarse.copy(), coarse_nuc.copy(), True
        for j in range(2, k + 1):
            part = parts == j
            out[sl][part] = next_id
            out_nuc[sl][part & own_nuc] = next_id
            next_id += 1
    if changed:
        out = relabel_sequential(out)
        out_nuc = np.where(out_nuc > 0, out, 0).astype(np.int32)
    return out, out_nuc
