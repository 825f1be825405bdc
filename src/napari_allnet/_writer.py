"""Writer: save a Labels layer's per-cell features table as CSV.

npe2 picks a writer by layer type and file extension only, so napari offers this writer
for every Labels layer saved as ``.csv``, with or without a table. A layer without one is
not written: the writer returns no path and warns with the reason. napari turns that
warning into the message of its "save failed" notification (File > Save Selected Layers)
or shows it as a warning (``layer.save``); an exception would be swallowed by napari's
writer selection and end as "not a valid writer".
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import pandas as pd

__all__ = ["IMAGE_KEY", "NoCellTableWarning", "cell_table", "write_cells_csv"]

#: The layer ``metadata`` key naming the classified image (the CSV's ``image`` column).
IMAGE_KEY = "allnet_image"


class NoCellTableWarning(UserWarning):
    """A Labels layer without a per-cell table was to be saved as CSV."""


def cell_table(features: Any, image: str | None = None) -> pd.DataFrame:
    """The per-cell table of a Labels layer's features, without napari's ``index`` column
    when a ``label`` column already names each row; with ``image`` as the first column
    when given (and not already there)."""
    table = pd.DataFrame(features).copy()
    if "index" in table.columns:
        if "label" in table.columns:
            table = table.drop(columns="index")
        else:
            table = table.rename(columns={"index": "label"})
    if image and "image" not in table.columns:
        table.insert(0, "image", image)
    return table.reset_index(drop=True)


def write_cells_csv(path: str, data: Any, meta: dict) -> list[str]:
    """npe2 single-layer writer: the layer's ``features`` (one row per cell) as CSV.

    The file is written atomically. When the layer's ``metadata`` names the image it was
    computed from (``metadata["allnet_image"]``), the table gets an ``image`` column.
    A Labels layer without features is not written: returns ``[]`` and warns
    (:class:`NoCellTableWarning`) with what to do.
    """
    from allnet_core.io import write_csv

    features = meta.get("features")
    if features is None or len(features) == 0 or pd.DataFrame(features).shape[1] == 0:
        name = meta.get("name", "the layer")
        warnings.warn(
            f"{name!r} has no per-cell table to save as CSV: run 'Classify cells' (or "
            "'Segment cells') and save its layer, or save this label image as .tif",
            NoCellTableWarning, stacklevel=2)
        return []
    path = Path(path)
    if path.suffix.lower() != ".csv":
        path = path.with_suffix(".csv")
    image = (meta.get("metadata") or {}).get(IMAGE_KEY)
    write_csv(path, cell_table(features, image))
    return [str(path)]
