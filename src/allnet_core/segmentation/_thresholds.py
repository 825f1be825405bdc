"""Global masks and thresholds of the (reduced) image: non-black, nucleus, cell material.

The nucleus threshold separates nuclei from the rest; where red cells are stained so that
they fall on the nucleus side of the first split (bluish red cells), it is taken again
among the stained material only, which separates nuclei from red cells; there the
:func:`~._features.purple` feature (green absorbed more than red as well as blue) is used
instead when it splits the material into a minority that stands out.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from scipy import ndimage as ndi

from allnet_core.segmentation._features import (
    blue_green,
    bright_background,
    class_means,
    otsu_level,
    purple,
)
from allnet_core.segmentation._morphology import hysteresis
from allnet_core.segmentation._params import AutoParams
from allnet_core.segmentation._scale import FLOOR_PERCENTILE, red_cell_radius


class Thresholds(NamedTuple):
    """What :func:`thresholds` measures on an image."""

    valid: np.ndarray  # non-black pixels
    feat: np.ndarray  # the nucleus feature (:func:`~._features.blue_green`)
    nuc: np.ndarray  # nucleus pixels
    t_nuc: int  # nucleus threshold on the blue-green feature (``> t_nuc`` is nucleus)
    t_g: int  # green threshold of cell material (``<= t_g``); 255 for cut-out cells
    contrast_ok: bool  # nuclei stand out at all (see :func:`_stands_out`)
    weak: bool  # ... but only relative to the spread of the rest (a pale stain)
    cutout: bool  # cells cut out on black, no bright smear background
    red_cells_in: bool  # the first split put the red cells on the nucleus side
    rest_mean: float  # mean and spread of the feature on the non-nucleus class
    rest_std: float
    feature: object = blue_green  # the feature function ``feat`` and ``t_nuc`` refer to


def _class_std(counts: np.ndarray, t: int, mean: float) -> float:
    """Standard deviation of the histogram's levels ``<= t`` about ``mean``."""
    lo = counts[: t + 1].astype(np.float64)
    x = np.arange(t + 1, dtype=np.float64)
    return float(np.sqrt((lo * (x - mean) ** 2).sum() / max(lo.sum(), 1.0)))


def _red_cells_in(upper: np.ndarray, material: np.ndarray, valid: np.ndarray,
                  many: int = 4) -> tuple[bool, bool]:
    """Whether to split again among the material, and whether red cells are the reason.

    The upper class of the first split holds more than nuclei when it covers a quarter of
    the image and half of the stained material (a smear's nuclei are a few percent of
    it), or when it falls into ``many`` or more pieces of similar size (at least 40 % of
    the largest): platelets, or red cells when at least ``many`` of those pieces are as
    large as half a red cell (measured on the material, :func:`~._scale.red_cell_radius`).
    """
    n_up = int(np.count_nonzero(upper))
    if n_up > 0.25 * np.count_nonzero(valid) and n_up > 0.5 * np.count_nonzero(material):
        return True, True
    comp, n = ndi.label(upper)
    if n < many:
        return False, False
    areas = np.bincount(comp.ravel())[1:]
    big = areas >= max(0.4 * areas.max(), 20)
    if int(np.count_nonzero(big)) < many:
        return False, False
    radius = red_cell_radius(material[::2, ::2], FLOOR_PERCENTILE, 2)
    rbc_sized = radius is not None and int(
        np.count_nonzero(big & (areas >= 0.5 * np.pi * radius**2))) >= many
    return True, rbc_sized


def _stands_out(counts: np.ndarray, t: int, p: AutoParams) -> tuple[bool, bool, float, float]:
    """Whether the nucleus class stands out, whether only weakly; the other class' stats.

    The two Otsu classes' means differ by ``min_contrast`` levels (strong), or by
    ``min_separation`` standard deviations of the lower class (weak: a pale or desaturated
    stain shrinks both the difference and the spread).
    """
    mean_rest, mean_nuc = class_means(counts, t)
    sd = max(_class_std(counts, t, mean_rest), 0.5)
    gap = mean_nuc - mean_rest
    strong = gap >= p.min_contrast
    weak = not strong and gap >= p.min_separation * sd
    return strong or weak, weak, mean_rest, sd


