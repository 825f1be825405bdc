"""Model-input preprocessing shared by training and inference.

:func:`resize_for_model` turns a cell image of any size into ALLNet's input. The training
feed (:mod:`allnet_core.feed`) and classification (:mod:`allnet_core.inference`) both call
it, so a model sees identical pixels in training and in use.
"""

from __future__ import annotations

import numpy as np

from allnet_core.errors import ConfigError, ImageReadError

__all__ = ["resize_for_model"]


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
