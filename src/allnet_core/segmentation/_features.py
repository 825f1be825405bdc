"""Pixel features and histogram thresholds shared by the segmentation rules.

All features work on ``uint8`` images through lookup tables or integer arithmetic; none
makes a float64 copy of the whole image.
"""

from __future__ import annotations

import functools
import math

import numpy as np


def channels(a: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The red, green and blue planes of an ``(H, W, 3)`` image (views)."""
    return a[..., 0], a[..., 1], a[..., 2]


def brightest(a: np.ndarray) -> np.ndarray:
    """The brightest channel of every pixel (``max(R, G, B)``, uint8)."""
    r, g, b = channels(a)
    return np.maximum(np.maximum(r, g), b)


@functools.lru_cache(maxsize=1)
def _blue_green_lut() -> np.ndarray:
    """``128 + 127 * (B - G) / (B + G)`` as uint8, indexed by ``B * 256 + G``."""
    b = np.arange(256, dtype=np.float32)[:, None]
    g = np.arange(256, dtype=np.float32)[None, :]
    tot = b + g
    ratio = np.divide(b - g, tot, out=np.zeros_like(tot), where=tot > 0)
    lut = np.rint(128.0 + 127.0 * ratio).astype(np.uint8).ravel()
    lut.flags.writeable = False
    return lut


def _over_green(a: np.ndarray, channel: int) -> np.ndarray:
    """``128 + 127 * (X - G) / (X + G)`` of channel ``X`` as uint8 (the same 64 Ki table)."""
    idx = a[..., channel].astype(np.uint16)
    idx <<= 8
    idx |= a[..., 1]
    return _blue_green_lut()[idx]


def blue_green(a: np.ndarray) -> np.ndarray:
    """Nucleus feature of an RGB image as uint8 (128 = neutral, higher = bluer than green).

    ``128 + 127 * (B - G) / (B + G)``: WBC nuclei absorb green far more than blue in every
    Romanowsky-type stain. Computed through a 64 Ki lookup table on ``(B, G)``.
    """
    return _over_green(a, 2)


def purple(a: np.ndarray) -> np.ndarray:
    """Nucleus feature for bluish red cells: green absorbed more than blue *and* red (uint8).

    ``min`` of :func:`blue_green` and ``128 + 127 * (R - G) / (R + G)``. The Romanowsky
    purple of nuclei absorbs green most; red cells stained bluish-lilac (azure rather than
    eosin) absorb red about as much as green, so they fall on the nucleus side of
    :func:`blue_green` but not of this feature; pink red cells absorb blue about as much
    as green. Used only where the red cells fall on the nucleus side of :func:`blue_green`.
    """
    return np.minimum(_over_green(a, 2), _over_green(a, 0))


def otsu_level(counts: np.ndarray) -> int:
    """Otsu's threshold (an integer level; ``> t`` is the upper class) from a histogram.

    A histogram with fewer than two occupied levels gives its only level (255 if empty).
    """
    counts = counts.astype(np.float64)
    total = counts.sum()
    if total == 0 or np.count_nonzero(counts) < 2:
        nz = np.flatnonzero(counts)
        return int(nz[-1]) if nz.size else 255
    from skimage.filters import threshold_otsu

    t = threshold_otsu(hist=(counts, np.arange(counts.size)))
    return int(math.floor(t))


def class_means(counts: np.ndarray, t: int) -> tuple[float, float]:
    """Mean level of the classes ``<= t`` and ``> t`` of a histogram (``t`` if empty)."""
    x = np.arange(counts.size, dtype=np.float64)
    below, above = counts[: t + 1], counts[t + 1 :]
    mean_below = float((below * x[: t + 1]).sum() / below.sum()) if below.sum() else float(t)
    mean_above = float((above * x[t + 1 :]).sum() / above.sum()) if above.sum() else float(t)
    return mean_below, mean_above


def bright_background(a: np.ndarray, black_level: int) -> tuple[np.ndarray, int, bool]:
    """Split the non-black pixels of ``a`` by Otsu on green: the smear's bright background.

    Returns the non-black mask, the green threshold (``<= t`` is darker than the
    background) and whether the brighter class is bright enough (mean >= 128) to be a
    smear's background at all; it is not for cells cut out on black.
    """
    valid = brightest(a) > black_level
    counts = np.bincount(a[..., 1][valid], minlength=256)
    t_g = otsu_level(counts)
    return valid, t_g, class_means(counts, t_g)[1] >= 128


def white_point(a: np.ndarray, black_level: int, step: int = 4) -> np.ndarray | None:
    """Colour of the bright smear background, or None when there is none (cut-out cells).

    The median RGB of the brighter Otsu class in green (see :func:`bright_background`),
    measured on every ``step``-th pixel; None also when fewer than 20 pixels are in it.
    """
    sample = a[::step, ::step]
    valid, t_g, has_background = bright_background(sample, black_level)
    if not has_background:
        return None
    bg = sample[valid & (sample[..., 1] > t_g)]
    if len(bg) < 20:
        return None
    return np.median(bg, axis=0)


def normalise_white(a: np.ndarray, bg, target: float = 230.0) -> np.ndarray:
    """White balance: every channel scaled so that the background ``bg`` becomes grey.

    Each channel goes through a 256-entry table ``x * target / bg[c]`` (clipped to 255), so
    a camera's white balance and exposure (per-channel gains) cancel out, as in the
    optical density ``log(bg / x)`` of a transmitted-light image. Returns a new uint8
    ``(H, W, 3)`` image.
    """
    out = np.empty(a.shape[:2] + (3,), np.uint8)
    x = np.arange(256, dtype=np.float32)
    for c in range(3):
        lut = np.clip(np.rint(x * (target / max(float(bg[c]), 1.0))), 0, 255).astype(np.uint8)
        out[..., c] = lut[a[..., c]]
    return out
