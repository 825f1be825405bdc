"""One training sample: read a file, augment it by its plan's parameters, make it model
input. Both feeds and the cache builder use these, so they produce the same pixels.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from allnet_core.augment import apply_params
from allnet_core.errors import ImageReadError
from allnet_core.preprocess import resize_for_model
from allnet_core.validation import check_rgb

__all__: list[str] = []


def read_sample(path: str) -> np.ndarray:
    """``HxWx3 uint8`` image of ``path``; a clear error names a bad file."""
    from allnet_core.io import read_rgb

    return check_rgb(read_rgb(path), path, alpha=False)


def augment_sample(image: np.ndarray, params: Mapping[str, Any] | str | None,
                   path: str) -> np.ndarray:
    """``image`` augmented by ``params`` (nothing when empty); errors name ``path``."""
    if not params:
        return image
    try:
        return apply_params(image, params)
    except ImageReadError as exc:
        raise ImageReadError(path, exc.problem) from exc


def model_input_uint8(image: np.ndarray, size: int) -> np.ndarray:
    """:func:`~allnet_core.preprocess.resize_for_model`, rounded back to ``uint8``.

    An image already ``size`` pixels wide is returned unchanged (no rounding happens);
    a resized one differs from the float input by at most half a grey level.
    """
    if image.shape == (size, size, 3) and image.dtype == np.uint8:
        return image
    x = resize_for_model(image, size)
    return np.rint(np.clip(x, 0, 255), out=x).astype(np.uint8)