def _purple_split(a: np.ndarray, material: np.ndarray, p: AutoParams):
    """The split of the stained material by :func:`~._features.purple`, or None.

    For red cells on the nucleus side of the blue-green feature: nuclei absorb green more
    than red as well, bluish red cells do not. Taken when its classes stand out and its
    upper class is a minority of the material (nuclei are; where it holds most of the
    material, e.g. a hue shifted towards magenta red cells, the feature does not apply).
    Returns ``(split, feat, purple)`` with ``split`` as :func:`_stands_out` makes it.
    """
    feat = purple(a)
    counts = np.bincount(feat[material], minlength=256)
    t = otsu_level(counts)
    split = (counts, t, *_stands_out(counts, t, p))
    if not split[2] or 2 * counts[t + 1 :].sum() >= counts.sum():
        return None
    return split, feat, purple


def thresholds(a: np.ndarray, p: AutoParams) -> Thresholds:
    """Masks and global thresholds of an (already reduced, white-balanced) image.

    Nuclei: Otsu's threshold on :func:`~._features.blue_green` of the non-black pixels
    (of the stained material only, when the first split holds the red cells, and then on
    :func:`~._features.purple` where that works, see :func:`_purple_split`), keeping the
    pieces that reach the mean of the nucleus class. Cell material: darker in green than
    the bright background (Otsu on the non-black, non-nucleus pixels). An image without a
    bright background, or with a black surround and mostly nucleus inside, is a cut-out.
    """
    g = a[..., 1]
    valid, t_g, has_background = bright_background(a, p.black_level)
    feat = blue_green(a)
    feature = blue_green
    counts = np.bincount(feat[valid], minlength=256)
    t_nuc = otsu_level(counts)
    split = (counts, t_nuc, *_stands_out(counts, t_nuc, p))
    red_cells_in = False
    if has_background:
        material = valid & (g <= t_g)
        resplit, red_cells_in = _red_cells_in((feat > t_nuc) & valid, material, valid)
        if resplit:
            # split again among the material; keep the first split if it stood out strongly
            # and nothing stands out there (a crop filled by one large nucleus looks the
            # same at first)
            m_counts = np.bincount(feat[material], minlength=256)
            m_t = otsu_level(m_counts)
            m_split = (m_counts, m_t, *_stands_out(m_counts, m_t, p))
            if m_split[2] or not (split[2] and not split[3]):
                split = m_split
            if red_cells_in:
                found = _purple_split(a, material, p)
                if found is not None:
                    split, feat, feature = found
    counts, t_nuc, contrast_ok, weak, rest_mean, rest_std = split
    nuc = feat > t_nuc
    nuc &= valid
    if contrast_ok:
        # keep the pieces that reach the mean of the nucleus class
        nuc = hysteresis(weak=nuc, strong=feat >= int(class_means(counts, t_nuc)[1]))
    if has_background:
        # cell material: darker in green than the bright background (non-nucleus pixels)
        t_g = otsu_level(np.bincount(g[valid & ~nuc], minlength=256))
        rest = feat[valid & ~nuc & (g <= t_g)]
        if rest.size >= 50:
            rest_mean, rest_std = float(rest.mean()), max(float(rest.std()), 0.5)
    cutout = not has_background or _mostly_nucleus_on_black(valid, nuc, p.cutout_nucleus)
    if cutout:
        t_g = 255  # a cut-out cell on black: every non-black pixel is cell material
    return Thresholds(valid, feat, nuc, t_nuc, t_g, contrast_ok, weak, cutout,
                      red_cells_in, rest_mean, rest_std, feature)


def _mostly_nucleus_on_black(valid: np.ndarray, nuc: np.ndarray, fraction: float) -> bool:
    """A black surround, and nuclei making up ``fraction`` or more of what is left.

    A smear's nuclei are a few percent of its pixels; a cut-out cell is largely nucleus.
    """
    n_valid = int(np.count_nonzero(valid))
    return n_valid <= 0.9 * valid.size and np.count_nonzero(nuc) >= fraction * n_valid
