"""The four kinds of augmentation, each a pure function of ``(image, parameters)``.

The paper (Sampathila et al. 2022) augmented C-NMC cells with vertical and horizontal
flips (:func:`flip`), clockwise and anticlockwise rotation (:func:`rotate`), random
brightness (:func:`adjust_brightness`), and random Gaussian blur (:func:`gaussian_blur`)
with added salt-and-pepper noise (:func:`salt_and_pepper`).

Conventions
-----------
* Images are ``HxWx3`` ``uint8`` cells on an exactly black background (the C-NMC look),
  checked by :func:`allnet_core.validation.check_rgb` (RGBA is refused: the output keeps the
  input's shape). Every function returns a new array of the same shape and dtype; the
  input is never modified.
* The *cell* is the set of pixels with any non-zero channel. Flips, rotations by multiples
  of 90 degrees, brightness and blur keep the background exactly ``(0, 0, 0)``:

  - :func:`rotate` interpolates bilinearly; background pixels whose neighbourhood is all
    black stay exactly 0, and everything outside the source frame is filled with 0.
  - :func:`adjust_brightness` scales pixel values, and ``0 * factor == 0``.
  - :func:`gaussian_blur` is a *masked* (normalised) Gaussian blur: it averages only over
    cell pixels and writes only cell pixels, so the cell does not bleed into the
    background and its rim does not darken.

  Brightness and blur also keep the cell mask exactly: a channel that was non-zero stays
  at least 1.
* :func:`salt_and_pepper` is the one deliberate exception. Like the paper's noise it acts
  on the whole frame by default, so salt (white) specks appear on the background too (pepper
  on the background is invisible). Pass ``cell_only=True`` to keep the background black.
* Angles are in degrees; positive angles turn the cell anticlockwise on screen (as
  :func:`skimage.transform.rotate`), negative angles clockwise.
"""

from __future__ import annotations

import math

import numpy as np

from allnet_core.errors import ConfigError
from allnet_core.validation import check_rgb

__all__ = ["adjust_brightness", "flip", "gaussian_blur", "rotate", "salt_and_pepper"]


def _cell_mask(image: np.ndarray) -> np.ndarray:
    """Pixels with any non-zero channel."""
    return image.any(axis=-1)


def _to_uint8_keep_mask(values: np.ndarray, original: np.ndarray) -> np.ndarray:
    """Round to uint8; channels that were non-zero in ``original`` stay >= 1."""
    out = np.rint(np.clip(values, 0, 255)).astype(np.uint8)
    np.maximum(out, original > 0, out=out)
    return out


def _bbox(mask: np.ndarray, pad: int = 0) -> tuple[slice, slice] | None:
    rows = np.flatnonzero(mask.any(axis=1))
    if rows.size == 0:
        return None
    cols = np.flatnonzero(mask.any(axis=0))
    h, w = mask.shape
    r0, r1 = max(rows[0] - pad, 0), min(rows[-1] + pad + 1, h)
    c0, c1 = max(cols[0] - pad, 0), min(cols[-1] + pad + 1, w)
    return slice(r0, r1), slice(c0, c1)


def flip(image: np.ndarray, rng: np.random.Generator | int | None = None,
         axis: int | None = None) -> np.ndarray:
    """Mirror an image vertically (``axis=0``) or horizontally (``axis=1``).

    Parameters
    ----------
    image : (H, W, 3) uint8 ndarray
        The cell.
    rng : numpy.random.Generator or int, optional
        Draws the axis when ``axis`` is None.
    axis : {0, 1}, optional
        0 flips upside down (vertical flip), 1 flips left-right (horizontal flip).

    Returns
    -------
    (H, W, 3) uint8 ndarray

    Examples
    --------
    >>> img = np.zeros((4, 4, 3), np.uint8); img[0, 0] = 255
    >>> flip(img, axis=1)[0, 3].tolist()
    [255, 255, 255]
    """
    a = check_rgb(image, "<array>", alpha=False)
    if axis is None:
        if rng is None:
            raise ConfigError("flip: give either axis (0 or 1) or rng to draw it")
        axis = int(np.random.default_rng(rng).integers(2))
    if axis not in (0, 1):
        raise ConfigError(f"flip: axis must be 0 (vertical) or 1 (horizontal), got {axis!r}")
    return np.ascontiguousarray(np.flip(a, axis=int(axis)))


def _rotation_matrix(angle: float) -> np.ndarray:
    """2x2 matrix turning (x, y-down) coordinates ``angle`` degrees anticlockwise on screen."""
    quarter = angle / 90.0
    if quarter == round(quarter):  # exact for multiples of 90 degrees: lossless
        c, s = [(1, 0), (0, 1), (-1, 0), (0, -1)][int(round(quarter)) % 4]
    else:
        c, s = math.cos(math.radians(angle)), math.sin(math.radians(angle))
    # Anticlockwise on screen (y down) is a rotation by -angle in the x-right/y-down frame.
    return np.array([[c, s], [-s, c]], dtype=np.float64)


