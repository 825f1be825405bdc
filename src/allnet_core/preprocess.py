"""Model-input preprocessing shared by training and inference: the pixels the model sees.

:func:`resize_for_model` turns a cell image of any size into ALLNet's input. The training
feed (:mod:`allnet_core.feed`) and classification (:mod:`allnet_core.inference`, through
:func:`prepare_crops`) both call it, so a model sees identical pixels in training and in
use. The model takes ``float32`` RGB images in 0-255 (it rescales internally).
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from allnet_core.errors import ConfigError, ImageReadError, ModelError

__all__ = ["prepare_crops", "resize_for_model"]


def resize_for_model(image: np.ndarray, size: int) -> np.ndarray:
    """Turn a cell image into the model's input: ``(size, size, 3)`` float32 in 0-255.

    A non-square image is first padded with black to a centred square (cells sit on black,
    so the aspect ratio is kept). Shrinking uses area averaging
    (:func:`skimage.transform.resize_local_mean`: every output pixel is the mean of the
    input area it covers, so no aliasing); enlarging uses bilinear interpolation
    (:func:`skimage.transform.resize`, ``order=1``). An image already of the right size is
    only converted to float32. Inference uses the same function, so training and
    classification see identical pixels.

    Parameters
    ----------
    image : (H, W, 3) ndarray
        ``uint8`` (or float in 0-255) RGB image.
    size : int
        Side length of the model's input.

    Returns
    -------
    (size, size, 3) float32 ndarray

    Examples
    --------
    >>> x = resize_for_model(np.full((450, 300, 3), 200, np.uint8), 150)
    >>> x.shape, x.dtype.name, float(x[75, 75, 0]), float(x[75, 0, 0])
    ((150, 150, 3), 'float32', 200.0, 0.0)
    """
    from skimage.transform import resize, resize_local_mean

    a = np.asarray(image)
    if a.ndim != 3 or a.shape[-1] != 3 or a.shape[0] == 0 or a.shape[1] == 0:
        raise ImageReadError("<array>", f"expected an HxWx3 RGB image, got shape {a.shape}")
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 1:
        raise ConfigError(f"input size must be a positive integer, got {size!r}")
    h, w = a.shape[:2]
    if h != w:
        side = max(h, w)
        square = np.zeros((side, side, 3), dtype=a.dtype)
        top, left = (side - h) // 2, (side - w) // 2
        square[top:top + h, left:left + w] = a
        a = square
    side = a.shape[0]
    if side == size:
        return a.astype(np.float32)
    if side > size:
        out = resize_local_mean(a, (size, size), grid_mode=True, preserve_range=True,
                                channel_axis=-1)
    else:
        out = resize(a, (size, size), order=1, mode="edge", anti_aliasing=False,
                     preserve_range=True)
    return out.astype(np.float32)


def prepare_crops(crops, input_size: tuple[int, int], source: str = "the model") -> np.ndarray:
    """Turn crops into a model input batch: ``(N, H, W, 3)`` float32 in 0-255.

    Parameters
    ----------
    crops : (N, h, w, 3) array or sequence of (h, w, 3) arrays
        ``uint8`` RGB crops of any sizes, or real numbers in 0-255. Crops not already at
        ``input_size`` go through :func:`resize_for_model` (black padding
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
