"""Global masks and thresholds of the (reduced) image: non-black, nucleus, cell material."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from allnet_core.segmentation._features import (
    blue_green,
    bright_background,
    class_means,
    otsu_level,
)
from allnet_core.segmentation._morphology import hysteresis
from allnet_core.segmentation._params import AutoParams


class Thresholds(NamedTuple):
    """What :func:`thresholds` measures on an image."""

    valid: np.ndarray  # non-black pixels
    nuc: np.ndarray  # nucleus pixels
    t_nuc: int  # nucleus threshold on the blue-green feature (``> t_nuc`` is nucleus)
    t_g: int  # green threshold of cell material (``<= t_g``); 255 for cut-out cells
    contrast_ok: bool  # nuclei stand out at all (Otsu classes differ by min_contrast)
    cutout: bool  # cells cut out on black, no bright smear background


def thresholds(a: np.ndarray, p: AutoParams) -> Thresholds:
    """Masks and global thresholds of an (already reduced) image.

    Nuclei: Otsu's threshold on :func:`~._features.blue_green` of the non-black pixels,
    keeping the pieces that reach the mean of the nucleus class. Cell material: darker in
    green than the bright background (Otsu on the non-black, non-nucleus pixels). An image
    without a bright background, or with a black surround and mostly nucleus inside, is a
    cut-out.
    """
    g = a[..., 1]
    valid, t_g, has_background = bright_background(a, p.black_level)
    feat = blue_green(a)
    counts = np.bincount(feat[valid], minlength=256)
    t_nuc = otsu_level(counts)
    mean_rest, mean_nuc = class_means(counts, t_nuc)
    contrast_ok = mean_nuc - mean_rest >= p.min_contrast
    nuc = feat > t_nuc
    nuc &= valid
    if contrast_ok:
        # keep the pieces that reach the mean of the nucleus class
        nuc = hysteresis(weak=nuc, strong=feat > int(mean_nuc))
    if has_background:
        # cell material: darker in green than the bright background (non-nucleus pixels)
        t_g = otsu_level(np.bincount(g[valid & ~nuc], minlength=256))
    cutout = not has_background or _mostly_nucleus_on_black(valid, nuc, p.cutout_nucleus)
    if cutout:
        t_g = 255  # a cut-out cell on black: every non-black pixel is cell material
    return Thresholds(valid, nuc, t_nuc, t_g, contrast_ok, cutout)


def _mostly_nucleus_on_black(valid: np.ndarray, nuc: np.ndarray, fraction: float) -> bool:
    """A black surround, and nuclei making up ``fraction`` or more of what is left.

    A smear's nuclei are a few percent of its pixels; a cut-out cell is largely nucleus.
    """
    n_valid = int(np.count_nonzero(valid))
    return n_valid <= 0.9 * valid.size and np.count_nonzero(nuc) >= fraction * n_valid
