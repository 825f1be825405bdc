"""The one home of the per-cell table and of the crop geometry.

A labelled cell becomes a row of the cell table (:data:`CELL_COLUMNS`, :func:`cell_table`)
and a square, C-NMC-like crop (:func:`extract_cells`): its bounding box centred, shrunk
to fit when larger than the crop (:func:`crop_geometry`). :meth:`CropGeometry.to_field`
inverts that geometry, so that a map computed on a crop (Grad-CAM) can be put back over the
cell in the field. :func:`whole_cell` treats an image that is one cut-out cell as that
cell.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi

from allnet_core.errors import ConfigError
from allnet_core.validation import check_rgb

__all__ = [
    "CELL_COLUMNS",
    "CropGeometry",
    "cell_table",
    "crop_geometry",
    "empty_cell_table",
    "extract_cells",
    "whole_cell",
]

#: Columns of the cell table, in order. Bounding boxes have the max exclusive; ``scale``
#: is 1.0, or the factor < 1 by which the cell was shrunk to fit its crop.
CELL_COLUMNS = (
    "label",
    "bbox_min_row",
    "bbox_min_col",
    "bbox_max_row",
    "bbox_max_col",
    "area",
    "centroid_row",
    "centroid_col",
    "touches_border",
    "scale",
)
_DTYPES = dict(
    label=np.int32, bbox_min_row=np.int64, bbox_min_col=np.int64, bbox_max_row=np.int64,
    bbox_max_col=np.int64, area=np.int64, centroid_row=np.float64, centroid_col=np.float64,
    touches_border=bool, scale=np.float64,
)


def empty_cell_table():
    """A cell table without rows (the columns and dtypes of :func:`cell_table`)."""
    import pandas as pd

    return pd.DataFrame({c: np.zeros(0, _DTYPES[c]) for c in CELL_COLUMNS})


def _table(rows: list[dict]):
    import pandas as pd

    if not rows:
        return empty_cell_table()
    return pd.DataFrame(rows, columns=list(CELL_COLUMNS)).astype(_DTYPES)


# --------------------------------------------------------------------------- geometry


@dataclass(frozen=True)
class CropGeometry:
    """Where a cell's bounding box lies in its square crop, and back in the field.

    Attributes
    ----------
    size : int
        Side of the square crop.
    row, col : int
        Top-left corner of the bounding box in the field (0 when only a shape was given).
    cell_height, cell_width : int
        Shape of the bounding box in the field.
    scale : float
        1.0, or the factor < 1 by which the cell is shrunk to fit the crop.
    height, width : int
        Shape of the (shrunk) cell in the crop.
    top, left : int
        Offset of the cell in the crop (centred).
    """

    size: int
    row: int
    col: int
    cell_height: int
    cell_width: int
    scale: float
    height: int
    width: int
    top: int
    left: int

    @property
    def crop_slices(self) -> tuple[slice, slice]:
        """Where the cell lies in the crop."""
        return slice(self.top, self.top + self.height), slice(self.left, self.left + self.width)

    @property
    def field_slices(self) -> tuple[slice, slice]:
        """Where the cell's bounding box lies in the field."""
        return (slice(self.row, self.row + self.cell_height),
                slice(self.col, self.col + self.cell_width))

    def to_field(self, crop_map) -> np.ndarray:
        """The part of a map over the crop that covers the cell, at the bounding box's size.

        Parameters
        ----------
        crop_map : (s, s) array
            A map over the whole crop (e.g. Grad-CAM); resized to ``size x size`` first
            when ``s`` differs (bilinear, edge mode).

        Returns
        -------
        (cell_height, cell_width) float32 array
            To be written at :attr:`field_slices`.
        """
        from skimage.transform import resize

        m = np.asarray(crop_map, np.float32)
        if m.ndim != 2:
            raise ConfigError(f"a crop map must be 2-D, got shape {m.shape}")
        if m.shape != (self.size, self.size):
            m = resize(m, (self.size, self.size), order=1, mode="edge", anti_aliasing=False)
        part = m[self.crop_slices]
        shape = (self.cell_height, self.cell_width)
        if part.shape != shape:
            part = resize(part, shape, order=1, mode="edge", anti_aliasing=False)
        return part.astype(np.float32, copy=False)