def rotate(image: np.ndarray, angle: float, margin: int = 2, order: int = 1) -> np.ndarray:
    """Rotate the cell about its centre by any angle, keeping it whole.

    The cell (every non-zero pixel) turns about its centroid, rounded to the pixel grid.
    If the turned cell would leave the frame it is first translated back inside; only if
    it is larger than the frame in the turned direction is it also shrunk, by the smallest
    factor that makes it fit. Nothing of the cell is ever cut off at the corners, and the
    background stays black (bilinear interpolation of black is black; outside is filled
    with 0). Rotations by multiples of 90 degrees of a cell that fits are lossless.

    Parameters
    ----------
    image : (H, W, 3) uint8 ndarray
        The cell on a black background.
    angle : float
        Degrees; positive turns anticlockwise on screen, negative clockwise.
    margin : int, optional
        Pixels kept free between the turned cell's pixel centres and the frame's edge.
        Bilinear interpolation spreads a pixel over up to sqrt(2) output pixels, so 2
        keeps every interpolated value inside the frame.
    order : int, optional
        Spline interpolation order passed to :func:`skimage.transform.warp` (1: bilinear).

    Returns
    -------
    (H, W, 3) uint8 ndarray

    Examples
    --------
    >>> img = np.zeros((9, 9, 3), np.uint8); img[4, 4:7] = 100; img[4, 6] = 255
    >>> out = rotate(img, 90)           # the bright tip moves from the right to the top
    >>> np.argwhere(out.any(-1)).tolist(), out[3, 5].tolist()
    ([[3, 5], [4, 5], [5, 5]], [255, 255, 255])
    """
    from skimage.transform import warp

    a = check_rgb(image, "<array>", alpha=False)
    angle = float(angle)
    if not math.isfinite(angle):
        raise ConfigError(f"rotate: angle must be a finite number, got {angle!r}")
    h, w = a.shape[:2]
    mask = _cell_mask(a)
    ys, xs = np.nonzero(mask)
    if ys.size == 0 or angle % 360.0 == 0.0:
        return a.copy()
    centre = np.array([round(xs.mean()), round(ys.mean())], dtype=np.float64)
    rot = _rotation_matrix(angle)
    pts = np.stack([xs, ys]).astype(np.float64) - centre[:, None]
    turned = rot @ pts
    lo, hi = turned.min(axis=1), turned.max(axis=1)
    size = np.array([w, h], dtype=np.float64)
    room = size - 1 - 2 * margin
    span = hi - lo
    scale = 1.0
    if np.any(span > room):
        scale = float(np.min(np.where(span > 0, room / np.maximum(span, 1e-12), np.inf)))
        scale = min(scale, 1.0) * (1 - 1e-9)
    lo, hi = lo * scale + centre, hi * scale + centre
    shift = np.zeros(2)
    for k in range(2):
        first, last = margin, size[k] - 1 - margin
        if lo[k] < first:
            shift[k] = math.ceil(first - lo[k]) if scale == 1.0 else first - lo[k]
        elif hi[k] > last:
            shift[k] = math.floor(last - hi[k]) if scale == 1.0 else last - hi[k]
    lo, hi = lo + shift, hi + shift

    # Forward map q = scale * rot @ (p - centre) + centre + shift, as a 3x3 matrix.
    fwd = np.eye(3)
    fwd[:2, :2] = scale * rot
    fwd[:2, 2] = centre + shift - scale * rot @ centre
    inv = np.linalg.inv(fwd)
    # Warp only the window that can receive the cell, from only the cell's bounding box.
    x0, y0 = max(int(math.floor(lo[0])) - 2, 0), max(int(math.floor(lo[1])) - 2, 0)
    x1, y1 = min(int(math.ceil(hi[0])) + 3, w), min(int(math.ceil(hi[1])) + 3, h)
    ix0, iy0 = max(int(xs.min()) - 1, 0), max(int(ys.min()) - 1, 0)
    ix1, iy1 = min(int(xs.max()) + 2, w), min(int(ys.max()) + 2, h)
    to_global = np.array([[1, 0, x0], [0, 1, y0], [0, 0, 1]], dtype=np.float64)
    to_crop = np.array([[1, 0, -ix0], [0, 1, -iy0], [0, 0, 1]], dtype=np.float64)
    crop = a[iy0:iy1, ix0:ix1].astype(np.float32)
    window = warp(crop, to_crop @ inv @ to_global, output_shape=(y1 - y0, x1 - x0, 3),
                  order=order, mode="constant", cval=0.0, preserve_range=True)
    out = np.zeros_like(a)
    out[y0:y1, x0:x1] = np.rint(np.clip(window, 0, 255)).astype(np.uint8)
    return out


