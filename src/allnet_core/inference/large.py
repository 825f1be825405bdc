"""Classify the cells of an image too large for memory: tiles in, a labels zarr out.

The image is segmented in tiles (:func:`allnet_core.segmentation.tiled.label_cells_tiled`,
labels written as a chunked zarr array), then its cells are cut out tile by tile
(:func:`~allnet_core.segmentation.tiled.tiled_cell_crops`) and classified like any other
cells, a batch at a time: memory holds one padded tile per thread and one batch of crops,
never the whole image. Grad-CAM overlays are not made for such images.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from allnet_core.inference.calls import DEFAULT_UNCERTAIN
from allnet_core.io_lazy import LARGE_PIXELS, is_large_image
from allnet_core.model.predict import DEFAULT_BATCH

__all__ = ["LARGE_PIXELS", "LargeImageResult", "classify_large", "is_large_image"]


@dataclass
class LargeImageResult:
    """What :func:`classify_large` returns.

    Attributes
    ----------
    labels_path : pathlib.Path or None
        The labels (a ``.zarr`` folder), or None when they went to a temporary folder.
    table : pandas.DataFrame
        One row per cell, the columns of :meth:`Classifier.classify_image`'s table.
    cut : int
        Cells larger than the tiles' overlap (see :mod:`allnet_core.segmentation.tiled`).
    """

    labels_path: Path | None
    table: Any = field(repr=False)
    cut: int = 0


def classify_large(classifier, image, *, labels_dir: str | os.PathLike | None = None,
                   name: str | None = None, tta: bool = False,
                   batch_size: int = DEFAULT_BATCH, threshold: float = 0.5,
                   uncertain=DEFAULT_UNCERTAIN, tile: int | None = None, progress=None,
                   cancel=None) -> LargeImageResult:
    """Segment a large image in tiles and classify every cell.

    Parameters
    ----------
    classifier : Classifier
    image : path-like or array-like
        A TIFF, zarr or other image, or a lazy array (see
        :func:`allnet_core.io_lazy.open_rgb_lazy`).
    labels_dir : path-like, optional
        Write the labels to ``labels_dir/<name>.zarr``; default a temporary folder,
        removed afterwards.
    name : str, optional
        Default: the image file's stem (``"image"`` for an array).
    tta, batch_size, threshold, uncertain
        As in :meth:`Classifier.classify_image`.
    tile : int, optional
        Core side of the tiles (default :data:`allnet_core.segmentation.tiled.TILE`).
    progress : callable, optional
        Receives the tiles' ``{"kind": "tile", ...}`` events, then ``{"kind": "batch",
        "done", "total"}`` per batch of cells.
    cancel : CancelToken, optional

    Returns
    -------
    LargeImageResult
    """
    import pandas as pd

    from allnet_core.progress import check_cancel, emit
    from allnet_core.segmentation.tiled import TILE, label_cells_tiled, tiled_cell_crops

    if name is None:
        name = Path(image).stem if isinstance(image, str | os.PathLike) else "image"
    tmp = Path(tempfile.mkdtemp(prefix="allnet-labels-")) if labels_dir is None else None
    folder = Path(labels_dir) if labels_dir is not None else tmp
    try:
        seg = label_cells_tiled(image, tile=tile or TILE, out=folder / f"{name}.zarr",
                                progress=progress)
        tables, done = [], 0
        for crops, rows in tiled_cell_crops(image, seg.labels, seg.table):
            check_cancel(cancel, "classification")
            scores = classifier.predict_cells(crops, batch_size=batch_size, tta=tta,
                                              cancel=cancel)
            tables.append(classifier.cell_table(rows, scores, threshold=threshold,
                                                uncertain=uncertain))
            done += len(rows)
            emit(progress, "batch", done=done, total=len(seg.table))
        table = (pd.concat(tables, ignore_index=True) if tables else
                 classifier.cell_table(seg.table, _no_probs(classifier), threshold=threshold,
                                       uncertain=uncertain))
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
    return LargeImageResult(labels_path=None if tmp else folder / f"{name}.zarr",
                            table=table, cut=seg.cut)


def _no_probs(classifier):
    import numpy as np

    return np.zeros((0, len(classifier.class_names)), np.float32)
