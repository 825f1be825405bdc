"""Augmentation of single-cell images and class balancing.

The paper (Sampathila et al. 2022) augmented C-NMC cells with four kinds of change:
vertical and horizontal flips, clockwise and anticlockwise rotation, random brightness,
and random Gaussian blur with added salt-and-pepper noise. This module provides each as
a pure function of ``(image, parameters)``, an :class:`Augmenter` that draws parameters
for the four kinds, and :func:`balance_plan`, which says for every sample of a balanced
training set which original it comes from and which parameters turn it into the copy.

Conventions
-----------
* Images are ``HxWx3`` ``uint8`` cells on an exactly black background (the C-NMC look).
  Every function returns a new array of the same shape and dtype; the input is never
  modified.
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

Parameters of one augmentation are a flat, JSON-serialisable dict (see :func:`apply_params`),
so a plan saved as CSV replays the same bytes. :func:`write_balanced_dataset` (behind
``allnet augment``) writes a balanced, augmented copy of a dataset to disk.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from allnet_core.errors import ConfigError, DatasetError, ImageReadError

__all__ = [
    "PARAM_KEYS",
    "Augmenter",
    "adjust_brightness",
    "apply_params",
    "balance_plan",
    "flip",
    "gaussian_blur",
    "parse_params",
    "read_plan",
    "rotate",
    "salt_and_pepper",
    "write_balanced_dataset",
    "write_plan",
]

#: Keys an augmentation-parameter dict may hold, in the order :func:`apply_params` applies
#: them: flip, then rotation, then brightness, then blur, then salt-and-pepper noise.
PARAM_KEYS = (
    "flip_axis",
    "rotate_angle",
    "brightness_factor",
    "blur_sigma",
    "noise_amount",
    "noise_seed",
    "noise_cell_only",
)

_DEFAULT_CLASSES = ("HEM", "ALL")
_MAX_REDRAWS = 50


# --------------------------------------------------------------------------- helpers


def _check_image(image: np.ndarray, source: str = "<array>") -> np.ndarray:
    a = np.asarray(image)
    if a.ndim != 3 or a.shape[-1] != 3 or a.dtype != np.uint8:
        raise ImageReadError(
            source,
            f"expected an HxWx3 uint8 RGB image, got shape {a.shape} and dtype {a.dtype}",
        )
    if a.shape[0] == 0 or a.shape[1] == 0:
        raise ImageReadError(source, f"the image is empty (shape {a.shape})")
    return a


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


# --------------------------------------------------------------------------- augmentations


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
    a = _check_image(image)
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

    a = _check_image(image)
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
    a = _check_image(image)
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

    a = _check_image(image)
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
    a = _check_image(image)
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


# --------------------------------------------------------------------------- parameters


def parse_params(params: Mapping[str, Any] | str | None | float) -> dict[str, Any]:
    """Turn a parameter dict, its JSON text, ``""``/``"{}"``/None/NaN into a checked dict."""
    if params is None or (isinstance(params, float) and math.isnan(params)):
        return {}
    if isinstance(params, str):
        text = params.strip()
        if not text:
            return {}
        try:
            params = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"augmentation parameters are not valid JSON: {text!r}") from exc
    if not isinstance(params, Mapping):
        raise ConfigError(f"augmentation parameters must be a dict, got {params!r}")
    unknown = sorted(set(params) - set(PARAM_KEYS))
    if unknown:
        raise ConfigError(
            f"unknown augmentation parameter(s) {unknown}; known: {list(PARAM_KEYS)}"
        )
    if ("noise_amount" in params) != ("noise_seed" in params):
        raise ConfigError("augmentation parameters need both noise_amount and noise_seed")
    return dict(params)


def apply_params(image: np.ndarray, params: Mapping[str, Any] | str | None) -> np.ndarray:
    """Apply augmentation parameters to an image, in the order of :data:`PARAM_KEYS`.

    Parameters
    ----------
    image : (H, W, 3) uint8 ndarray
    params : dict or str
        Keys (all optional): ``flip_axis`` (0/1), ``rotate_angle`` (degrees),
        ``brightness_factor``, ``blur_sigma`` (pixels), ``noise_amount`` with
        ``noise_seed`` (int) and optional ``noise_cell_only``. ``{}``, ``""`` or None
        return an unchanged copy. JSON text is accepted, as stored in a plan's CSV.

    Returns
    -------
    (H, W, 3) uint8 ndarray

    Examples
    --------
    >>> img = np.zeros((32, 32, 3), np.uint8); img[10:20, 12:18] = 150
    >>> out = apply_params(img, '{"flip_axis": 1, "brightness_factor": 1.1}')
    >>> out.shape, out.dtype.name
    ((32, 32, 3), 'uint8')
    """
    p = parse_params(params)
    out = _check_image(image)
    if not p:
        return out.copy()
    if "flip_axis" in p:
        out = flip(out, axis=int(p["flip_axis"]))
    if "rotate_angle" in p:
        out = rotate(out, float(p["rotate_angle"]))
    if "brightness_factor" in p:
        out = adjust_brightness(out, float(p["brightness_factor"]))
    if "blur_sigma" in p:
        out = gaussian_blur(out, float(p["blur_sigma"]))
    if "noise_amount" in p:
        out = salt_and_pepper(out, rng=int(p["noise_seed"]), amount=float(p["noise_amount"]),
                              cell_only=bool(p.get("noise_cell_only", False)))
    if out is image:
        out = out.copy()
    return out


def _check_probability(name: str, value: float) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{name} must be a probability in [0, 1], got {value!r}") from None
    if not 0.0 <= v <= 1.0:
        raise ConfigError(f"{name} must be a probability in [0, 1], got {value!r}")
    return v


def _check_range(name: str, value: Sequence[float], low: float, high: float,
                 low_open: bool = False) -> tuple[float, float]:
    try:
        a, b = (float(v) for v in value)
    except (TypeError, ValueError):
        raise ConfigError(f"{name} must be a pair (min, max), got {value!r}") from None
    bad_low = a <= low if low_open else a < low
    if not (math.isfinite(a) and math.isfinite(b)) or a > b or bad_low or b > high:
        side = "(" if low_open else "["
        raise ConfigError(
            f"{name} must be a pair min <= max within {side}{low}, {high}], got {value!r}"
        )
    return a, b


@dataclass
class Augmenter:
    """Draw and apply the paper's four kinds of augmentation.

    Each kind is applied independently with its probability; the values are drawn
    uniformly from the ranges. With ``at_least_one=True`` (the default) a draw in which no
    kind fired gets one kind chosen in proportion to the probabilities, so an augmented copy
    always differs from its original.

    Parameters
    ----------
    flip_p : float
        Probability of a flip; the axis (vertical or horizontal) is drawn 50/50.
    rotate_p : float
        Probability of a rotation by an angle from ``rotate_range``.
    brightness_p : float
        Probability of a brightness change by a factor from ``brightness_range``.
    blur_noise_p : float
        Probability of a Gaussian blur (``sigma_range``) followed by salt-and-pepper noise
        (``noise_amount_range``), the paper's fourth kind.
    rotate_range : (float, float)
        Degrees; negative is clockwise, positive anticlockwise.
    brightness_range : (float, float)
        Multiplicative factors (> 0).
    sigma_range : (float, float)
        Gaussian standard deviations in pixels.
    noise_amount_range : (float, float)
        Fractions of pixels turned to salt or pepper.
    noise_cell_only : bool
        Keep the background black under noise (see :func:`salt_and_pepper`).
    at_least_one : bool
        Guarantee that every draw changes the image.
    seed : int or None
        Seed of the generator :meth:`__call__` uses when it is given no ``rng``.

    The paper gives no probabilities or ranges; these defaults are ours and are saved with
    every run (``Augmenter.to_dict()``).

    Examples
    --------
    >>> aug = Augmenter(seed=0)
    >>> params = aug.sample_params(np.random.default_rng(1))
    >>> sorted(params) == sorted(set(params) & set(PARAM_KEYS))
    True
    """

    flip_p: float = 0.5
    rotate_p: float = 0.5
    brightness_p: float = 0.5
    blur_noise_p: float = 0.5
    rotate_range: tuple[float, float] = (-90.0, 90.0)
    brightness_range: tuple[float, float] = (0.8, 1.2)
    sigma_range: tuple[float, float] = (0.5, 1.5)
    noise_amount_range: tuple[float, float] = (0.001, 0.01)
    noise_cell_only: bool = False
    at_least_one: bool = True
    seed: int | None = 0
    _rng: np.random.Generator | None = field(default=None, init=False, repr=False,
                                             compare=False)

    def __post_init__(self):
        for name in ("flip_p", "rotate_p", "brightness_p", "blur_noise_p"):
            setattr(self, name, _check_probability(name, getattr(self, name)))
        self.rotate_range = _check_range("rotate_range", self.rotate_range, -3600, 3600)
        self.brightness_range = _check_range("brightness_range", self.brightness_range, 0,
                                             math.inf, low_open=True)
        self.sigma_range = _check_range("sigma_range", self.sigma_range, 0, 100)
        self.noise_amount_range = _check_range("noise_amount_range", self.noise_amount_range,
                                               0, 1)
        self.noise_cell_only = bool(self.noise_cell_only)
        self.at_least_one = bool(self.at_least_one)
        if self.seed is not None:
            if isinstance(self.seed, bool) or not isinstance(self.seed, (int, np.integer)):
                raise ConfigError(f"seed must be an int or None, got {self.seed!r}")
            self.seed = int(self.seed)

    def to_dict(self) -> dict[str, Any]:
        """The settings as a JSON-serialisable dict (for ``config.json``)."""
        d = asdict(self)
        d.pop("_rng", None)
        return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}

    @classmethod
    def from_dict(cls, settings: Mapping[str, Any]) -> Augmenter:
        """Rebuild an Augmenter from :meth:`to_dict`'s output."""
        known = {k for k in cls.__dataclass_fields__ if not k.startswith("_")}
        unknown = sorted(set(settings) - known)
        if unknown:
            raise ConfigError(f"unknown Augmenter setting(s) {unknown}; known: {sorted(known)}")
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in settings.items()})

    def sample_params(self, rng: np.random.Generator | int | None = None) -> dict[str, Any]:
        """Draw one set of parameters (a JSON-serialisable dict for :func:`apply_params`).

        The generator always advances by the same amount per draw (plus one draw when
        ``at_least_one`` had to pick a kind), so plans stay reproducible. Values are rounded
        to a readable precision *before* use, so the stored values are exactly the applied
        ones.
        """
        rng = self._generator() if rng is None else np.random.default_rng(rng)
        probs = np.array([self.flip_p, self.rotate_p, self.brightness_p, self.blur_noise_p])
        fire = rng.random(4) < probs
        axis = int(rng.integers(2))
        angle = round(float(rng.uniform(*self.rotate_range)), 2)
        factor = round(float(rng.uniform(*self.brightness_range)), 4)
        sigma = round(float(rng.uniform(*self.sigma_range)), 3)
        amount = round(float(rng.uniform(*self.noise_amount_range)), 5)
        noise_seed = int(rng.integers(2**31 - 1))
        if self.at_least_one and not fire.any() and probs.sum() > 0:
            fire[int(rng.choice(4, p=probs / probs.sum()))] = True
        params: dict[str, Any] = {}
        if fire[0]:
            params["flip_axis"] = axis
        if fire[1]:
            params["rotate_angle"] = angle
        if fire[2]:
            params["brightness_factor"] = factor
        if fire[3]:
            params["blur_sigma"] = sigma
            params["noise_amount"] = amount
            params["noise_seed"] = noise_seed
            if self.noise_cell_only:
                params["noise_cell_only"] = True
        return params

    def apply(self, image: np.ndarray, params: Mapping[str, Any] | str | None) -> np.ndarray:
        """Apply parameters from :meth:`sample_params` (or a plan); see :func:`apply_params`."""
        return apply_params(image, params)

    def __call__(self, image: np.ndarray,
                 rng: np.random.Generator | int | None = None) -> np.ndarray:
        """Augment ``image`` with freshly drawn parameters.

        Without ``rng`` the Augmenter's own generator (seeded by ``seed``) is used, so a
        fresh ``Augmenter(seed=s)`` applied to the same images gives the same bytes.
        """
        return self.apply(image, self.sample_params(rng))

    def _generator(self) -> np.random.Generator:
        if self._rng is None:
            self._rng = np.random.default_rng(self.seed)
        return self._rng


