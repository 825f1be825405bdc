"""Crops in, model input batch out: the pixels the model sees, identical to training.

The model takes ``float32`` RGB images in 0-255 (it rescales internally). Crops of any
size are turned into model input by :func:`allnet_core.feed.resize_for_model`, the very
function the training feed uses: a non-square crop is padded with black to a centred
square, then shrunk by area averaging (or enlarged bilinearly) to the model's input size.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from allnet_core.errors import ImageReadError, ModelError

__all__ = ["prepare_crops"]


def prepare_crops(crops, input_size: tuple[int, int], source: str = "the model") -> np.ndarray:
    """Turn crops into a model input batch: ``(N, H, W, 3)`` float32 in 0-255.

    Parameters
    ----------
    crops : (N, h, w, 3) array or sequence of (h, w, 3) arrays
        ``uint8`` RGB crops of any sizes, or real numbers in 0-255. Crops not already at
        ``input_size`` go through :func:`allnet_core.feed.resize_for_model` (black padding
        to a square, then area averaging or bilinear enlarging), exactly as in training.
    input_size : (int, int)
        The model's input height and width.
    source : str
        The model, named in messages.

    Raises
    ------
    ImageReadError
        For a single crop without a batch axis, grayscale crops or pixels outside 0-255.
    ModelError
        For crops of another size when the model input is not square.
    """
    from allnet_core.feed import resize_for_model

    h, w = input_size
    if isinstance(crops, np.ndarray) and crops.ndim == 4:
        items: Iterable = crops
        n = crops.shape[0]
        if crops.shape[1:] == (h, w, 3):
            return _check_crop(crops, "crops").astype(np.float32)
    elif isinstance(crops, np.ndarray) and crops.ndim == 3:
        raise ImageReadError(
            "crops", f"expected a stack of crops (N, H, W, 3), got shape {crops.shape}; "
            "use crops[None] for a single crop"
        )
    elif isinstance(crops, np.ndarray):
        raise ImageReadError("crops", f"expected (N, H, W, 3) crops, got shape {crops.shape}")
    else:
        items = list(crops)
        n = len(items)
    out = np.empty((n, h, w, 3), np.float32)
    for i, c in enumerate(items):
        c = _check_crop(c, name=f"crop {i}")
        if c.shape[:2] == (h, w):
            out[i] = c
        elif h == w:
            out[i] = resize_for_model(c, h)
        else:
            raise ModelError(
                f"{source}: the model input {h}x{w} is not square; crops must "
                f"already be {h}x{w}, crop {i} is {c.shape[0]}x{c.shape[1]}"
            )
    return out


def _check_crop(crop, name: str = "crop") -> np.ndarray:
    """A crop (or stack) as given: ``uint8``, or real numbers in 0-255 (the model's scale)."""
    a = np.asarray(crop)
    if a.ndim < 3 or a.shape[-1] != 3 or 0 in a.shape:
        raise ImageReadError(name, f"expected RGB crops (..., H, W, 3), got shape {a.shape}")
    if a.dtype == np.uint8:
        return a
    if a.dtype == np.bool_ or not (np.issubdtype(a.dtype, np.integer)
                                   or np.issubdtype(a.dtype, np.floating)):
        raise ImageReadError(name, f"unsupported pixel type {a.dtype}; use uint8")
    lo, hi = float(np.min(a)), float(np.max(a))
    if not (np.isfinite(lo) and np.isfinite(hi)) or lo < 0 or hi > 255:
        raise ImageReadError(
            name, f"pixel values must lie in 0-255 (uint8 scale), got {lo:g}..{hi:g}"
        )
    return a
