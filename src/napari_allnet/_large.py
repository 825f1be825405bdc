"""Large image layers (dask- or zarr-backed, or multiscale): segmented and classified in
tiles, never loaded whole.

The widgets hand such a layer (see :func:`napari_allnet._common.lazy_layer_rgb`) to the
functions here instead of their in-memory ones; both take the same arguments and return
the same dict. Labels come back lazily: a dask array over a chunked zarr folder in this
session's scratch folder (removed when napari exits), as a multiscale pyramid when it is
larger than :data:`PYRAMID_SIDE` on a side, so napari reads only what it shows.
"""

from __future__ import annotations

import atexit
import shutil
import tempfile
from pathlib import Path
from typing import Any

__all__ = ["PYRAMID_SIDE", "classify_large_layer", "lazy_labels", "scratch_dir",
           "segment_large_layer"]

#: Labels larger than this on a side come back as a multiscale pyramid.
PYRAMID_SIDE = 4096
_scratch: list[Path] = []


def scratch_dir() -> Path:
    """A new folder for one result, inside this session's scratch folder."""
    if not _scratch:
        _scratch.append(Path(tempfile.mkdtemp(prefix="allnet-napari-")))
        atexit.register(shutil.rmtree, _scratch[0], True)
    return Path(tempfile.mkdtemp(dir=_scratch[0]))


def lazy_labels(path: str | Path):
    """The labels in a zarr folder as a dask array, or a pyramid of them (a list, the
    full resolution first, every level half the previous: nearest neighbour)."""
    import dask.array as da

    full = da.from_zarr(str(path))
    levels = [full]
    while max(levels[-1].shape) > PYRAMID_SIDE:
        levels.append(levels[-1][::2, ::2])
    return levels if len(levels) > 1 else full


def segment_large_layer(image, method: str = "auto", min_area: float | None = None,
                        low: float = 180, high: float = 255, space: str = "hsi",
                        segmented: bool = False) -> dict[str, Any]:
    """:func:`napari_allnet._segment_widget.segment` for a lazy image: in tiles.

    The segmented image (with ``segmented``) is lazy too: the image times the labelled
    cells. There is no paper-rule summary (``paper`` is None).
    """
    from allnet_core.segmentation import label_cells_tiled
    from napari_allnet._segment_widget import _TABLE_COLUMNS

    out = scratch_dir() / "labels.zarr"
    tiled = label_cells_tiled(image, method=method, out=out, min_area=min_area or None,
                              low=low, high=high, space=space)
    labels = lazy_labels(out)
    masked = None
    if segmented and len(tiled.table):
        full = labels[0] if isinstance(labels, list) else labels
        masked = image * (full > 0)[..., None].astype(image.dtype)
    return {"labels": labels, "table": tiled.table[list(_TABLE_COLUMNS)],
            "segmented": masked, "paper": None}


def classify_large_layer(client, image, labels, model: str, tta: bool = False,
                         gradcam: bool = False, cancel=None):
    """:func:`napari_allnet._classify_widget.run_classification` for a lazy image.

    The image is streamed, chunk by chunk, into a zarr folder that the worker process
    segments in tiles and classifies; no Grad-CAM. ``labels`` must be None (a large image
    is always segmented by the worker).
    """
    import pandas as pd

    folder = scratch_dir()
    image.to_zarr(str(folder / "image.zarr"))
    request = {"image_path": str(folder / "image.zarr"), "model": str(model), "tta": bool(tta),
               "gradcam": False, "out_dir": str(folder / "out"), "labels_path": None}
    res = yield from client.events("classify", cancel=cancel, **request)
    shutil.rmtree(folder / "image.zarr", ignore_errors=True)
    if "cancelled" in res:
        return res
    return {"labels": lazy_labels(res["labels_path"]), "table": pd.read_csv(res["table_path"]),
            "heatmap": None, "assessment": res.get("assessment")}
