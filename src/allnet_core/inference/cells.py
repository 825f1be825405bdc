"""Find the cells of an image and cut them out, before any model is involved.

A single-cell image (a cell cut out on an exactly black background, like C-NMC's) is used
whole. A smear field is segmented first (:func:`allnet_core.segmentation.label_cells`) and
every white cell is cut out as a C-NMC-like 450x450 crop
(:func:`allnet_core.segmentation.extract_cells`). :func:`is_single_cell_image` decides
between the two.
"""

from __future__ import annotations

import numpy as np

from allnet_core.errors import ConfigError
from allnet_core.validation import check_choice, check_rgb

__all__ = ["CELL_CROP_SIZE", "MODES", "image_cells", "is_single_cell_image"]

#: Side of the C-NMC-like crops cut out of smear fields (C-NMC cells are 450x450).
CELL_CROP_SIZE = 450
#: Values of ``mode`` in :meth:`Classifier.classify_image` and ``allnet classify --mode``.
MODES = ("auto", "cells", "smear")


def is_single_cell_image(rgb, black_fraction: float = 0.4) -> bool:
    """Whether ``rgb`` is a cut-out cell on black (like C-NMC) rather than a smear field.

    Parameters
    ----------
    rgb : (H, W, 3) uint8 array
    black_fraction : float
        Least fraction of pixels that are exactly ``(0, 0, 0)``. C-NMC cells have 75-91 %;
        smear fields practically none.

    Returns
    -------
    bool

    Examples
    --------
    >>> img = np.zeros((64, 64, 3), np.uint8); img[24:40, 24:40] = 150
    >>> is_single_cell_image(img)
    True
    """
    a = check_rgb(rgb, "image", convert=True)
    if not 0.0 < black_fraction <= 1.0:
        raise ConfigError(f"black_fraction must be in (0, 1], got {black_fraction}")
    black = ~a.any(axis=-1)
    return bool(black.mean() >= black_fraction)


def image_cells(rgb, mode: str = "auto", labels=None, crop_size: int = CELL_CROP_SIZE,
                black_fraction: float = 0.4):
    """Find the cells of an image and cut them out; no model is involved.

    Parameters
    ----------
    rgb : (H, W, 3) uint8 array
    mode : {"auto", "cells", "smear"}
        ``"cells"``: the image is one cut-out cell on black and is used whole.
        ``"smear"``: the image is segmented with :func:`~allnet_core.segmentation.label_cells`
        and each white cell is cut out with :func:`~allnet_core.segmentation.extract_cells`.
        ``"auto"``: ``"cells"`` if :func:`is_single_cell_image`, else ``"smear"``.
    labels : (H, W) int array, optional
        Instance labels to use instead of segmenting (smear mode).
    crop_size : int
        Side of the crops cut out of smear fields.
    black_fraction : float
        Passed to :func:`is_single_cell_image` in ``"auto"`` mode.

    Returns
    -------
    labels : (H, W) int32 array
    crops : list of (h, w, 3) uint8 arrays
        One per cell, in label order (the whole image in ``"cells"`` mode).
    table : pandas.DataFrame
        One row per cell: ``label``, bounding box, ``area``, centroid, ``touches_border``,
        ``scale`` (see :func:`~allnet_core.segmentation.extract_cells`).
    mode : str
        The mode used (``"cells"`` or ``"smear"``).
    """
    a = check_rgb(rgb, "image", convert=True)
    check_choice(mode, MODES, "mode")
    if mode == "auto":
        mode = "cells" if labels is None and is_single_cell_image(a, black_fraction) else "smear"
    if mode == "cells" and labels is None:
        from allnet_core.segmentation.cells import whole_cell

        lab, crops, table = whole_cell(a)
        return lab, list(crops), table, mode
    from allnet_core.segmentation import extract_cells, label_cells

    if labels is None:
        lab = label_cells(a)
    else:
        lab = np.asarray(labels)
        if lab.shape != a.shape[:2]:
            raise ConfigError(f"labels shape {lab.shape} does not match the image {a.shape[:2]}")
        lab = lab.astype(np.int32, copy=False)
    crops, table = extract_cells(a, lab, size=crop_size)
    return lab, list(crops), table.reset_index(drop=True), "smear"
