"""The per-image work of a screening run, shared by every way of running it.

:class:`BatchRun` reads an image, finds and cuts out its cells, pools the crops of several
images into full batches, classifies them and turns each image into its cell rows and one
per-image record. :func:`~allnet_core.inference.classify_images` drives one ``BatchRun``
over all inputs in this process; a Dask task (:func:`run_items`, through
:mod:`allnet_core.inference.distributed`) drives one over a batch of images on a worker.
Images too large for memory are segmented in tiles
(:func:`allnet_core.inference.large.classify_large`).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path

from allnet_core.inference.calls import DEFAULT_UNCERTAIN, summary_columns
from allnet_core.inference.results import TABLE_COLUMNS

__all__ = ["BATCH_COLUMNS", "PER_IMAGE_COLUMNS", "BatchRun", "cells_frame", "error_record",
           "gradcam_names", "per_image_columns", "records_frame", "run_items", "subject_of"]

#: Leading columns of a batch's cell table, in order.
BATCH_COLUMNS = ["source", "subject", "mode", *TABLE_COLUMNS]


def per_image_columns(*classes: str) -> list[str]:
    """Columns of a batch's per-image table: ``source``, ``subject``, ``mode`` and the
    call counts (:func:`~allnet_core.inference.calls.summary_columns` of ``classes``,
    ``(positive, negative)``, default ALL and HEM)."""
    return ["source", "subject", "mode", *summary_columns(*classes)]


#: Columns of a batch's per-image table (ALL and HEM).
PER_IMAGE_COLUMNS = per_image_columns()


def subject_of(path: str | os.PathLike) -> str:
    """The subject of a C-NMC cell file name (lower case), else ``""``."""
    from allnet_core.datasets import parse_cnmc_name

    info = parse_cnmc_name(Path(path).name)
    return info["subject"] if info else ""


def gradcam_names(files: Sequence[Path]) -> list[str]:
    """``<name>_gradcam.png`` per file; ``<name>_<k>_gradcam.png`` when names repeat."""
    seen: set[str] = set()
    names = []
    for path in files:
        name, k = f"{Path(path).stem}_gradcam.png", 1
        while name in seen:  # two inputs with the same file name in different folders
            k += 1
            name = f"{Path(path).stem}_{k}_gradcam.png"
        seen.add(name)
        names.append(name)
    return names


class BatchRun:
    """Cells read from images but not yet classified, pooled across images into batches,
    and the tables of the images already classified.

    Parameters
    ----------
    classifier : Classifier
    mode, tta, batch_size, threshold, uncertain
        As in :func:`~allnet_core.inference.classify_images`.
    gradcam_dir : Path, optional
        Where Grad-CAM overlays go (see :meth:`add_file`'s ``gradcam_name``).
    cancel : CancelToken, optional
    sink : callable, optional
        Receives ``(cells, images)`` after every batch: the cell rows (with a ``sha256``
        column) and the per-image records (:data:`allnet_core.inference.store.IMAGE_COLUMNS`)
        of the images it finished, errors included.
    labels_dir : Path, optional
        Where labels of images segmented in tiles are written (``<sha256>.zarr``); default
        a temporary folder.
    """

    def __init__(self, classifier, *, mode: str, tta: bool, batch_size: int,
                 threshold: float, uncertain=DEFAULT_UNCERTAIN,
                 gradcam_dir: Path | None = None, cancel=None,
                 sink: Callable | None = None, labels_dir: Path | None = None):
        self.clf = classifier
        self.mode, self.tta, self.batch_size, self.threshold = mode, tta, batch_size, threshold
        self.uncertain = uncertain
        self.gradcam_dir, self.cancel, self.sink = gradcam_dir, cancel, sink
        self.labels_dir = labels_dir
        self.pending: list[tuple] = []
        self.n_pending = 0
        self.tables: list = []
        self.records: list[dict] = []
        self._new_tables: list = []
        self._new_records: list[dict] = []
        self.gradcam_files: list[Path] = []

    def add_file(self, path: Path, sha256: str = "", gradcam_name: str | None = None) -> None:
        """Read one image and queue its cells (an image too large for memory is segmented
        in tiles and classified at once).

        Raises
        ------
        ImageReadError
            For an unreadable file; nothing is queued.
        """
        from allnet_core.inference.cells import image_cells
        from allnet_core.inference.large import classify_large, is_large_image
        from allnet_core.io import read_rgb

        path = Path(path)
        if is_large_image(path):
            self.flush()  # the images before it first: tables stay in input order
            table = classify_large(self.clf, path, labels_dir=self.labels_dir,
                                   name=sha256 or None, tta=self.tta,
                                   batch_size=self.batch_size, threshold=self.threshold,
                                   uncertain=self.uncertain, cancel=self.cancel).table
            self._finish(path, sha256, table, "smear")
            self._commit()
            return
        rgb = read_rgb(path)
        labels, crops, table, used = image_cells(rgb, mode=self.mode)
        if self.gradcam_dir is None:  # keep the image in memory only for Grad-CAM
            rgb = labels = None
        self.pending.append((path, sha256, gradcam_name, rgb, labels, crops, table, used))
        self.n_pending += len(crops)
        if self.n_pending >= self.batch_size:
            self.flush()

    def add_error(self, path: Path, sha256: str, message: str) -> None:
        """Record an image that could not be classified (committed with the next batch)."""
        self._new_records.append(error_record(path, sha256, message))

    def flush(self) -> None:
        """Classify every queued cell, in full batches across images, and commit."""
        if self.pending:
            crops = [c for item in self.pending for c in item[5]]
            scores = self.clf.predict_cells(crops, batch_size=self.batch_size, tta=self.tta,
                                            cancel=self.cancel)
            start = 0
            for path, sha256, cam_name, rgb, labels, item_crops, table, mode in self.pending:
                s = scores[start:start + len(item_crops)]
                start += len(item_crops)
                t = self._finish(path, sha256, self.clf.cell_table(
                    table, s, threshold=self.threshold, uncertain=self.uncertain), mode)
                if self.gradcam_dir is not None:
                    self._write_gradcam(path, cam_name, rgb, labels, item_crops, t, mode)
            self.pending.clear()
            self.n_pending = 0
        self._commit()

    def _finish(self, path: Path, sha256: str, table, mode: str):
        """One classified image: its cell rows and its record."""
        subject = subject_of(path)
        t = table.copy()
        t.insert(0, "mode", mode)
        t.insert(0, "subject", subject)
        t.insert(0, "source", str(path))
        positive = self.clf.class_names[self.clf.positive_index]
        self._new_tables.append(t.assign(sha256=sha256))
        self._new_records.append({"source": str(path), "sha256": sha256, "subject": subject,
                                  "mode": mode, "cells": len(t),
                                  "ALL": int((t["call"] == positive).sum()), "error": ""})
        return t

    def _commit(self) -> None:
        """Hand the images finished since the last commit to the sink."""
        if not self._new_records:
            return
        self.tables.extend(self._new_tables)
        self.records.extend(self._new_records)
        if self.sink is not None:
            self.sink(cells_frame(self._new_tables), records_frame(self._new_records))
        self._new_tables, self._new_records = [], []

    def _write_gradcam(self, path: Path, name: str | None, rgb, labels, crops, table,
                       mode: str) -> None:
        """Write ``<dir>/<name>``: the image with its Grad-CAM overlaid, the cells outlined
        with their calls, and a colour bar."""
        from allnet_core.inference.gradcam import write_gradcam_png

        _, field_map = self.clf.image_gradcam(crops, table, labels, mode,
                                              batch_size=self.batch_size, cancel=self.cancel)
        name = name or f"{path.stem}_gradcam.png"
        self.gradcam_files.append(
            write_gradcam_png(self.gradcam_dir / name, rgb, field_map, labels, table))

    def tables_result(self):
        """``(cells, per_image)`` of every image classified so far, errors left out."""
        import pandas as pd

        cells = cells_frame(self.tables).drop(columns="sha256")
        records = records_frame(self.records)
        per_image = records[records["error"] == ""][IMAGE_FIELDS].reset_index(drop=True)
        return cells, per_image if len(per_image) else \
            pd.DataFrame({c: [] for c in IMAGE_FIELDS})

    @property
    def classes(self) -> tuple[str, str]:
        """The positive class and the other one (the names of the call counts)."""
        names = self.clf.class_names
        pos = names[self.clf.positive_index]
        return pos, next((n for n in names if n != pos), pos)


#: What a per-image record gives to the per-image table; the counts come from the cells.
IMAGE_FIELDS = ["source", "subject", "mode"]


def error_record(path: str | os.PathLike, sha256: str, message: str) -> dict:
    """The per-image record of an image that could not be classified."""
    return {"source": str(path), "sha256": sha256, "subject": subject_of(path), "mode": "",
            "cells": 0, "ALL": 0, "error": message}


def cells_frame(tables: list):
    """Cell tables joined, the :data:`BATCH_COLUMNS` first (an empty table for none)."""
    import pandas as pd

    if not tables:
        return pd.DataFrame({c: [] for c in [*BATCH_COLUMNS, "sha256"]})
    cells = pd.concat(tables, ignore_index=True)
    return cells[BATCH_COLUMNS + [c for c in cells.columns if c not in BATCH_COLUMNS]]


def records_frame(records: list[dict]):
    """Per-image records as a table (:data:`~allnet_core.inference.store.IMAGE_COLUMNS`)."""
    import pandas as pd

    from allnet_core.inference.store import IMAGE_COLUMNS

    return pd.DataFrame(records, columns=IMAGE_COLUMNS)


def run_items(classifier, items: Sequence[tuple], *, labels_dir: Path | None = None,
              gradcam_dir: Path | None = None, **options):
    """Classify a batch of images, recording (not raising) the error of a bad one.

    The work of one Dask task.

    Parameters
    ----------
    classifier : Classifier
    items : sequence of (path, sha256, gradcam_name)
    labels_dir, gradcam_dir
        See :class:`BatchRun`.
    **options
        ``mode``, ``tta``, ``batch_size``, ``threshold``, ``uncertain``.

    Returns
    -------
    cells : pandas.DataFrame
        The cell rows, with a ``sha256`` column.
    images : pandas.DataFrame
        One record per image (:data:`allnet_core.inference.store.IMAGE_COLUMNS`).
    """
    parts: list[tuple] = []
    run = BatchRun(classifier, gradcam_dir=gradcam_dir, labels_dir=labels_dir,
                   sink=lambda c, i: parts.append((c, i)), **options)
    for path, sha256, cam_name in items:
        try:
            run.add_file(Path(path), sha256, cam_name)
        except Exception as exc:  # one bad image never stops the batch
            run.add_error(Path(path), sha256, _describe(exc))
    run.flush()
    import pandas as pd

    return (pd.concat([c for c, _ in parts], ignore_index=True) if parts else cells_frame([]),
            pd.concat([i for _, i in parts], ignore_index=True) if parts
            else records_frame([]))


def _describe(exc: BaseException) -> str:
    """An error as recorded for its image (the path is said elsewhere)."""
    from allnet_core.errors import AllnetError, ImageReadError

    if isinstance(exc, ImageReadError):
        return exc.problem
    if isinstance(exc, AllnetError):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"
