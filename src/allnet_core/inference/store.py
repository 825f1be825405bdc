"""Where a screening run streams its results: a Parquet dataset that makes runs resumable.

``allnet classify ... --out cells.csv`` keeps its results in ``cells.parquet/`` beside the
CSV while it runs (:class:`ResultStore`)::

    cells.parquet/
        _settings.json            model (sha256) and settings the results were computed with
        part-<key>.parquet        cell rows of one batch of images (one row per cell)
        _images/part-<key>.parquet  one row per image of that batch: source, sha256, subject,
                                  mode, cells, ALL (cells called ALL), error ("" when
                                  classified)
        _labels/<sha256>.zarr     labels of images segmented in tiles (gigapixel images)

Every part is written atomically (temporary name, then rename) as soon as its images are
classified. The cell part is written first and the image part second: an image counts as
done only when its image part exists, and cell parts without one (a run killed between
the two writes) are deleted when the store opens. ``pandas.read_parquet("cells.parquet")``
reads every cell row (pyarrow skips names starting with ``_`` or ``.``).

A rerun with the same ``--out`` and settings skips every input whose content (sha256 of the file's
bytes, whatever its name) has a record without error, and classifies the rest; an image
that failed is tried again. The CSV is assembled from the store at the end, in input
order, with each row's ``source`` the path given in this run.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from allnet_core.datasets.listing import file_sha256
from allnet_core.errors import ConfigError

__all__ = ["IMAGE_COLUMNS", "ResultStore", "file_sha256", "store_path"]

#: Columns of the per-image records of a store.
IMAGE_COLUMNS = ["source", "sha256", "subject", "mode", "cells", "ALL", "error"]
_FORMAT = 2  # 2: cells carry the calls (model card), ALL counts confident in-scope cells


def store_path(table: str | os.PathLike) -> Path:
    """The store of a CSV table: ``cells.csv`` -> ``cells.parquet``."""
    return Path(table).with_suffix(".parquet")


class ResultStore:
    """A Parquet dataset of classified images, written part by part (see the module doc).

    Parameters
    ----------
    path : path-like
        The dataset folder (created on :meth:`open`).
    settings : dict
        What the results depend on (model hash, mode, TTA, threshold ...); results made
        with other settings are never mixed in (see :meth:`open`).
    """

    def __init__(self, path: str | os.PathLike, settings: dict):
        self.path = Path(path)
        self.settings = {"format": _FORMAT, **settings}

    @property
    def labels_dir(self) -> Path:
        """Where labels of images segmented in tiles are kept."""
        return self.path / "_labels"

    def open(self) -> ResultStore:
        """Create the folder, or reopen it to go on with the same settings.

        A store made with other settings (another model, mode, TTA or threshold) is
        emptied first, as a CSV of another run would be overwritten; :attr:`discarded`
        then names the settings that differ. Cell parts of batches that were never
        committed are removed.
        """
        import shutil

        from allnet_core.io import write_json

        settings_file = self.path / "_settings.json"
        self.discarded: list[str] = []
        if self.path.exists() and not self.path.is_dir():
            raise ConfigError(f"{self.path}: exists and is not a folder (the result store)")
        if self.path.is_dir() and any(self.path.iterdir()) and not settings_file.is_file():
            raise ConfigError(f"{self.path}: a folder that is not a result store is in the "
                              "way; move it or give another --out")
        if settings_file.is_file():
            old = json.loads(settings_file.read_text(encoding="utf-8"))
            self.discarded = sorted(k for k in set(old) | set(self.settings)
                                    if old.get(k) != self.settings.get(k))
            if self.discarded:
                shutil.rmtree(self.path)
        if not settings_file.is_file():
            write_json(settings_file, self.settings)
        (self.path / "_images").mkdir(parents=True, exist_ok=True)
        committed = {p.name for p in (self.path / "_images").glob("part-*.parquet")}
        for part in self.path.glob("part-*.parquet"):
            if part.name not in committed:
                part.unlink()
        return self

    def records(self):
        """Every per-image record in the store (:data:`IMAGE_COLUMNS`), in write order."""
        import pandas as pd

        parts = sorted((self.path / "_images").glob("part-*.parquet"),
                       key=lambda p: p.stat().st_mtime_ns)
        if not parts:
            return pd.DataFrame({c: [] for c in IMAGE_COLUMNS})
        return pd.concat([pd.read_parquet(p) for p in parts], ignore_index=True)

    def done(self) -> set[str]:
        """Content hashes of the images classified without error."""
        rec = self.records()
        return set(rec.loc[rec["error"] == "", "sha256"])

    def write(self, cells, images) -> str:
        """Commit one batch: its cell rows (with a ``sha256`` column) and image records.

        The part's name comes from the hashes of its images, so a batch written twice (a
        task rerun after its worker died) replaces itself. Returns the part's key.
        """
        from allnet_core.io import atomic_write

        key = hashlib.sha256(
            "\n".join(sorted(images["sha256"].astype(str))).encode()).hexdigest()[:20]
        name = f"part-{key}.parquet"
        if len(cells):
            with atomic_write(self.path / name) as tmp:
                cells.to_parquet(tmp, index=False)
        with atomic_write(self.path / "_images" / name) as tmp:
            images[IMAGE_COLUMNS].to_parquet(tmp, index=False)
        return key

    def assemble(self, files: list[Path], hashes: list[str]):
        """The tables of this run's inputs, in input order: ``(cells, per_image, problems)``.

        Each input takes the newest error-free record of its content (else its newest
        error, reported in ``problems``); ``source`` and ``subject`` follow the path given
        now.
        """
        import pandas as pd

        from allnet_core.inference.batch import subject_of

        rec = self.records()
        ok = rec[rec["error"] == ""].drop_duplicates("sha256", keep="last").set_index("sha256")
        failed = rec[rec["error"] != ""].drop_duplicates("sha256", keep="last")
        failed = failed.set_index("sha256")["error"]
        order = pd.DataFrame({"source": [str(f) for f in files], "sha256": hashes,
                              "subject": [subject_of(f) for f in files]})
        order["_order"] = range(len(order))
        done = order[order["sha256"].isin(ok.index)]
        per_image = done.join(ok[["mode", "cells", "ALL"]], on="sha256")
        problems = [f"{row.source}: {failed[row.sha256]}"
                    for row in order.itertuples() if row.sha256 not in ok.index
                    and row.sha256 in failed.index]
        cells = self._cells(set(done["sha256"]))
        cells = (done[["source", "subject", "sha256", "_order"]]
                 .merge(cells.drop(columns=["source", "subject"]), on="sha256", how="inner")
                 .sort_values("_order", kind="stable"))
        per_image = per_image.drop(columns=["_order", "sha256"]).reset_index(drop=True)
        return (cells.drop(columns=["_order", "sha256"]).reset_index(drop=True),
                per_image[["source", "subject", "mode", "cells", "ALL"]], problems)

    def _cells(self, wanted: set[str]):
        """The committed cell rows of the images ``wanted``."""
        import pandas as pd

        committed = {p.name for p in (self.path / "_images").glob("part-*.parquet")}
        tables = [t for p in sorted(self.path.glob("part-*.parquet")) if p.name in committed
                  for t in [pd.read_parquet(p)] if t["sha256"].isin(wanted).any()]
        if not tables:
            return pd.DataFrame({"sha256": [], "source": [], "subject": []})
        cells = pd.concat(tables, ignore_index=True)
        return cells[cells["sha256"].isin(wanted)]
