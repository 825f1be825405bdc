"""The one image-validation contract of the public boundary, and small argument checks.

Every public function that takes an image array calls :func:`check_rgb`: an image is an
``(H, W, 3)`` array of ``uint8`` pixels. Two documented knobs let a step be stricter or
more lenient, so the steps agree on everything else (message wording, grayscale, empty
arrays, stacks):

- ``alpha``: ``(H, W, 4)`` input has its alpha channel dropped (segmentation,
  classification), or is refused where the output must keep the input's shape
  (augmentation).
- ``convert``: other pixel types are refused with a pointer to
  :func:`allnet_core.io.as_rgb_uint8`, or converted by exactly that function's rules (the
  same rules :func:`allnet_core.io.read_rgb` applies to files).

>>> import numpy as np
>>> check_rgb(np.zeros((4, 4, 4), np.uint8)).shape
(4, 4, 3)
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from allnet_core.errors import ConfigError, ImageReadError

__all__ = ["check_choice", "check_rgb"]


def check_rgb(image, name: str = "image", *, alpha: bool = True, convert: bool = False,
              needs: str = "this step") -> np.ndarray:
    """Return ``image`` as an ``(H, W, 3)`` uint8 array, or raise a clear error.

    Parameters
    ----------
    image : array-like
        The image.
    name : str
        Named in error messages (a file name or ``"rgb"``).
    alpha : bool
        Accept ``(H, W, 4)`` and drop the alpha channel; refuse it when False.
    convert : bool
        Convert other pixel types with :func:`allnet_core.io.as_rgb_uint8`; refuse them
        when False.
    needs : str
        What needs a colour image, for the grayscale message ("saturation needs ...").

    Returns
    -------
    (H, W, 3) uint8 array
        A view of ``image`` where possible.

    Raises
    ------
    ImageReadError
        For grayscale, empty, stacked or wrongly typed input, naming ``name``.
    """
    a = np.asarray(image)
    if a.ndim == 2 or (a.ndim == 3 and a.shape[-1] in (1, 2)):
        raise ImageReadError(
            name, f"grayscale image (shape {a.shape}); {needs} needs a colour (RGB) image, "
            "HxWx3 uint8")
    channels = (3, 4) if alpha else (3,)
    if a.ndim != 3 or a.shape[-1] not in channels:
        raise ImageReadError(
            name, f"expected an HxWx3 uint8 RGB image, got an array of shape {a.shape}")
    if a.shape[0] == 0 or a.shape[1] == 0:
        raise ImageReadError(name, f"the image is empty (shape {a.shape})")
    if a.dtype != np.uint8:
        if not convert:
            raise ImageReadError(
                name, f"expected an HxWx3 uint8 RGB image (pixels 0-255), got dtype {a.dtype} "
                f"and shape {a.shape}; convert with allnet_core.io.as_rgb_uint8 first")
        from allnet_core.io import as_rgb_uint8

        return as_rgb_uint8(a, source=name)
    return a[..., :3]


def check_choice(value, choices: Iterable, what: str):
    """Return ``value`` if it is one of ``choices``, else raise :class:`ConfigError`."""
    choices = tuple(choices)
    if value not in choices:
        raise ConfigError(f"{what} must be one of {', '.join(map(repr, choices))}, got {value!r}")
    return value
