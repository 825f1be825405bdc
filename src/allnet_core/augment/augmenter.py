"""The :class:`Augmenter`: draws parameters for the paper's four kinds of augmentation.

Replay drawn (or planned) parameters with :func:`~allnet_core.augment.apply_params`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from allnet_core.augment.params import _check_probability, _check_range, apply_params
from allnet_core.errors import ConfigError

__all__ = ["Augmenter"]


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
    >>> from allnet_core.augment import PARAM_KEYS
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

    def __call__(self, image: np.ndarray,
                 rng: np.random.Generator | int | None = None) -> np.ndarray:
        """Augment ``image`` with freshly drawn parameters.

        Without ``rng`` the Augmenter's own generator (seeded by ``seed``) is used, so a
        fresh ``Augmenter(seed=s)`` applied to the same images gives the same bytes.
        """
        return apply_params(image, self.sample_params(rng))

    def _generator(self) -> np.random.Generator:
        if self._rng is None:
            self._rng = np.random.default_rng(self.seed)
        return self._rng
