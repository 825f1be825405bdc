"""Colour saturation and the ALLNet paper's segmentation rule.

The paper converts RGB to HSI, takes the saturation ``S = 1 - 3 min(R, G, B) / (R + G + B)``,
scales it to 0-255, keeps the pixels whose value lies in ``[180, 255]`` and multiplies that
mask with the image (:func:`segment_paper`).
"""

from __future__ import annotations

import functools

import numpy as np

from allnet_core.errors import ConfigError
from allnet_core.segmentation._features import channels
from allnet_core.validation import check_choice, check_rgb

__all__ = ["PAPER_HIGH", "PAPER_LOW", "SPACES", "saturation", "segment_paper"]

#: Colour spaces of :func:`saturation` and :func:`segment_paper`.
SPACES = ("hsi", "hsv")
#: The paper's inclusive range of ``255 * S``.
PAPER_LOW, PAPER_HIGH = 180, 255
#: :func:`segment_paper` warns when it selects fewer than this fraction of the pixels.
ALMOST_NOTHING = 1e-3


def _min_and_norm(a: np.ndarray, space: str, dtype) -> tuple[np.ndarray, np.ndarray]:
    """``min(R, G, B)`` and the saturation's normaliser: ``R + G + B`` (HSI) or ``max``."""
    r, g, b = channels(a)
    mn = np.minimum(np.minimum(r, g), b)
    if space == "hsi":
        norm = r.astype(dtype)
        norm += g
        norm += b
    else:
        norm = np.maximum(np.maximum(r, g), b).astype(dtype)
    return mn, norm


def saturation(rgb, space: str = "hsi") -> np.ndarray:
    """Colour saturation of an RGB image.

    Parameters
    ----------
    rgb : (H, W, 3) uint8 array
        RGB image (a fourth, alpha channel is ignored).
    space : {"hsi", "hsv"}
        ``"hsi"``: ``S = 1 - 3 min(R, G, B) / (R + G + B)`` (the paper's definition).
        ``"hsv"``: ``S = (max - min) / max``.

    Returns
    -------
    (H, W) float32 array
        Saturation in ``[0, 1]``; black pixels get 0 (never NaN).

    Raises
    ------
    ImageReadError
        For grayscale input (saturation needs colour), a wrong shape or a dtype other
        than uint8.

    Examples
    --------
    >>> import numpy as np
    >>> rgb = np.array([[[255, 0, 0], [0, 0, 0], [90, 90, 90]]], dtype=np.uint8)
    >>> saturation(rgb).tolist()
    [[1.0, 0.0, 0.0]]
    """
    a = check_rgb(rgb, "rgb", needs="saturation")
    check_choice(space, SPACES, "space")
    mn, total = _min_and_norm(a, space, np.float32)
    num = mn.astype(np.float32)
    if space == "hsi":
        num *= 3.0
    out = np.zeros(a.shape[:2], np.float32)
    np.divide(num, total, out=out, where=total > 0)
    np.subtract(1.0, out, out=out, where=total > 0)
    np.clip(out, 0.0, 1.0, out=out)
    return out


@functools.lru_cache(maxsize=32)
def _paper_luts(low: float, high: float, space: str) -> tuple[np.ndarray, np.ndarray]:
    """Per ``min`` value, the smallest and largest ``sum`` (HSI) or ``max`` (HSV) kept.

    ``255 * S >= low`` with ``S = 1 - 3 m / s`` is ``(255 - low) * s >= 765 m``: an integer
    inequality, so the paper's rule needs no division per pixel. The tables hold, for each
    ``m``, the range of ``s`` (or of ``max`` for HSV, where ``S = 1 - m / max``) that
    satisfies both bounds.
    """
    k = 3 if space == "hsi" else 1
    top = 765 if space == "hsi" else 255
    m = np.arange(256, dtype=np.float64)
    norm_min = np.zeros(256, np.int64)
    norm_max = np.full(256, top, np.int64)
    # low bound: (255 - low) * s >= 255 * k * m
    if low >= 255:
        norm_min[:] = np.where(m == 0, 1, top + 1)  # S = 1 only where min is 0 and s > 0
    else:
        norm_min = np.ceil(255.0 * k * m / (255.0 - low) - 1e-9).astype(np.int64)
    # high bound: (255 - high) * s <= 255 * k * m
    if high < 255:
        norm_max = np.floor(255.0 * k * m / (255.0 - high) + 1e-9).astype(np.int64)
    # s = 0 (black) has S = 0 by definition: kept only if low <= 0 <= high.
    if low > 0:
        norm_min = np.maximum(norm_min, 1)
    norm_min = np.clip(norm_min, 0, top + 1).astype(np.uint16)
    norm_max = np.clip(norm_max, 0, top).astype(np.uint16)
    norm_min.flags.writeable = False
    norm_max.flags.writeable = False
    return norm_min, norm_max


