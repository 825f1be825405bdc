"""Documented stain, camera and scale perturbations of real images (a test tool).

Used by ``benchmarks/segmentation_accuracy.py`` (the perturbation and scale tables) and by
``tests/core/test_segmentation_robustness.py`` (which imports this file by path), so that
the figures and the tests perturb the same way. Every perturbation maps a ``uint8``
``(H, W, 3)`` RGB image to another; none looks at any annotation.

The perturbations (:data:`PERTURBATIONS`), each a fixed, deterministic colour change:

``hue -25`` / ``hue +25``
    Rotate the HSV hue of every pixel by 25 degrees (a different dye lot or pH).
``saturation x0.6`` / ``saturation x1.4``
    Multiply the HSV saturation (a pale or an over-stained slide).
``brightness x0.8`` / ``brightness x1.2``
    Multiply every channel (lamp intensity, exposure); values clip at 255.
``contrast x0.7`` / ``contrast x1.3``
    Stretch or squeeze every channel about the image's mean grey level.
``gamma 0.7`` / ``gamma 1.4``
    A camera's tone curve, ``255 (x / 255) ** gamma``.
``bluish red cells``
    The red cells' (eosin-like) stain turns bluish-lilac, as in LISC-like fields: in
    optical density, the component of every pixel along a pink red-cell absorption
    vector is moved onto a lilac one; the nucleus (azure-like) component and the rest
    stay.
``white balance warm`` / ``white balance cool``
    The camera's white balance: red and blue multiplied by 1.15 and 0.85 (warm) or 0.85
    and 1.15 (cool).

Scale: :func:`rescale` resamples an image (anti-aliased) by a factor, :func:`rescale_mask`
its ground truth (nearest neighbour), :func:`rescale_boxes` its boxes.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "PERTURBATIONS",
    "SCALES",
    "bluish_red_cells",
    "perturb",
    "rescale",
    "rescale_boxes",
    "rescale_mask",
]

#: Resampling factors of the scale table.
SCALES = (0.5, 0.75, 1.5, 2.0)

# Optical-density vectors (log10 of 255 / value) of the bluish perturbation: a pink red
# cell, a lilac (bluish) red cell and a purple nucleus, as seen in Romanowsky stains.
_PINK = (210, 150, 160)
_LILAC = (175, 160, 215)
_PURPLE = (120, 80, 200)


def _od_unit(rgb) -> np.ndarray:
    v = np.log10(255.0 / np.asarray(rgb, np.float64))
    return v / np.linalg.norm(v)


def _to_float(a: np.ndarray) -> np.ndarray:
    return np.asarray(a, np.float64)[..., :3]


def _to_uint8(x: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(x), 0, 255).astype(np.uint8)


def hue_rotate(a: np.ndarray, degrees: float) -> np.ndarray:
    """Rotate the HSV hue of every pixel by ``degrees``."""
    from skimage.color import hsv2rgb, rgb2hsv

    hsv = rgb2hsv(a[..., :3])
    hsv[..., 0] = (hsv[..., 0] + degrees / 360.0) % 1.0
    return _to_uint8(hsv2rgb(hsv) * 255)


def scale_saturation(a: np.ndarray, factor: float) -> np.ndarray:
    """Multiply the HSV saturation by ``factor`` (clipped to 1)."""
    from skimage.color import hsv2rgb, rgb2hsv

    hsv = rgb2hsv(a[..., :3])
    hsv[..., 1] = np.clip(hsv[..., 1] * factor, 0, 1)
    return _to_uint8(hsv2rgb(hsv) * 255)


def brightness(a: np.ndarray, factor: float) -> np.ndarray:
    """Multiply every channel by ``factor``."""
    return _to_uint8(_to_float(a) * factor)


def contrast(a: np.ndarray, factor: float) -> np.ndarray:
    """Stretch every channel about the image's mean grey level by ``factor``."""
    x = _to_float(a)
    m = x.mean()
    return _to_uint8((x - m) * factor + m)


def gamma(a: np.ndarray, g: float) -> np.ndarray:
    """The tone curve ``255 (x / 255) ** g``."""
    return _to_uint8(255.0 * (_to_float(a) / 255.0) ** g)


def white_balance(a: np.ndarray, gains) -> np.ndarray:
    """Multiply the red, green and blue channels by ``gains``."""
    return _to_uint8(_to_float(a) * np.asarray(gains, np.float64))


def bluish_red_cells(a: np.ndarray) -> np.ndarray:
    """Turn the red cells' pink (eosin-like) stain bluish-lilac, keeping nuclei purple.

    In optical density ``od = log10(255 / max(x, 1))`` each pixel is written in the basis
    (pink, purple, their cross product); its pink coefficient is then put on the lilac
    vector instead.
    """
    pink, purple = _od_unit(_PINK), _od_unit(_PURPLE)
    basis = np.stack([pink, purple, np.cross(pink, purple)], axis=1)
    target = basis.copy()
    target[:, 0] = _od_unit(_LILAC)
    m = target @ np.linalg.inv(basis)
    od = np.log10(255.0 / np.maximum(_to_float(a), 1.0))
    out = od @ m.T
    return _to_uint8(255.0 * 10.0 ** (-np.maximum(out, 0.0)))


#: Name -> function of the perturbation table (``none`` is the image itself).
PERTURBATIONS = {
    "none": lambda a: a[..., :3],
    "hue -25": lambda a: hue_rotate(a, -25),
    "hue +25": lambda a: hue_rotate(a, 25),
    "saturation x0.6": lambda a: scale_saturation(a, 0.6),
    "saturation x1.4": lambda a: scale_saturation(a, 1.4),
    "brightness x0.8": lambda a: brightness(a, 0.8),
    "brightness x1.2": lambda a: brightness(a, 1.2),
    "contrast x0.7": lambda a: contrast(a, 0.7),
    "contrast x1.3": lambda a: contrast(a, 1.3),
    "gamma 0.7": lambda a: gamma(a, 0.7),
    "gamma 1.4": lambda a: gamma(a, 1.4),
    "bluish red cells": bluish_red_cells,
    "white balance warm": lambda a: white_balance(a, (1.15, 1.0, 0.85)),
    "white balance cool": lambda a: white_balance(a, (0.85, 1.0, 1.15)),
}


def perturb(a: np.ndarray, name: str) -> np.ndarray:
    """The image ``a`` under the perturbation ``name`` (a key of :data:`PERTURBATIONS`)."""
    return PERTURBATIONS[name](a)


def rescale(a: np.ndarray, factor: float) -> np.ndarray:
    """Resample an RGB image by ``factor`` (anti-aliased when shrinking)."""
    from skimage.transform import rescale as sk_rescale

    if factor == 1:
        return a[..., :3]
    out = sk_rescale(a[..., :3], factor, channel_axis=-1, anti_aliasing=factor < 1,
                     preserve_range=True, order=1)
    return _to_uint8(out)


def rescale_mask(mask: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """A boolean mask resampled to ``shape`` (nearest neighbour)."""
    from skimage.transform import resize

    return resize(mask.astype(np.uint8), shape, order=0, preserve_range=True,
                  anti_aliasing=False).astype(bool)


def rescale_boxes(boxes: np.ndarray, factor: float) -> np.ndarray:
    """``(row_min, col_min, row_max, col_max)`` boxes scaled by ``factor``."""
    return np.rint(np.asarray(boxes, np.float64) * factor).astype(np.int64).reshape(-1, 4)
