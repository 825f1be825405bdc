"""Augmentation parameters: a flat, JSON-serialisable dict per augmented copy.

A plan saved as CSV stores each copy's parameters as JSON text, so :func:`apply_params`
replays the same bytes. :func:`parse_params` checks such a dict (or its text);
the private range checks validate :class:`~allnet_core.augment.Augmenter` settings.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from allnet_core.augment.transforms import (
    adjust_brightness,
    flip,
    gaussian_blur,
    rotate,
    salt_and_pepper,
)
from allnet_core.errors import ConfigError
from allnet_core.validation import check_rgb

__all__ = ["PARAM_KEYS", "apply_params", "parse_params"]

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
    original = check_rgb(image, "<array>", alpha=False)
    out = original
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
    if np.may_share_memory(out, original):
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
