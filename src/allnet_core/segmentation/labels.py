"""Masks and instance labels of the white blood cells, by any of the three methods."""

from __future__ import annotations

import numpy as np

from allnet_core.segmentation._features import brightest
from allnet_core.segmentation._morphology import fill_holes, relabel_sequential
from allnet_core.segmentation._otsu import otsu_mask
from allnet_core.segmentation._params import AutoParams
from allnet_core.segmentation._pipeline import auto_labels
from allnet_core.segmentation._scale import area_floor
from allnet_core.segmentation.paper import PAPER_HIGH, PAPER_LOW, segment_paper
from allnet_core.validation import check_choice, check_rgb

__all__ = ["METHODS", "PARTS", "label_cells", "segment_wbc"]

#: Methods accepted by :func:`segment_wbc` and :func:`label_cells`.
METHODS = ("auto", "otsu", "paper")
#: What :func:`segment_wbc` returns: whole cells or nuclei.
PARTS = ("cell", "nucleus")


def segment_wbc(rgb, method: str = "auto", part: str = "cell", **kwargs) -> np.ndarray:
    """Boolean mask of the white blood cells in an RGB image.

    Parameters
    ----------
    rgb : (H, W, 3) uint8 array
        A blood-smear field or a single-cell image (a black background is ignored when
        thresholds are computed).
    method : {"auto", "otsu", "paper"}
        ``"auto"``: the adaptive method described in :mod:`allnet_core.segmentation`
        (default). ``"otsu"``: Otsu's threshold on HSI saturation (reference). ``"paper"``:
        the paper's fixed HSI rule (:func:`segment_paper`).
    part : {"cell", "nucleus"}
        Whole cells (nucleus plus cytoplasm) or nuclei only. ``"otsu"`` and ``"paper"``
        make no such distinction and return the same mask for both.
    **kwargs
        ``"paper"``: ``low``, ``high``, ``space`` of :func:`segment_paper`. Otherwise:
        fields of :class:`AutoParams` (an unknown name is a :class:`ConfigError`).

    Returns
    -------
    (H, W) bool array

    Warns
    -----
    SegmentationWarning
        As :func:`label_cells`.

    Examples
    --------
    >>> from allnet_core.io import read_rgb
    >>> rgb = read_rgb("BloodImage_00000.jpg")  # doctest: +SKIP
    >>> segment_wbc(rgb).mean()  # doctest: +SKIP
    0.14
    """
    a = check_rgb(rgb, "rgb", needs="saturation")
    check_choice(method, METHODS, "method")
    check_choice(part, PARTS, "part")
    if method == "paper":
        return segment_paper(a, **kwargs)[0]
    p = AutoParams.from_overrides(kwargs)
    if method == "otsu":
        return otsu_mask(a, p.black_level)
    cells, nuclei = auto_labels(a, p, want_nuclei=part == "nucleus")
    return (nuclei if part == "nucleus" else cells) > 0


def label_cells(rgb, method: str = "auto", *, low: float = PAPER_LOW, high: float = PAPER_HIGH,
                space: str = "hsi", return_nuclei: bool = False, **params):
    """Instance labels of the white blood cells, one id per cell.

    Parameters
    ----------
    rgb : (H, W, 3) uint8 array
        A blood-smear field or a single-cell image.
    method : {"auto", "otsu", "paper"}
        ``"auto"`` (default) is described in :mod:`allnet_core.segmentation`; ``"otsu"``
        and ``"paper"`` label the connected components of their masks (larger than
        ``min_area``) and do not split touching cells.
    low, high, space
        The paper's saturation range and colour space (``method="paper"`` only; see
        :func:`segment_paper`).
    return_nuclei : bool
        Also return the nucleus labels (same ids).
    **params
        Parameters of the auto method, overriding the defaults of :class:`AutoParams`
        (``min_area``, ``black_level``, ``min_contrast``, ``relative_area``,
        ``group_distance``, ``cell_radius``, ``downscale``, ``split_depth``, ...; see there
        for each default). ``"otsu"`` and ``"paper"`` use ``min_area`` and ``black_level``.

    Returns
    -------
    labels : (H, W) int32 array
        0 is background, ``1..N`` are cells. Cells cut by the image border are kept.
    nuclei : (H, W) int32 array
        Only with ``return_nuclei=True``.

    Raises
    ------
    ConfigError
        For an unknown method or parameter name, or a value out of range.

    Warns
    -----
    SegmentationWarning
        ``"auto"``: reason ``"stain not recognised"`` when the candidate white cells look
        like the field's red cells; nothing is labelled then. ``"paper"``: reason ``"paper
        rule selects nothing"`` (see :func:`segment_paper`). See
        :mod:`allnet_core.segmentation.status` for showing them in a front end.
    """
    a = check_rgb(rgb, "rgb", needs="saturation")
    check_choice(method, METHODS, "method")
    p = AutoParams.from_overrides(params)
    if method == "auto":
        cells, nuclei = auto_labels(a, p, want_nuclei=return_nuclei)
        if return_nuclei:
            return cells, np.where(nuclei > 0, cells, 0).astype(np.int32)
        return cells
    if method == "paper":
        mask = segment_paper(a, low=low, high=high, space=space)[0]
    else:
        mask = otsu_mask(a, p.black_level)
    lab = _components(mask, area_floor(p, np.count_nonzero(brightest(a) > p.black_level), 1))
    return (lab, lab.copy()) if return_nuclei else lab


def _components(mask: np.ndarray, min_area: float) -> np.ndarray:
    """Labels of the 8-connected components of ``mask`` (holes filled) of ``min_area``+."""
    from skimage.measure import label

    lab = label(fill_holes(mask), connectivity=2).astype(np.int32)
    too_small = np.bincount(lab.ravel()) < min_area
    too_small[0] = True
    lab[too_small[lab]] = 0
    return relabel_sequential(lab) if lab.any() else lab