def _bbox(cell) -> tuple[int, int, int, int]:
    """``(row, col, height, width)`` of a ``(height, width)`` pair or a cell-table row."""
    if isinstance(cell, Mapping) or hasattr(cell, "bbox_min_row"):
        get = cell.__getitem__ if isinstance(cell, Mapping) else lambda k: getattr(cell, k)
        r0, c0 = int(get("bbox_min_row")), int(get("bbox_min_col"))
        return r0, c0, int(get("bbox_max_row")) - r0, int(get("bbox_max_col")) - c0
    h, w = (int(v) for v in cell)
    return 0, 0, h, w


def _check_size(size) -> int:
    size = int(size)
    if size < 1:
        raise ConfigError(f"size must be a positive integer, got {size}")
    return size


def crop_geometry(cell, size: int) -> CropGeometry:
    """The geometry of a cell's crop: centred, shrunk to fit when larger, never cut.

    Parameters
    ----------
    cell : (int, int) or cell-table row
        The bounding box's ``(height, width)``, or a row of a cell table (a mapping, a
        pandas row or an ``itertuples`` tuple with the ``bbox_*`` columns), which also
        places the geometry in the field.
    size : int
        Side of the square crop.

    Returns
    -------
    CropGeometry

    Examples
    --------
    >>> g = crop_geometry((260, 60), 100)
    >>> round(g.scale, 3), g.height, g.width, g.top, g.left
    (0.385, 100, 23, 0, 38)
    """
    row, col, h, w = _bbox(cell)
    size = _check_size(size)
    scale, nh, nw = 1.0, h, w
    if h > size or w > size:
        scale = size / max(h, w)
        nh = max(1, min(size, int(math.floor(h * scale + 1e-6))))
        nw = max(1, min(size, int(math.floor(w * scale + 1e-6))))
    return CropGeometry(size, row, col, h, w, float(scale), nh, nw, (size - nh) // 2,
                        (size - nw) // 2)


def _fit(patch: np.ndarray, mask: np.ndarray, g: CropGeometry) -> np.ndarray:
    """A masked cell patch at its size in the crop (shrunk when ``g.scale < 1``)."""
    if g.scale == 1.0:
        return patch
    from skimage.transform import resize

    shape = (g.height, g.width)
    shrunk = resize(patch, shape, order=1, anti_aliasing=True, preserve_range=True)
    shrunk_mask = resize(mask.astype(np.float32), shape, order=1, anti_aliasing=True) >= 0.5
    return np.rint(shrunk).astype(np.uint8) * shrunk_mask[..., None]


# --------------------------------------------------------------------------- table


def _check_labels(labels, shape=None) -> np.ndarray:
    lab = np.asarray(labels)
    if shape is not None and lab.shape != shape:
        raise ConfigError(f"labels shape {lab.shape} does not match the image {shape}")
    if lab.ndim != 2:
        raise ConfigError(f"labels must be a 2-D array, got shape {lab.shape}")
    if not (np.issubdtype(lab.dtype, np.integer) or lab.dtype == np.bool_):
        raise ConfigError(f"labels must be an integer array, got dtype {lab.dtype}")
    if lab.dtype == np.bool_:
        lab = lab.astype(np.int32)
    if lab.size and lab.min() < 0:
        raise ConfigError("labels must be >= 0 (0 is background)")
    return lab


def _cells(lab: np.ndarray):
    """``(label, bounding-box slices, mask in the box)`` of every label, in label order."""
    for i, sl in enumerate(ndi.find_objects(lab)):
        if sl is not None:
            yield i + 1, sl, lab[sl] == i + 1


def _row(lid: int, sl, mask: np.ndarray, shape, scale: float) -> dict:
    h, w = shape
    rr, cc = np.nonzero(mask)
    return dict(
        label=int(lid),
        bbox_min_row=sl[0].start,
        bbox_min_col=sl[1].start,
        bbox_max_row=sl[0].stop,
        bbox_max_col=sl[1].stop,
        area=int(rr.size),
        centroid_row=float(rr.mean()) + sl[0].start,
        centroid_col=float(cc.mean()) + sl[1].start,
        touches_border=bool(
            sl[0].start == 0 or sl[1].start == 0 or sl[0].stop == h or sl[1].stop == w
        ),
        scale=float(scale),
    )


def cell_table(labels, size: int | None = None):
    """One row per labelled cell, without cutting crops.

    Parameters
    ----------
    labels : (H, W) integer array
        Instance labels, 0 = background (e.g. from
        :func:`~allnet_core.segmentation.label_cells`).
    size : int, optional
        Side of the crops the cells are (or will be) cut into, for the ``scale`` column;
        None: ``scale`` is 1.0.

    Returns
    -------
    pandas.DataFrame
        Columns :data:`CELL_COLUMNS`: ``label`` (int32), ``bbox_min_row``,
        ``bbox_min_col``, ``bbox_max_row``, ``bbox_max_col`` (max exclusive), ``area``,
        ``centroid_row``, ``centroid_col``, ``touches_border`` and ``scale``; rows in
        increasing label order. The same rows as :func:`extract_cells` with that ``size``.
    """
    lab = _check_labels(labels)
    size = None if size is None else _check_size(size)
    rows = [
        _row(lid, sl, m, lab.shape, 1.0 if size is None else crop_geometry(m.shape, size).scale)
        for lid, sl, m in _cells(lab)
    ]
    return _table(rows)


def extract_cells(rgb, labels, size: int = 450):
    """Cut every labelled cell out as a C-NMC-like crop.

    Each crop is ``size x size``: the cell centred (on its bounding box), every pixel
    outside the cell's mask exactly black. A cell larger than the crop is scaled down to
    fit (never cut) and the factor is recorded (see :func:`crop_geometry`).

    Parameters
    ----------
    rgb : (H, W, 3) uint8 array
    labels : (H, W) integer array
        Instance labels, 0 = background (e.g. from
        :func:`~allnet_core.segmentation.label_cells`).
    size : int
        Side of the square crops in pixels.

    Returns
    -------
    crops : (N, size, size, 3) uint8 array
        One crop per label, in increasing label order.
    table : pandas.DataFrame
        One row per label, see :func:`cell_table`.
    """
    a = check_rgb(rgb, "rgb", needs="cutting out cells")
    lab = _check_labels(labels, a.shape[:2])
    size = _check_size(size)
    cells = list(_cells(lab))
    crops = np.zeros((len(cells), size, size, 3), np.uint8)
    rows = []
    for crop, (lid, sl, m) in zip(crops, cells, strict=True):
        g = crop_geometry(m.shape, size)
        rows.append(_row(lid, sl, m, lab.shape, g.scale))
        crop[g.crop_slices] = _fit(a[sl] * m[..., None], m, g)
    return crops, _table(rows)


def whole_cell(rgb):
    """An image that is one cut-out cell (on black) as that one cell.

    Every non-black pixel belongs to the cell; the image itself is its crop.

    Parameters
    ----------
    rgb : (H, W, 3) uint8 array

    Returns
    -------
    labels : (H, W) int32 array
        1 on every non-black pixel.
    crops : (1, H, W, 3) uint8 array
        A copy of the image; ``(0, H, W, 3)`` for an all-black image, which holds no cell.
    table : pandas.DataFrame
        The cell's row (``scale`` 1.0), see :func:`cell_table`; no rows when all black.
    """
    a = check_rgb(rgb, "rgb", needs="cutting out cells")
    labels = a.any(axis=-1).astype(np.int32)
    if not labels.any():
        return labels, np.zeros((0, *a.shape), np.uint8), empty_cell_table()
    return labels, a[None].copy(), cell_table(labels)
