"""Full-resolution cells from the coarse labels found on the reduced image.

Each coarse cell is redrawn with the global thresholds inside its bounding box mapped to
full resolution, within ``factor`` pixels of its coarse outline.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

from allnet_core.segmentation._cytoplasm import apply_rule
from allnet_core.segmentation._features import blue_green, brightest
from allnet_core.segmentation._morphology import dilate, fill_holes
from allnet_core.segmentation._params import AutoParams


def _full_res_box(sl, factor: int, coarse_shape, shape) -> tuple[slice, slice]:
    """A coarse bounding box grown by one pixel, mapped to full resolution (plus a step)."""
    off = factor // 2
    out = []
    for s, n_coarse, n_full in zip(sl, coarse_shape, shape, strict=True):
        start, stop = max(s.start - 1, 0), min(s.stop + 1, n_coarse)
        out.append(slice(max(start * factor + off - factor, 0),
                         min(stop * factor + off + factor, n_full)))
    return out[0], out[1]


def _redraw(sub: np.ndarray, own: np.ndarray, allowed: np.ndarray, near_nuc: np.ndarray,
            t_nuc: int, t_g: int, rule, black_level: int, feature=blue_green):
    """Cell and nucleus masks of one cell's full-resolution box.

    ``own`` is the cell's coarse mask, ``allowed`` where it may reach, ``near_nuc`` where
    its nucleus may be (all upsampled to the box).
    """
    valid = brightest(sub) > black_level
    nuc = (feature(sub) > t_nuc) & valid & allowed & near_nuc
    cell = (sub[..., 1] <= t_g) & valid & allowed
    if rule is not None:
        cell[cell] = apply_rule(sub[cell], rule)
    cell |= nuc
    cell = fill_holes(cell)
    comp, k = ndi.label(cell)
    if k > 1:
        # keep the pieces that overlap the reduced-resolution cell
        hit = np.bincount(comp[own], minlength=k + 1)
        hit[0] = 0
        cell = hit[comp] > 0
    nuc = fill_holes(nuc) & cell
    return cell, nuc


def refine(a: np.ndarray, coarse: np.ndarray, coarse_nuc: np.ndarray, t_nuc: int, t_g: int,
           rule, p: AutoParams, factor: int, want_nuclei: bool = True, feature=blue_green):
    """Full-resolution cell and nucleus labels from the labels of the reduced image.

    Parameters
    ----------
    a : (H, W, 3) uint8 array
        The full-resolution image.
    coarse, coarse_nuc : (h, w) int32 arrays
        Cell and nucleus labels found on ``a`` reduced by ``factor``.
    t_nuc, t_g, rule
        The global nucleus and material thresholds and the cytoplasm rule (or None).
    p : AutoParams
    factor : int
        The reduction factor.
    want_nuclei : bool
        Also return the nucleus labels (else None).
    feature : callable
        The nucleus feature ``t_nuc`` applies to (:func:`~._features.blue_green`, or
        :func:`~._features.purple` for bluish red cells).

    Returns
    -------
    cells, nuclei : (H, W) int32 arrays
        Ids ``1..N`` in the order of the coarse ids, sequential even when a cell vanishes.
    """
    h, w = a.shape[:2]
    cells = np.zeros((h, w), np.int32)
    nuclei = np.zeros((h, w), np.int32) if want_nuclei else None
    new_id = 0
    for lab, sl in enumerate(ndi.find_objects(coarse), start=1):
        if sl is None:
            continue
        box = _full_res_box(sl, factor, coarse.shape, (h, w))
        # nearest coarse label of every full-resolution pixel of the box
        rr = np.clip(np.arange(box[0].start, box[0].stop) // factor, 0, coarse.shape[0] - 1)
        cc = np.clip(np.arange(box[1].start, box[1].stop) // factor, 0, coarse.shape[1] - 1)
        up = coarse[rr[:, None], cc[None, :]]
        own = up == lab
        allowed = dilate(own, factor) & ((up == 0) | own)
        near_nuc = dilate(coarse_nuc[rr[:, None], cc[None, :]] == lab, factor)
        cell, nuc = _redraw(a[box], own, allowed, near_nuc, t_nuc, t_g, rule, p.black_level,
                            feature)
        view = cells[box]
        cell &= view == 0
        if not cell.any():
            continue
        new_id += 1  # ids stay sequential even when a cell vanishes at full resolution
        view[cell] = new_id
        if want_nuclei:
            nuclei[box][nuc & cell] = new_id
    return cells, nuclei
