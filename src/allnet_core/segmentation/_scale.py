"""Image scale from the red cells: their radius, the detection factor, the area floor.

Red cells dominate the stained material of a smear and are discs of one size, so their
radius measures the magnification. :func:`red_cell_radius` is the one estimator; the
reduction factor of detection (:func:`choose_downscale`) and the smallest nucleus that
counts (:func:`area_floor`) both follow from it.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage as ndi

from allnet_core.segmentation._features import bright_background
from allnet_core.segmentation._morphology import fill_holes
from allnet_core.segmentation._params import AutoParams

#: Percentiles of the distance transform for the two uses of :func:`red_cell_radius`:
#: choosing the reduction factor (every 4th pixel of all stained material, full image) and
#: the area floor of nuclei (every 2nd pixel of the non-nucleus material, reduced image).
#: Both were tuned with their sample; one percentile for both (75) changes the figures of
#: ``benchmarks/segmentation_accuracy.py`` (BCCD recall 0.993 -> 0.997,
#: precision 0.961 -> 0.962).
DOWNSCALE_PERCENTILE = 75.0
FLOOR_PERCENTILE = 90.0
#: The largest automatic reduction factor.
MAX_DOWNSCALE = 4


def red_cell_radius(material: np.ndarray, percentile: float, step: int = 1) -> float | None:
    """Typical red-cell radius from a mask of stained material.

    Inside a disc of radius ``r``, the distance to the edge has its ``q``-th percentile at
    ``(1 - sqrt(1 - q)) r`` (``0.5 r`` for the 75th, ``0.68 r`` for the 90th); red cells
    dominate the material of a smear, and clumps and chains do not change their width.

    Parameters
    ----------
    material : (h, w) bool array
        Stained material, sampled at every ``step``-th pixel of the image it measures.
        Holes are filled first.
    percentile : float
        The percentile of the distance transform that is used (0-100, exclusive).
    step : int
        Sampling step of ``material``; the radius is returned in unsampled pixels.

    Returns
    -------
    float or None
        The radius in pixels of the image ``material`` was sampled from; ``None`` when
        there is too little material (under 50 pixels) to tell.
    """
    material = fill_holes(material)
    if material.sum() < 50:
        return None
    d = ndi.distance_transform_edt(material)
    fraction = 1.0 - math.sqrt(1.0 - percentile / 100.0)
    return float(np.percentile(d[material], percentile)) * step / fraction


def choose_downscale(a: np.ndarray, p: AutoParams) -> int:
    """Reduction factor for detection, from the size of the red cells.

    Measured on every 4th pixel (:func:`red_cell_radius`, 75th percentile). The factor
    makes the radius about ``rbc_pixels`` (18) reduced pixels, whatever the magnification
    (3 for BCCD fields, 2 for the 120x120 Zheng crops). When no red cells can be measured
    (cut-out cells, small images): 2 for images of 256 pixels or more on the short side,
    else 1.
    """
    if p.downscale is not None:
        return p.downscale
    fallback = 2 if min(a.shape[:2]) >= 256 else 1
    if min(a.shape[:2]) < 64:
        return 1
    step = 4
    sample = a[::step, ::step]
    valid, t_g, has_background = bright_background(sample, p.black_level)
    if not has_background:
        return fallback  # a cut-out cell
    radius = red_cell_radius(valid & (sample[..., 1] <= t_g), DOWNSCALE_PERCENTILE, step)
    if radius is None:
        return fallback
    return int(np.clip(round(radius / p.rbc_pixels), 1, MAX_DOWNSCALE))


def area_floor(p: AutoParams, valid_count: int, scale: float, rbc_radius=None) -> float:
    """Smallest nucleus (or cut-out cell, or component) area in reduced-image pixels.

    The default scales with the image: a fifth of a typical red cell's area (platelets
    are smaller, WBC nuclei larger) when red cells can be measured (``rbc_radius`` in
    reduced pixels), else 2000 full-size pixels (BCCD-like magnification); never more than
    4 % of the ``valid_count`` non-black pixels, so that small single-cell images keep
    their cell. ``min_area`` replaces all of this.
    """
    if p.min_area is not None:
        return p.min_area / scale**2
    absolute = 2000.0 / scale**2
    if rbc_radius is not None:
        absolute = 0.2 * math.pi * rbc_radius**2
    return min(absolute, 0.04 * valid_count)