def adjust_brightness(image: np.ndarray, factor: float) -> np.ndarray:
    """Scale the cell's brightness by ``factor`` (1 leaves it unchanged).

    Pixel values are multiplied by ``factor`` and clipped to 0-255, so the black background
    stays black. Channels that were non-zero stay at least 1, so the cell mask is kept.

    Parameters
    ----------
    image : (H, W, 3) uint8 ndarray
    factor : float
        Positive multiplier; e.g. 0.8 darkens by 20 %, 1.2 brightens by 20 %.

    Returns
    -------
    (H, W, 3) uint8 ndarray

    Examples
    --------
    >>> img = np.full((2, 2, 3), 100, np.uint8)
    >>> int(adjust_brightness(img, 1.2)[0, 0, 0])
    120
    """
    a = check_rgb(image, "<array>", alpha=False)
    factor = float(factor)
    if not (math.isfinite(factor) and factor > 0):
        raise ConfigError(f"adjust_brightness: factor must be a positive number, got {factor!r}")
    return _to_uint8_keep_mask(a.astype(np.float32) * np.float32(factor), a)


def gaussian_blur(image: np.ndarray, sigma: float) -> np.ndarray:
    """Blur the cell with a Gaussian of standard deviation ``sigma`` pixels, inside the cell.

    A masked (normalised) convolution: ``G*(image*mask) / G*mask`` on cell pixels, 0 on the
    background. The cell neither bleeds into the black background nor darkens at its rim,
    and its mask is kept exactly. Uses :func:`skimage.filters.gaussian`.

    Parameters
    ----------
    image : (H, W, 3) uint8 ndarray
    sigma : float
        Standard deviation in pixels (0 returns a copy).

    Returns
    -------
    (H, W, 3) uint8 ndarray
    """
    from skimage.filters import gaussian

    a = check_rgb(image, "<array>", alpha=False)
    sigma = float(sigma)
    if not (math.isfinite(sigma) and sigma >= 0):
        raise ConfigError(f"gaussian_blur: sigma must be >= 0, got {sigma!r}")
    mask = _cell_mask(a)
    box = _bbox(mask, pad=int(math.ceil(4 * sigma)) + 1)
    out = a.copy()
    if sigma == 0 or box is None:
        return out
    sub, m = a[box].astype(np.float32), mask[box].astype(np.float32)
    num = gaussian(sub * m[..., None], sigma=sigma, mode="constant", cval=0,
                   preserve_range=True, channel_axis=-1)
    den = gaussian(m, sigma=sigma, mode="constant", cval=0, preserve_range=True)
    blurred = num / np.maximum(den, 1e-6)[..., None]
    region = _to_uint8_keep_mask(blurred, sub.astype(np.uint8))
    region[m == 0] = 0
    out[box] = region
    return out


def salt_and_pepper(image: np.ndarray, rng: np.random.Generator | int, amount: float,
                    salt_vs_pepper: float = 0.5, cell_only: bool = False) -> np.ndarray:
    """Set a random fraction ``amount`` of pixels to white (salt) or black (pepper).

    Parameters
    ----------
    image : (H, W, 3) uint8 ndarray
    rng : numpy.random.Generator or int
        Source of the noise; an int seed makes the noise replayable from a plan.
    amount : float
        Fraction of pixels (0-1) that become noise.
    salt_vs_pepper : float, optional
        Fraction of the noisy pixels that are salt (white).
    cell_only : bool, optional
        If False (the default, as in the paper), noise falls on the whole frame, so salt
        specks also appear on the black background. If True, only cell pixels are touched
        and the background stays exactly black.

    Returns
    -------
    (H, W, 3) uint8 ndarray

    Examples
    --------
    >>> img = np.zeros((100, 100, 3), np.uint8)
    >>> noisy = salt_and_pepper(img, rng=0, amount=0.1)
    >>> bool(0.03 < (noisy == 255).all(-1).mean() < 0.07)
    True
    """
    a = check_rgb(image, "<array>", alpha=False)
    amount, salt_vs_pepper = float(amount), float(salt_vs_pepper)
    if not 0.0 <= amount <= 1.0:
        raise ConfigError(f"salt_and_pepper: amount must be in [0, 1], got {amount!r}")
    if not 0.0 <= salt_vs_pepper <= 1.0:
        raise ConfigError(
            f"salt_and_pepper: salt_vs_pepper must be in [0, 1], got {salt_vs_pepper!r}"
        )
    u = np.random.default_rng(rng).random(a.shape[:2], dtype=np.float32)
    salt = u < amount * salt_vs_pepper
    pepper = (u >= amount * salt_vs_pepper) & (u < amount)
    if cell_only:
        mask = _cell_mask(a)
        salt &= mask
        pepper &= mask
    out = a.copy()
    out[salt] = 255
    out[pepper] = 0
    return out
