"""Segmentation of images too large for memory: tiles with overlap, one owner per cell.

:func:`label_cells_tiled` cuts the image into a grid of ``tile x tile`` *cores*. Each core
is segmented with :func:`~allnet_core.segmentation.label_cells` together with a margin of
``overlap`` pixels on every side (its *padded tile*, read lazily: only that region is in
memory), as Dask tasks.

The seam rule
    A cell belongs to the one tile whose core holds its centroid; every other tile that
    sees it drops it. The cores partition the image, so every cell has exactly one owner
    and is never split into halves, and none is counted twice. Its pixels are written
    where they lie, also beyond the core, in the order of the cell ids (a pixel that two
    tiles' cells both claim keeps the lower id).

The overlap rule
    A cell whose centroid lies in a core reaches at most its own diameter beyond it, so
    the owner sees all of it when ``overlap`` is at least the largest cell's diameter;
    then the owner segments it as the whole image would. :func:`tile_overlap` takes
    ``OVERLAP_RBC_RADII`` (8) red-cell radii, measured on the image like the auto
    method's scale: four red-cell diameters, about 30 um, twice the diameter of the
    largest white cells, so the neighbours that shape a cell's cytoplasm are in view too.
    When no red cells can be measured it is 256 pixels. A cell that still reaches the
    edge of its padded tile (bigger than the overlap) is counted in
    :attr:`TiledLabels.cut`.

Every tile uses one reduction factor (``downscale``), chosen once from a sample of the
image, so that detection runs at the same scale everywhere. Labels are written as a
chunked zarr array (one chunk per core, written in parallel) and the per-cell table has
the columns of :func:`~allnet_core.segmentation.cell_table`. The measured agreement with
untiled segmentation is in ``tests/core/test_tiled.py`` and ``benchmarks/tiled_segmentation.py``.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from allnet_core.errors import ConfigError

__all__ = ["OVERLAP_RBC_RADII", "TILE", "TiledLabels", "label_cells_tiled", "tile_overlap",
           "tiled_cell_crops"]

#: Default side of a tile's core (pixels).
TILE = 4096
#: The overlap in red-cell radii (see the module's overlap rule).
OVERLAP_RBC_RADII = 8.0
_FALLBACK_OVERLAP = 256
_PAPER = ("low", "high", "space")
_SAMPLE = 2048


@dataclass
class TiledLabels:
    """What :func:`label_cells_tiled` returns.

    Attributes
    ----------
    labels : zarr.Array
        ``(H, W)`` int32 instance labels, chunked one chunk per core; ``1..N``.
    table : pandas.DataFrame
        One row per cell, the columns of :func:`~allnet_core.segmentation.cell_table`.
    tile, overlap : int
        The core side and the margin used.
    cut : int
        Cells that reached the edge of their padded tile (larger than ``overlap``).
    """

    labels: Any = field(repr=False)
    table: Any = field(repr=False)
    tile: int = TILE
    overlap: int = 0
    cut: int = 0


class _Reader:
    """Reads regions of a lazy image; a plain object, so Dask does not compute it whole."""

    def __init__(self, image):
        self.image = image

    def read(self, r0: int, r1: int, c0: int, c1: int) -> np.ndarray:
        part = self.image[r0:r1, c0:c1]
        if hasattr(part, "compute"):
            part = part.compute(scheduler="sync")
        return np.ascontiguousarray(part)


def _sample(image) -> np.ndarray:
    """The central ``_SAMPLE x _SAMPLE`` region (or the whole image when smaller)."""
    h, w = image.shape[:2]
    r0, c0 = max(0, (h - _SAMPLE) // 2), max(0, (w - _SAMPLE) // 2)
    return _Reader(image).read(r0, min(h, r0 + _SAMPLE), c0, min(w, c0 + _SAMPLE))


def tile_overlap(image, black_level: int = 10) -> int:
    """The overlap of the tiles: ``OVERLAP_RBC_RADII`` red-cell radii (see the module).

    Parameters
    ----------
    image : (H, W, 3) uint8 array-like
        Measured on its central 2048 x 2048 region.
    black_level : int
        As in :class:`~allnet_core.segmentation.AutoParams`.

    Returns
    -------
    int
        Pixels; 256 when no red cells can be measured.
    """
    return _overlap_of(_sample(image), black_level)


def _overlap_of(sample: np.ndarray, black_level: int) -> int:
    """:func:`tile_overlap` from the sample region."""
    from allnet_core.segmentation._features import bright_background
    from allnet_core.segmentation._scale import DOWNSCALE_PERCENTILE, red_cell_radius

    step = 4
    sample = sample[::step, ::step]
    valid, t_g, has_background = bright_background(sample, black_level)
    radius = None
    if has_background:
        radius = red_cell_radius(valid & (sample[..., 1] <= t_g), DOWNSCALE_PERCENTILE, step)
    if radius is None:
        return _FALLBACK_OVERLAP
    return int(math.ceil(OVERLAP_RBC_RADII * radius))


def _segment_tile(reader: _Reader, box: tuple, overlap: int, shape: tuple, method: str,
                  params: dict):
    """Segment one padded tile; keep the cells whose centroid lies in its core.

    Returns ``(table, masks, cut)``: the kept cells' rows in image coordinates, their
    masks (bounding-box crops, bit-packed) and how many reached the padded edge.
    """
    from allnet_core.segmentation.cells import cell_table
    from allnet_core.segmentation.labels import label_cells

    h, w = shape
    r0, r1, c0, c1 = box
    p0, p1 = max(0, r0 - overlap), min(h, r1 + overlap)
    q0, q1 = max(0, c0 - overlap), min(w, c1 + overlap)
    lab = label_cells(reader.read(p0, p1, q0, q1), method=method, **params)
    table = cell_table(lab)
    for col, off in (("bbox_min_row", p0), ("bbox_max_row", p0), ("centroid_row", p0),
                     ("bbox_min_col", q0), ("bbox_max_col", q0), ("centroid_col", q0)):
        table[col] += off
    own = ((table["centroid_row"] >= r0) & (table["centroid_row"] < r1)
           & (table["centroid_col"] >= c0) & (table["centroid_col"] < c1))
    table = table[own].reset_index(drop=True)
    edge = (((table["bbox_min_row"] == p0) & (p0 > 0))
            | ((table["bbox_max_row"] == p1) & (p1 < h))
            | ((table["bbox_min_col"] == q0) & (q0 > 0))
            | ((table["bbox_max_col"] == q1) & (q1 < w)))
    masks = []
    for row in table.itertuples(index=False):
        m = lab[row.bbox_min_row - p0:row.bbox_max_row - p0,
                row.bbox_min_col - q0:row.bbox_max_col - q0] == row.label
        masks.append(np.packbits(m))
    table["touches_border"] = ((table["bbox_min_row"] == 0) | (table["bbox_min_col"] == 0)
                               | (table["bbox_max_row"] == h) | (table["bbox_max_col"] == w))
    return table, masks, int(edge.sum())


def _paint(z, box: tuple, boxes: np.ndarray, masks: list, ids: np.ndarray) -> None:
    """Write the cells that reach into one core into the labels (lower id first)."""
    r0, r1, c0, c1 = box
    out = np.zeros((r1 - r0, c1 - c0), np.int32)
    hit = np.nonzero((boxes[:, 0] < r1) & (boxes[:, 2] > r0)
                     & (boxes[:, 1] < c1) & (boxes[:, 3] > c0))[0]
    for i in hit:
        b0, b1, b2, b3 = (int(v) for v in boxes[i])
        m = np.unpackbits(masks[i], count=(b2 - b0) * (b3 - b1)).reshape(b2 - b0, b3 - b1)
        a0, a1, a2, a3 = max(b0, r0), max(b1, c0), min(b2, r1), min(b3, c1)
        part = m[a0 - b0:a2 - b0, a1 - b1:a3 - b1].astype(bool)
        view = out[a0 - r0:a2 - r0, a1 - c0:a3 - c0]
        view[part & (view == 0)] = ids[i]
    z[r0:r1, c0:c1] = out


def _grid(h: int, w: int, tile: int) -> list[tuple[int, int, int, int]]:
    return [(r, min(h, r + tile), c, min(w, c + tile))
            for r in range(0, h, tile) for c in range(0, w, tile)]


def _labels_array(path, shape: tuple, tile: int):
    """A new zarr array for the labels: in the folder ``path``, or in memory."""
    import zarr

    kwargs = dict(shape=shape, chunks=(tile, tile), dtype=np.int32, fill_value=0)
    if path is None:
        return zarr.create_array(store=zarr.storage.MemoryStore(), **kwargs)
    return zarr.create_array(store=str(path), overwrite=True, **kwargs)


def _publish(tmp, out):
    """Move the finished labels folder ``tmp`` onto ``out`` (replacing it); reopen it."""
    import shutil

    import zarr

    if os.path.isdir(out):
        shutil.rmtree(out)
    os.replace(tmp, out)
    return zarr.open_array(str(out), mode="r")


def label_cells_tiled(image, *, tile: int = TILE, overlap: int | None = None, out=None,
                      method: str = "auto", num_workers: int | None = None,
                      progress=None, **params) -> TiledLabels:
    """Instance labels of the white cells of a large image, segmented in tiles.

    Parameters
    ----------
    image : path-like or array-like
        Anything :func:`allnet_core.io_lazy.open_rgb_lazy` opens (a TIFF or zarr file is
        read region by region).
    tile : int
        Side of a tile's core.
    overlap : int, optional
        Margin around every core; default :func:`tile_overlap` (see the module).
    out : path-like, optional
        A ``.zarr`` folder to write the labels to: written under a temporary name beside
        it, then renamed (replacing an older one). Default: in memory.
    method : {"auto", "otsu", "paper"}
    num_workers : int, optional
        Tiles segmented at once (threads); default the CPU count. Peak memory grows with
        it, by about 20 bytes per pixel of a padded tile per thread (some 0.4 GB for the
        default tile); see ``benchmarks/tiled_segmentation.py``.
    progress : callable, optional
        Receives ``{"kind": "tile", "done", "total"}`` per segmented tile.
    **params
        Parameters of :func:`~allnet_core.segmentation.label_cells`: those of the auto
        method (:class:`AutoParams`; ``downscale`` defaults to the one chosen on a sample
        of the image) and the paper method's ``low``, ``high``, ``space``.

    Returns
    -------
    TiledLabels
    """
    from allnet_core.io_lazy import open_rgb_lazy
    from allnet_core.segmentation._params import AutoParams
    from allnet_core.segmentation._scale import choose_downscale
    from allnet_core.segmentation.labels import METHODS
    from allnet_core.validation import check_choice

    check_choice(method, METHODS, "method")
    if int(tile) < 64:
        raise ConfigError(f"tile must be at least 64 pixels, got {tile}")
    lazy = open_rgb_lazy(image)
    shape = tuple(lazy.shape[:2])
    p = AutoParams.from_overrides({k: v for k, v in params.items() if k not in _PAPER})
    sample = _sample(lazy) if overlap is None or p.downscale is None else None
    if overlap is None:
        overlap = _overlap_of(sample, p.black_level)
    if overlap < 0:
        raise ConfigError(f"overlap must be >= 0, got {overlap}")
    if method == "auto" and p.downscale is None:
        params = {**params, "downscale": choose_downscale(sample, p)}
    boxes = _grid(*shape, int(tile))
    parts = _run_tasks([(_segment_tile, _Reader(lazy), b, int(overlap), shape, method, params)
                        for b in boxes], num_workers, progress, "tile")
    table, masks, cut = _join(parts)
    tmp = None if out is None else _temporary_beside(out)
    z = _labels_array(tmp, shape, int(tile))
    bb = table[["bbox_min_row", "bbox_min_col", "bbox_max_row", "bbox_max_col"]].to_numpy()
    ids = table["label"].to_numpy()
    try:
        _run_tasks([(_paint, z, b, bb, masks, ids) for b in boxes], num_workers, None, "paint")
    except BaseException:
        if tmp is not None:
            import shutil

            shutil.rmtree(tmp, ignore_errors=True)
        raise
    if out is not None:
        z = _publish(tmp, out)
    return TiledLabels(labels=z, table=table, tile=int(tile), overlap=int(overlap), cut=cut)


def _temporary_beside(out) -> str:
    """A new temporary folder name beside ``out`` (written there, then renamed)."""
    import tempfile
    from pathlib import Path

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    return tempfile.mkdtemp(dir=out.parent, prefix=f".{out.stem}.", suffix=".zarr")


def _join(parts: list):
    """The tiles' tables as one, with ids ``1..N`` in tile order, and all the masks."""
    import pandas as pd

    from allnet_core.segmentation.cells import CELL_COLUMNS, empty_cell_table

    tables = [t for t, _, _ in parts if len(t)]
    table = pd.concat(tables, ignore_index=True) if tables else empty_cell_table()
    table["label"] = np.arange(1, len(table) + 1, dtype=np.int32)
    masks = [m for _, ms, _ in parts for m in ms]
    return table[list(CELL_COLUMNS)], masks, sum(c for _, _, c in parts)