def _paper_mask(a: np.ndarray, low: float, high: float, space: str) -> np.ndarray:
    """``low <= 255 * S <= high``, exactly, through the tables of :func:`_paper_luts`."""
    mn, norm = _min_and_norm(a, space, np.uint16)
    norm_min, norm_max = _paper_luts(float(low), float(high), space)
    mask = norm >= norm_min[mn]
    if high < 255:
        mask &= norm <= norm_max[mn]
    return mask


def segment_paper(rgb, low: float = PAPER_LOW, high: float = PAPER_HIGH, space: str = "hsi"):
    """The paper's segmentation: threshold the saturation and multiply with the image.

    This is exactly the rule of the ALLNet paper: saturation ``S`` (HSI by default, see
    :func:`saturation`) scaled to 0-255, pixels with ``low <= 255 * S <= high`` set to 1,
    the rest to 0, and the mask multiplied with the original image. The comparison is
    done exactly, with integers, on the unrounded ``255 * S``.

    Parameters
    ----------
    rgb : (H, W, 3) uint8 array
        RGB image.
    low, high : float
        Inclusive range of ``255 * S`` that is kept (the paper: 180 and 255).
    space : {"hsi", "hsv"}
        Colour space of the saturation; the paper uses HSI.

    Returns
    -------
    mask : (H, W) bool array
    segmented : (H, W, 3) uint8 array
        ``rgb * mask``: the image with every pixel outside the mask set to black.

    Warns
    -----
    SegmentationWarning
        With reason ``"paper rule selects nothing"`` when fewer than 0.1 % of the pixels
        are selected; the message gives the image's saturation range and a suggestion
        (see :mod:`allnet_core.segmentation.status`).

    Examples
    --------
    >>> import numpy as np
    >>> rgb = np.array([[[200, 20, 200], [200, 180, 190]]], dtype=np.uint8)
    >>> mask, seg = segment_paper(rgb)
    >>> mask.tolist(), seg[0, 1].tolist()
    ([[True, False]], [0, 0, 0])
    """
    a = check_rgb(rgb, "rgb", needs="saturation")
    check_choice(space, SPACES, "space")
    low, high = float(low), float(high)
    if not (0 <= low <= 255 and 0 <= high <= 255 and low <= high):
        raise ConfigError(f"need 0 <= low <= high <= 255, got low={low}, high={high}")
    mask = _paper_mask(a, low, high, space)
    if np.count_nonzero(mask) < ALMOST_NOTHING * mask.size:
        _say_nothing_selected(a, mask, low, high, space)
    segmented = a * mask[..., None]
    return mask, segmented


def _say_nothing_selected(a: np.ndarray, mask: np.ndarray, low: float, high: float,
                          space: str) -> None:
    """Warn that the rule selected (almost) nothing, with the image's saturation range.

    The range is measured on every 8th pixel (non-black ones), enough for a message.
    """
    from allnet_core.segmentation.status import PAPER_SELECTS_NOTHING, warn

    sample = np.ascontiguousarray(a[::8, ::8])
    mn, norm = _min_and_norm(sample, space, np.float32)
    keep = norm > (30 if space == "hsi" else 10)  # not black
    s = 255.0 * (1.0 - (3.0 if space == "hsi" else 1.0) * mn[keep] / norm[keep])
    if s.size == 0:
        span, hint = "no coloured pixel", "the image has no colour to threshold"
    else:
        s.sort()
        lo, hi, p99 = float(s[0]), float(s[-1]), float(s[int(0.99 * (s.size - 1))])
        span = f"its {space.upper()} saturation spans {lo:.0f}-{hi:.0f} of 255"
        hint = (f"use method='auto' (adapts to the stain), or a range inside the image's, "
                f"e.g. low={int(p99)}")
    warn(PAPER_SELECTS_NOTHING,
         f"the paper's range {low:g}-{high:g} selects {np.count_nonzero(mask)} of "
         f"{mask.size} pixels; {span}; {hint}", stacklevel=3)
