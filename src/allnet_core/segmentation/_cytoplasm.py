"""Cytoplasm: grow each nucleus group into its cell on the reduced image.

A linear colour rule learnt from the image (material next to a nucleus versus material
out of every nucleus' reach) tells cytoplasm from red cells; a cell is the material within
reach of its nucleus and nearer to it than to any other.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage as ndi

from allnet_core.segmentation._morphology import fill_holes
from allnet_core.segmentation._params import AutoParams


def cytoplasm_rule(ring_px: np.ndarray, far_px: np.ndarray, min_separation: float = 6.0):
    """A linear rule that tells cytoplasm from red cells, learnt from the image itself.

    ``ring_px`` are RGB pixels of cell material right next to a nucleus (cytoplasm),
    ``far_px`` cell material out of every nucleus' reach (red cells), both ``(N, 3)``.
    Pixels are described by ``(B - R, G)``; the rule is the perpendicular bisector of the
    two class means. Returns ``(w, c)`` (a pixel is cytoplasm when ``w . x >= c``) or
    ``None`` when either sample is too small or the means differ by less than
    ``min_separation`` levels.
    """
    n_ring, n_far = len(ring_px), len(far_px)
    if n_ring < 10 or n_far < max(10, n_ring // 2):
        return None

    def mean_feat(px):
        px = px.astype(np.float32)
        return np.array([(px[:, 2] - px[:, 0]).mean(), px[:, 1].mean()], np.float32)

    mu_c, mu_r = mean_feat(ring_px), mean_feat(far_px)
    w = mu_c - mu_r
    if float(np.hypot(*w)) < min_separation:
        return None
    c = float(w @ (mu_c + mu_r) / 2)
    return w, c


def apply_rule(px: np.ndarray, rule) -> np.ndarray:
    """Which of the RGB pixels ``px`` (``(..., 3)``) the cytoplasm rule accepts."""
    w, c = rule
    x = (px[..., 2].astype(np.float32) - px[..., 0]) * w[0]
    x += px[..., 1].astype(np.float32) * w[1]
    return x >= c


def _nuclei_box(groups: np.ndarray, reach: int) -> tuple[slice, slice]:
    """The bounding box of all nucleus groups grown by ``reach``, inside the image."""
    rows_any = np.flatnonzero(groups.any(axis=1))
    cols_any = np.flatnonzero(groups.any(axis=0))
    h, w = groups.shape
    r0, r1 = max(rows_any[0] - reach, 0), min(rows_any[-1] + 1 + reach, h)
    c0, c1 = max(cols_any[0] - reach, 0), min(cols_any[-1] + 1 + reach, w)
    return slice(r0, r1), slice(c0, c1)


def _connected_to(mask: np.ndarray, seeds: np.ndarray) -> np.ndarray:
    """The connected pieces of ``mask`` (4-connected) that hold a pixel of ``seeds``."""
    comp, _ = ndi.label(mask)
    hit = np.zeros(comp.max() + 1, bool)
    hit[comp[seeds]] = True
    hit[0] = False
    return hit[comp]


def grow_cells(groups: np.ndarray, n: int, material: np.ndarray, reduced: np.ndarray,
               p: AutoParams):
    """Cell labels: cell pixels nearest to a nucleus group and within its reach.

    Works inside the bounding box of all nuclei grown by the largest reach. Returns the
    labels (int32, the ids of ``groups``) and the cytoplasm rule (see
    :func:`cytoplasm_rule`) or ``None``.
    """
    areas = np.bincount(groups.ravel(), minlength=n + 1)
    r_nuc = np.sqrt(areas / np.pi).astype(np.float32)
    reach = int(math.ceil(float(r_nuc.max()) * p.cell_radius * 1.5)) + 2
    box = _nuclei_box(groups, reach)
    grp, mat, img = groups[box], material[box], reduced[box]

    idx = ndi.distance_transform_edt(grp == 0, return_distances=False, return_indices=True)
    nearest = grp[idx[0], idx[1]]
    d2 = (idx[0] - np.arange(grp.shape[0], dtype=np.int32)[:, None]) ** 2
    d2 += (idx[1] - np.arange(grp.shape[1], dtype=np.int32)[None, :]) ** 2
    del idx
    rn = r_nuc[nearest]
    lim = rn * p.cell_radius
    within = d2 <= lim * lim
    nucleus = grp > 0
    ring = (d2 <= np.maximum(rn * 0.15, 1.5) ** 2) & mat & ~nucleus
    far = (d2 > (lim * 1.5) ** 2) & mat
    far_px = [img[far]]
    del d2, lim, rn
    # material outside the box is out of every nucleus' reach too (sampled sparsely)
    outside = np.ones(groups.shape, bool)
    outside[box] = False
    outside &= material
    far_px.append(reduced[::2, ::2][outside[::2, ::2]])
    rule = cytoplasm_rule(img[ring], np.concatenate(far_px))
    del ring, far, outside, far_px
    m = mat & within
    if rule is not None:
        m[m] = apply_rule(img[m], rule)
    m |= nucleus
    # keep only cell material connected to a nucleus
    m = _connected_to(fill_holes(m), nucleus)
    labels = np.zeros(groups.shape, np.int32)
    labels[box] = np.where(m, nearest, 0)
    return labels, rule
