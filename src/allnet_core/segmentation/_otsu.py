"""The reference method: Otsu's threshold on HSI saturation."""

from __future__ import annotations

import numpy as np

from allnet_core.segmentation._features import brightest, otsu_level
from allnet_core.segmentation.paper import saturation


def otsu_mask(a: np.ndarray, black_level: int) -> np.ndarray:
    """Otsu's threshold on the HSI saturation of the non-black pixels (a boolean mask)."""
    s = saturation(a, "hsi")
    s8 = np.rint(s * 255).astype(np.uint8)
    valid = brightest(a) > black_level
    t = otsu_level(np.bincount(s8[valid], minlength=256))
    return (s8 > t) & valid