def _run_tasks(tasks: list[tuple], num_workers: int | None, progress, kind: str) -> list:
    """Run ``(func, *args)`` tasks with Dask's threaded scheduler, in order of the list."""
    import dask
    from dask.callbacks import Callback

    from allnet_core.progress import emit

    done = [0]

    class _Progress(Callback):
        def _posttask(self, key, result, dsk, state, worker_id):
            done[0] += 1
            emit(progress, kind, done=done[0], total=len(tasks))

    delayed = [dask.delayed(func, pure=False)(*args) for func, *args in tasks]
    with _Progress():
        return list(dask.compute(*delayed, scheduler="threads",
                                 num_workers=num_workers or os.cpu_count() or 1))


def tiled_cell_crops(image, labels, table, size: int = 450):
    """The cells of a large image as C-NMC-like crops, tile by tile.

    Parameters
    ----------
    image : array-like
        The image (see :func:`~allnet_core.io_lazy.open_rgb_lazy`).
    labels : array-like
        Its labels (:attr:`TiledLabels.labels`).
    table : pandas.DataFrame
        :attr:`TiledLabels.table`.
    size : int
        Side of the crops.

    Yields
    ------
    crops : (n, size, size, 3) uint8 array
    rows : pandas.DataFrame
        The cells' rows (``scale`` set as by
        :func:`~allnet_core.segmentation.extract_cells`), in the order of the crops.
    """
    from allnet_core.io_lazy import open_rgb_lazy
    from allnet_core.segmentation.cells import extract_cells

    reader, lab_reader = _Reader(open_rgb_lazy(image)), _Reader(labels)
    chunk = labels.chunks[0] if hasattr(labels, "chunks") else TILE
    chunk = chunk if isinstance(chunk, int) else TILE
    group = ((table["centroid_row"] // chunk).astype(int) * 1_000_000
             + (table["centroid_col"] // chunk).astype(int))
    for _, rows in table.groupby(group, sort=True):
        r0, c0 = int(rows["bbox_min_row"].min()), int(rows["bbox_min_col"].min())
        r1, c1 = int(rows["bbox_max_row"].max()), int(rows["bbox_max_col"].max())
        lab = lab_reader.read(r0, r1, c0, c1)
        lab = np.where(np.isin(lab, rows["label"].to_numpy()), lab, 0).astype(np.int32)
        crops, found = extract_cells(reader.read(r0, r1, c0, c1), lab, size=size)
        rows = rows.set_index("label").loc[found["label"]].reset_index()
        rows["scale"] = found["scale"].to_numpy()
        yield crops, rows