# --------------------------------------------------------------------------- balancing


def _resolve_classes(values: list, classes: Sequence | None) -> tuple:
    if classes is not None:
        return tuple(classes)
    present = set(values)
    for candidate in (_DEFAULT_CLASSES, (0, 1)):
        if present <= set(candidate):
            return candidate
    try:
        return tuple(sorted(present))
    except TypeError:
        return tuple(sorted(present, key=str))


def balance_plan(labels: Sequence, per_class: int | None = 6000, seed: int = 0,
                 augmenter: Augmenter | None = None,
                 classes: Sequence | None = None):
    """Plan a class-balanced training set of ``per_class`` samples per class.

    A class with more originals than ``per_class`` is subsampled (without replacement,
    under ``seed``). A class with fewer keeps every original once, as is, and is filled
    with augmented copies spread evenly over its originals: the originals are shuffled once
    and copies go round-robin, so no original gets more than one copy more than another.
    Parameters are redrawn (up to 50 times) when they repeat those of an earlier copy of
    the same original, so copies of one original differ.

    Give it the training part of a split only: the plan refers to rows of ``labels`` by
    position and never to anything else, so hold-out and validation images cannot leak in.

    Parameters
    ----------
    labels : sequence
        Class label of each training image (e.g. ``"ALL"``/``"HEM"``), in the order of the
        table the plan will index.
    per_class : int or None, optional
        Samples per class after balancing (the paper: 6000). None means the size of the
        largest class.
    seed : int, optional
        Seed for subsampling, the spread of copies and the augmentation parameters.
    augmenter : Augmenter, optional
        Draws the parameters of the copies (default ``Augmenter()``).
    classes : sequence, optional
        Classes that must all be present. Default: ``("HEM", "ALL")`` for those string
        labels, ``(0, 1)`` for those integer labels, else the labels present.

    Returns
    -------
    pandas.DataFrame
        One row per output sample, classes in ``classes`` order, originals first:

        ``index``   row position (0-based) into ``labels``
        ``label``   the class label
        ``augment`` False for an original used as is, True for an augmented copy
        ``copy``    0 for the original, k for its k-th augmented copy
        ``params``  JSON text of the augmentation parameters (``"{}"`` for originals)

    Raises
    ------
    ConfigError
        If ``per_class`` is not a positive integer.
    DatasetError
        If ``labels`` is empty or a class has no images.

    Examples
    --------
    >>> plan = balance_plan(["ALL"] * 5 + ["HEM"] * 2, per_class=4, seed=0)
    >>> plan.groupby("label").size().to_dict()
    {'ALL': 4, 'HEM': 4}
    >>> int(plan["augment"].sum())
    2
    """
    import pandas as pd

    if per_class is not None and (
        isinstance(per_class, bool) or not isinstance(per_class, (int, np.integer))
        or per_class <= 0
    ):
        raise ConfigError(f"per_class must be a positive integer, got {per_class!r}")
    values = list(np.asarray(labels, dtype=object).ravel()) if len(labels) else []
    if not values:
        raise DatasetError("cannot balance: the list of training labels is empty")
    if augmenter is None:
        augmenter = Augmenter()
    cls = _resolve_classes(values, classes)
    arr = np.array([str(v) for v in values], dtype=object)
    by_class = {c: np.flatnonzero(arr == str(c)) for c in cls}
    missing = [c for c, idx in by_class.items() if idx.size == 0]
    if missing:
        counts = {str(c): int(i.size) for c, i in by_class.items()}
        raise DatasetError(
            f"cannot balance: class(es) {missing} have no images (counts: {counts})"
        )
    stray = sorted({str(v) for v in values} - {str(c) for c in cls})
    if stray:
        raise DatasetError(f"labels {stray} are not among the classes {list(cls)}")
    target = int(per_class) if per_class is not None else max(i.size for i in by_class.values())

    rng = np.random.default_rng(seed)
    rows: list[tuple] = []
    for c in cls:
        idx = by_class[c]
        label = values[idx[0]]
        if idx.size >= target:
            keep = np.sort(rng.choice(idx, size=target, replace=False))
            rows.extend((int(i), label, False, 0, "{}") for i in keep)
            continue
        rows.extend((int(i), label, False, 0, "{}") for i in idx)
        order = rng.permutation(idx)
        seen: dict[int, set[str]] = {}
        for k in range(target - idx.size):
            src = int(order[k % idx.size])
            used = seen.setdefault(src, set())
            for _ in range(_MAX_REDRAWS):  # no two copies of one original alike
                text = json.dumps(augmenter.sample_params(rng), sort_keys=True)
                if text not in used and text != "{}":
                    break
            used.add(text)
            rows.append((src, label, True, k // idx.size + 1, text))
    return pd.DataFrame(rows, columns=["index", "label", "augment", "copy", "params"])


def write_plan(path: str | os.PathLike, plan) -> os.PathLike:
    """Save a plan from :func:`balance_plan` as CSV, atomically."""
    from allnet_core.io import write_csv

    return write_csv(path, plan)


def read_plan(path: str | os.PathLike):
    """Read a plan saved by :func:`write_plan` (params stay JSON text, ``{}`` for none)."""
    import pandas as pd

    try:
        plan = pd.read_csv(path, keep_default_na=False, dtype={"params": str, "label": str})
    except (OSError, ValueError) as exc:
        raise DatasetError(f"{os.fspath(path)}: cannot read the plan ({exc})") from exc
    missing = {"index", "label", "params"} - set(plan.columns)
    if missing:
        raise DatasetError(f"{os.fspath(path)}: the plan lacks column(s) {sorted(missing)}")
    if "augment" in plan.columns and plan["augment"].dtype != bool:
        plan["augment"] = plan["augment"].astype(str).str.lower().eq("true")
    return plan


# --------------------------------------------------------------------------- files on disk

_LOSSLESS_SUFFIXES = (".bmp", ".png", ".tif", ".tiff")


def _copy_name(source_name: str, copy: int) -> str:
    """``UID_11_1_2_all.bmp`` -> ``UID_11_1_2_aug3_all.bmp``; else ``<stem>_aug3<suffix>``."""
    import re
    from pathlib import PurePath

    p = PurePath(source_name)
    suffix = p.suffix if p.suffix.lower() in _LOSSLESS_SUFFIXES else ".png"
    m = re.match(r"^(UID_.+)_(all|hem)$", p.stem, re.IGNORECASE)
    if m:
        return f"{m.group(1)}_aug{copy}_{m.group(2)}{suffix}"
    return f"{p.stem}_aug{copy}{suffix}"


def write_balanced_dataset(table, out: str | os.PathLike, per_class: int | None = 6000,
                           seed: int = 0, augmenter: Augmenter | None = None,
                           workers: int | None = None, progress=None, cancel=None):
    """Write a class-balanced, augmented copy of a dataset to ``out`` (the paper's Fig. 8).

    The plan comes from :func:`balance_plan` over the whole table. Originals are copied
    byte for byte; augmented copies are written losslessly (the source's format for BMP,
    PNG and TIFF, PNG for JPEG sources). The output is a dataset that
    :func:`allnet_core.datasets.discover` reads with the same labels, subjects and folds:

    * ``out/[fold_<N>/]{all,hem}/<file>``: the fold folder is kept when the source had one;
    * copies are named ``UID_<subject>_<image>_<cell>_aug<k>_{all,hem}.bmp`` for C-NMC
      sources and ``<stem>_aug<k><suffix>`` otherwise, so the subject stays in the name;
    * ``out/subjects.csv`` (``file``, ``subject``) maps every file to its subject;
    * ``out/augment_plan.csv``: for every output file its source, label, subject and
      parameters (a copy that came out byte-identical to its original or to another copy
      of it is redrawn, and the final parameters are recorded);
    * ``out/augment.json``: the settings.

    This augments *before* any split, as the paper did; near-copies of one cell then land
    on both sides of a later per-image split. ``allnet train`` instead balances the
    training part of each split only.

    Parameters
    ----------
    table : pandas.DataFrame
        From :func:`allnet_core.datasets.discover` (``path``, ``label``, ``subject``,
        ``fold``).
    out : path-like
        Output folder; must not exist or be empty.
    per_class, seed, augmenter
        As for :func:`balance_plan`.
    workers : int, optional
        Threads writing files (default ``min(4, cpu_count)``).
    progress : callable, optional
        Receives ``{"kind": "file", "done": n, "total": N}`` events.
    cancel : CancelToken, optional
        Checked between source images.

    Returns
    -------
    pandas.DataFrame
        The written plan (as in ``augment_plan.csv``).
    """
    import hashlib
    import shutil
    from concurrent.futures import ThreadPoolExecutor
    from pathlib import Path

    import pandas as pd

    from allnet_core.io import atomic_write, read_rgb, write_csv, write_image, write_json
    from allnet_core.progress import check_cancel, emit

    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ConfigError(f"{out}: output folder exists and is not empty; choose a new folder")
    missing = {"path", "label", "subject"} - set(table.columns)
    if missing:
        raise DatasetError(f"dataset table lacks column(s) {sorted(missing)}")
    augmenter = augmenter or Augmenter()
    table = table.reset_index(drop=True)
    plan = balance_plan(table["label"], per_class=per_class, seed=seed, augmenter=augmenter)
    folds = table["fold"].astype(str) if "fold" in table.columns else pd.Series([""] * len(table))

    # Output names, decided up front (unique, deterministic).
    used: set[str] = set()
    files = []
    for r in plan.itertuples(index=False):
        src = Path(table.at[r.index, "path"])
        folder = (f"fold_{folds[r.index]}/" if folds[r.index] else "") + str(r.label).lower()
        name = src.name if not r.augment else _copy_name(src.name, int(r.copy))
        rel = f"{folder}/{name}"
        n = 1
        while rel.lower() in used:
            stem, suffix = os.path.splitext(name)
            rel = f"{folder}/{stem}_{n}{suffix}"
            n += 1
        used.add(rel.lower())
        files.append(rel)
    plan = plan.assign(file=files)
    params = list(plan["params"])

    def work(index: int, rows: list[int]) -> None:
        src = Path(table.at[index, "path"])
        original = None
        seen: set[bytes] = set()
        for i in rows:
            dest = out / files[i]
            dest.parent.mkdir(parents=True, exist_ok=True)
            if not plan.at[i, "augment"]:
                with atomic_write(dest) as tmp:
                    shutil.copyfile(src, tmp)
                continue
            if original is None:
                original = read_rgb(src)
                seen.add(hashlib.sha256(original.tobytes()).digest())
            p = params[i]
            for attempt in range(_MAX_REDRAWS + 1):
                image = apply_params(original, p)
                digest = hashlib.sha256(image.tobytes()).digest()
                if digest not in seen:
                    break
                redraw = np.random.default_rng([seed, index, int(plan.at[i, "copy"]), attempt])
                p = json.dumps(augmenter.sample_params(redraw), sort_keys=True)
            seen.add(digest)
            params[i] = p
            write_image(dest, image)

    groups = plan.groupby("index", sort=True).indices
    total, done = len(plan), 0
    emit(progress, "start", total=total)
    n_workers = workers or max(1, min(4, os.cpu_count() or 1))
    with ThreadPoolExecutor(max_workers=n_workers) as pool:
        futures = []
        for index, rows in groups.items():
            futures.append((pool.submit(work, int(index), [int(i) for i in rows]), len(rows)))
        try:
            for fut, n in futures:
                check_cancel(cancel, "augment")
                fut.result()
                done += n
                emit(progress, "file", done=done, total=total)
        except BaseException:
            for fut, _ in futures:
                fut.cancel()
            raise
    plan["params"] = params
    plan = plan.assign(
        source=[str(table.at[i, "path"]) for i in plan["index"]],
        subject=[str(table.at[i, "subject"]) for i in plan["index"]],
        fold=[folds[i] for i in plan["index"]],
    )[["file", "source", "label", "subject", "fold", "index", "augment", "copy", "params"]]
    write_csv(out / "subjects.csv",
              pd.DataFrame({"file": plan["file"], "subject": plan["subject"]}))
    write_csv(out / "augment_plan.csv", plan)
    counts = {str(k): int(v) for k, v in plan.groupby("label").size().items()}
    write_json(out / "augment.json", {"per_class": per_class, "seed": seed,
                                      "augmenter": augmenter.to_dict(), "counts": counts,
                                      "sources": len(table)})
    emit(progress, "done", total=total, counts=counts)
    return plan
