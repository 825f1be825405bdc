"""Writer: save a Labels layer's per-cell features table as CSV."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

__all__ = ["cell_table", "write_cells_csv"]


def cell_table(features: Any) -> pd.DataFrame:
    """The per-cell table of a Labels layer's features, without napari's ``index`` column
    when a ``label`` column already names each row."""
    table = pd.DataFrame(features).copy()
    if "index" in table.columns:
        if "label" in table.columns:
            table = table.drop(columns="index")
        else:
            table = table.rename(columns={"index": "label"})
    return table.reset_index(drop=True)


def write_cells_csv(path: str, data: Any, meta: dict) -> list[str]:
    """npe2 single-layer writer: the layer's ``features`` (one row per cell) as CSV.

    The file is written atomically. A Labels layer without features gets an error
    message instead of an empty file.
    """
    from allnet_core.io import write_csv

    features = meta.get("features")
    if features is None or len(features) == 0 or pd.DataFrame(features).shape[1] == 0:
        name = meta.get("name", "the layer")
        raise ValueError(
            f"{name!r} has no per-cell table to save: run 'Classify cells' (or 'Segment "
            "cells') first, or save the label image instead of a .csv"
        )
    path = Path(path)
    if path.suffix.lower() != ".csv":
        path = path.with_suffix(".csv")
    write_csv(path, cell_table(features))
    return [str(path)]
