"""The parameters of the auto method: the one home of their defaults and checks."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

from allnet_core.errors import ConfigError

__all__ = ["AutoParams"]

#: Fields that must be finite numbers, and their bound (``>= 0``, or ``> 0``).
_BOUNDS = dict(
    min_area=">= 0", relative_area=">= 0", group_distance=">= 0", cell_radius=">= 0",
    border_factor=">= 0", min_separation=">= 0", min_standout=">= 0", min_solidity=">= 0",
    small_solidity=">= 0", min_lobe=">= 0", cutout_nucleus=">= 0", rbc_pixels="> 0",
)


@dataclass(frozen=True)
class AutoParams:
    """Parameters of the auto segmentation method; the field defaults are the defaults.

    :func:`~allnet_core.segmentation.label_cells` and
    :func:`~allnet_core.segmentation.segment_wbc` take any of these as keyword overrides
    (``min_area`` and ``black_level`` apply to the ``"otsu"`` and ``"paper"`` methods too).

    Attributes
    ----------
    min_area : float, optional
        Smallest nucleus area in pixels (full resolution) that counts as a WBC; smaller
        purple objects are platelets or debris. Default: a fifth of a typical red cell's
        area when red cells can be measured, else ``min(2000, 0.04 * A)`` with ``A`` the
        number of non-black pixels, i.e. an absolute floor for smear fields at BCCD-like
        magnification that shrinks for small single-cell images.
    black_level : int
        Pixels whose brightest channel is at most this are background (cut-out images)
        and take no part in any threshold.
    min_contrast : int
        Least difference between the mean ``(B - G) / (B + G)`` (scaled to +-127) of the
        two Otsu classes for nuclei to count as present; keeps red cells out when a field
        holds no WBC at all.
    min_separation : float
        Nuclei also count as present when the two classes' means differ by this many
        standard deviations of the lower class (pale or desaturated stains shrink both).
    min_standout : float
        A nucleus candidate is a white cell only when its mean nucleus feature stands
        this many standard deviations above the non-nucleus class: the bluish edges of red
        cells and stain debris do not.
    min_solidity : float
        A nucleus group must fill this fraction of its convex hull (lobed nuclei do, a
        loose scatter of platelets does not).
    small_solidity : float
        ... and a group smaller than a red cell of the field more: the fraction needed
        rises linearly from ``min_solidity`` at one red-cell area to this at none. Lobed
        nuclei belong to large cells; a small group must be round, and a platelet clump
        (about a third of a red cell, ragged) is not. Groups cut by the border, and images
        whose red cells cannot be measured, need ``min_solidity`` only.
    min_lobe : float
        A nucleus group must hold one piece of at least this fraction of the area floor
        (platelet clumps are granules).
    relative_area : float
        Nucleus groups smaller than this fraction of the largest group are dropped.
    group_distance : float
        Nucleus fragments closer than this fraction of the largest fragment's radius
        belong to the same cell (lobes of a neutrophil).
    cell_radius : float
        How far the cytoplasm may reach from the nucleus, as a multiple of the radius of a
        disc of the nucleus' area.
    downscale : int, optional
        Detection runs on the image reduced by this factor, then each cell is refined at
        full resolution. Default: chosen from the measured red-cell size so that a red
        cell's radius spans about ``rbc_pixels`` reduced pixels (3 for BCCD fields, 2 for
        Zheng crops, at most 4); 2 (1 under 256 pixels) when there are no red cells to
        measure.
    split_depth : float
        Touching cells are split where the distance transform of their joint mask has
        several maxima deeper than this fraction of the highest (and every part holds a
        nucleus); 0 turns splitting off.
    border_factor : float
        A nucleus cut by the image border needs only this fraction of the area floor.
    cutout_nucleus : float
        An image with a black surround is a cut-out cell when nucleus pixels make up at
        least this fraction of its non-black pixels (a smear's nuclei are a few percent).
    rbc_pixels : float
        The red-cell radius, in reduced pixels, that the automatic ``downscale`` aims at.

    Raises
    ------
    ConfigError
        For values out of range.

    Examples
    --------
    >>> AutoParams().cell_radius
    1.2
    >>> AutoParams.from_overrides({"cell_radius": 1.5}).cell_radius
    1.5
    """

    min_area: float | None = None
    black_level: int = 10
    min_contrast: int = 14
    min_separation: float = 3.5
    min_standout: float = 4.0
    min_solidity: float = 0.5
    small_solidity: float = 0.8
    min_lobe: float = 0.5
    relative_area: float = 0.1
    group_distance: float = 0.3
    cell_radius: float = 1.2
    downscale: int | None = None
    split_depth: float = 0.25
    border_factor: float = 0.5
    cutout_nucleus: float = 0.25
    rbc_pixels: float = 18.0

    def __post_init__(self):
        if self.downscale is not None and int(self.downscale) < 1:
            raise ConfigError(f"downscale must be a positive integer, got {self.downscale!r}")
        for name, bound in _BOUNDS.items():
            v = getattr(self, name)
            v = 0.0 if v is None else v
            if not (math.isfinite(v) and (v > 0 if bound == "> 0" else v >= 0)):
                raise ConfigError(f"{name} must be a finite number {bound}, got {v!r}")
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if v is not None:  # store plain Python numbers of the declared kind
                object.__setattr__(self, f.name, int(v) if f.type.startswith("int") else float(v))

    @classmethod
    def from_overrides(cls, overrides: dict) -> AutoParams:
        """The defaults with ``overrides`` applied; an unknown name is a :class:`ConfigError`."""
        known = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(overrides) - set(known))
        if unknown:
            raise ConfigError(
                f"unknown auto-segmentation parameter {', '.join(map(repr, unknown))}; "
                f"known: {', '.join(known)}"
            )
        return cls(**overrides)
