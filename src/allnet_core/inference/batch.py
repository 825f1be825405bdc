"""Classify the cells of many image files in one run: :func:`classify_images`.

Cells are pooled across files into full batches (a folder of single-cell images costs one
forward pass per ``batch_size`` cells, not one per file), Grad-CAM overlays are written
per image on request, and the result holds one row per cell plus per-image and
per-subject summaries. ``allnet classify`` and the worker are thin adapters around it.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from allnet_core.errors import ConfigError, ImageReadError
from allnet_core.inference.calls import (
    DEFAULT_UNCERTAIN,
    call_counts,
    check_band,
    summarize_calls,
    summary_columns,
)
from allnet_core.inference.cells import MODES, image_cells
from allnet_core.inference.results import TABLE_COLUMNS
from allnet_core.model.predict import DEFAULT_BATCH, check_batch_size
from allnet_core.progress import CancelLike, ProgressCallback, check_cancel, emit
from allnet_core.validation import check_choice

__all__ = ["BATCH_COLUMNS", "BatchResult", "classify_images", "find_image_files"]

#: Leading columns of :attr:`BatchResult.cells`, in order.
BATCH_COLUMNS = ["source", "subject", "mode", *TABLE_COLUMNS]


@dataclass
class BatchResult:
    """What :func:`classify_images` returns; unpacks as
    ``cells, per_image, per_subject, problems``.

    Attributes
    ----------
    cells : pandas.DataFrame
        One row per cell: ``source`` (the file), ``subject`` (from a C-NMC file name, else
        ``""``), ``mode`` (``"cells"`` or ``"smear"``), then the columns of
        :meth:`Classifier.classify_image`'s table (:data:`BATCH_COLUMNS`).
    per_image : pandas.DataFrame
        One row per classified file: ``source``, ``subject``, ``mode``, then the counts of
        :func:`~allnet_core.inference.calls.summarize_calls`: ``cells``, ``ALL``, ``HEM``,
        ``uncertain``, ``out_of_scope`` (cells of each call), ``all_fraction`` (ALL among
        the confident in-scope cells) and its 95 % interval ``all_fraction_low``,
        ``all_fraction_high``.
    per_subject : pandas.DataFrame
        ``subject`` and the same counts over the cells of each subject (files with a
        subject only), sorted by subject.
    problems : list of str
        One message per unreadable file that was skipped (``skip_bad=True``).
    gradcam_files : list of pathlib.Path
        The Grad-CAM overlays written (with ``gradcam_dir``).
    """

    cells: Any = field(repr=False)
    per_image: Any = field(repr=False)
    per_subject: Any = field(repr=False)
    problems: list[str] = field(default_factory=list)
    gradcam_files: list[Path] = field(default_factory=list)

    def __iter__(self):
        return iter((self.cells, self.per_image, self.per_subject, self.problems))


def find_image_files(inputs: str | os.PathLike | Sequence[str | os.PathLike]) -> list[Path]:
    """The image files of ``inputs``: files as given, folders searched recursively.

    Duplicates (the same file reached twice) are dropped; the order is kept.

    Raises
    ------
    ConfigError
        For a path that does not exist or a folder without image files.
    """
    from allnet_core.io import find_images

    if isinstance(inputs, str | os.PathLike):
        inputs = [inputs]
    files: list[Path] = []
    for item in map(Path, inputs):
        if item.is_dir():
            found = find_images(item, recursive=True)
            if not found:
                raise ConfigError(f"{item}: the folder holds no image files "
                                  "(.bmp, .png, .jpg, .jpeg, .tif, .tiff)")
            files.extend(found)
        elif item.exists():
            files.append(item)
        else:
            raise ConfigError(f"{item}: no such file or folder")
    unique: dict[Path, Path] = {}
    for f in files:
        unique.setdefault(f.resolve(), f)  # the first path to a file wins
    return list(unique.values())


def classify_images(classifier, inputs, *, mode: str = "auto", tta: bool = False,
                    batch_size: int = DEFAULT_BATCH, threshold: float = 0.5,
                    gradcam_dir: str | os.PathLike | None = None, skip_bad: bool = False,
                    progress: ProgressCallback | None = None,
                    cancel: CancelLike | None = None,
                    uncertain=DEFAULT_UNCERTAIN) -> BatchResult:
    """Classify every white cell of many image files.

    Parameters
    ----------
    classifier : Classifier
    inputs : path-like or sequence of path-like
        Image files and folders (searched recursively, see :func:`find_image_files`).
    mode : {"auto", "cells", "smear"}
        Per image, see :func:`~allnet_core.inference.image_cells`.
    tta : bool
        Test-time augmentation.
    batch_size : int
        Cells per forward pass, pooled across files.
    threshold : float
        P(ALL) at or above which a cell is called ALL.
    gradcam_dir : path-like, optional
        Write ``<name>_gradcam.png`` per image here: the image with its Grad-CAM heatmap
        overlaid (``<name>_<k>_gradcam.png`` when two inputs share a name).
    skip_bad : bool
        Report unreadable files in :attr:`BatchResult.problems` and go on; by default
        the first one stops the run.
    progress : callable, optional
        Receives ``{"kind": "start", "total"}``, then ``{"kind": "file", "done", "total",
        "path", "skipped"}`` per file, then ``{"kind": "done", "images", "cells",
        "skipped"}``.
    cancel : CancelToken, optional
        Checked before every file and every batch.
    uncertain : (float, float) or None
        The uncertain band of calibrated P(ALL) (see :mod:`allnet_core.inference.calls`).

    Returns
    -------
    BatchResult

    Raises
    ------
    ImageReadError
        For an unreadable file without ``skip_bad`` (the message says which file of how
        many).

    Examples
    --------
    >>> clf = Classifier.load("runs/demo")  # doctest: +SKIP
    >>> result = classify_images(clf, ["smears/"], gradcam_dir="cams")  # doctest: +SKIP
    >>> cells, per_image, per_subject, problems = result  # doctest: +SKIP
    """
    from allnet_core.io import read_rgb

    check_choice(mode, MODES, "mode")
    if not 0.0 <= threshold <= 1.0:
        raise ConfigError(f"threshold must be in [0, 1], got {threshold}")
    uncertain = check_band(uncertain, threshold)
    files = find_image_files(inputs)
    run = _BatchRun(classifier, tta=tta, batch_size=check_batch_size(batch_size),
                    threshold=threshold, uncertain=uncertain, cancel=cancel,
                    gradcam_dir=None if gradcam_dir is None else Path(gradcam_dir))
    emit(progress, "start", total=len(files))
    for i, path in enumerate(files):
        check_cancel(cancel, "classification")
        try:
            rgb = read_rgb(path)
            labels, crops, table, used = image_cells(rgb, mode=mode)
        except ImageReadError as exc:
            if not skip_bad:
                raise ImageReadError(
                    exc.path, f"{exc.problem}\n(stopped at file {i + 1} of {len(files)})"
                ) from exc
            run.problems.append(str(exc))
            emit(progress, "file", done=i + 1, total=len(files), path=str(path), skipped=True)
            continue
        run.add(path, rgb, labels, crops, table, used)
        emit(progress, "file", done=i + 1, total=len(files), path=str(path), skipped=False)
    run.flush()
    result = run.result()
    emit(progress, "done", images=len(result.per_image), cells=len(result.cells),
         skipped=len(result.problems))
    return result


def subject_of(path: str | os.PathLike) -> str:
    """The subject of a C-NMC cell file name (lower case), else ``""``."""
    from allnet_core.datasets import parse_cnmc_name

    info = parse_cnmc_name(Path(path).name)
    return info["subject"] if info else ""


class _BatchRun:
    """Cells read from files but not yet classified, pooled across files into batches,
    and the tables of the files already classified."""

    def __init__(self, classifier, *, tta: bool, batch_size: int, threshold: float,
                 gradcam_dir: Path | None, cancel, uncertain=DEFAULT_UNCERTAIN):
        self.clf = classifier
        self.tta, self.batch_size, self.threshold = tta, batch_size, threshold
        self.uncertain = uncertain
        self.gradcam_dir, self.cancel = gradcam_dir, cancel
        self.pending: list[tuple] = []
        self.n_pending = 0
        self.tables: list = []
        self.per_image: list[dict] = []
        self.problems: list[str] = []
        self.gradcam_files: list[Path] = []
        self._names: set[str] = set()

    def add(self, path: Path, rgb, labels, crops, table, mode: str) -> None:
        """Queue one image's cells; classify the queue once it fills a batch."""
        if self.gradcam_dir is None:  # keep the image in memory only for Grad-CAM
            rgb = labels = None
        self.pending.append((path, rgb, labels, crops, table, mode))
        self.n_pending += len(crops)
        if self.n_pending >= self.batch_size:
            self.flush()

    def flush(self) -> None:
        """Classify every queued cell, in full batches across files."""
        if not self.pending:
            return
        crops = [c for item in self.pending for c in item[3]]
        probs = self.clf.predict_cells(crops, batch_size=self.batch_size, tta=self.tta,
                                       cancel=self.cancel)
        start = 0
        for path, rgb, labels, item_crops, table, mode in self.pending:
            p = probs[start:start + len(item_crops)]
            start += len(item_crops)
            t = self.clf.cell_table(table, p, threshold=self.threshold,
                                    uncertain=self.uncertain)
            subject = subject_of(path)
            t.insert(0, "mode", mode)
            t.insert(0, "subject", subject)
            t.insert(0, "source", str(path))
            self.tables.append(t)
            self.per_image.append({"source": str(path), "subject": subject, "mode": mode,
                                   **call_counts(t["call"], *self._classes())})
            if self.gradcam_dir is not None:
                self._write_gradcam(path, rgb, labels, item_crops, t, mode)
        self.pending.clear()
        self.n_pending = 0

    def _classes(self) -> tuple[str, str]:
        """The positive class and the other one (the names of the call counts)."""
        names = self.clf.class_names
        pos = names[self.clf.positive_index]
        return pos, next((n for n in names if n != pos), pos)

    def _write_gradcam(self, path: Path, rgb, labels, crops, table, mode: str) -> None:
        """Write ``<dir>/<name>_gradcam.png``: the image with its Grad-CAM overlaid."""
        from allnet_core.inference.gradcam import overlay_heatmap
        from allnet_core.io import write_image

        _, field_map = self.clf.image_gradcam(crops, table, labels, mode,
                                              batch_size=self.batch_size, cancel=self.cancel)
        name = f"{path.stem}_gradcam.png"
        k = 1
        while name in self._names:  # two inputs with the same file name in different folders
            k += 1
            name = f"{path.stem}_{k}_gradcam.png"
        self._names.add(name)
        self.gradcam_files.append(
            write_image(self.gradcam_dir / name, overlay_heatmap(rgb, field_map)))

    def result(self) -> BatchResult:
        import pandas as pd

        cells = (pd.concat(self.tables, ignore_index=True) if self.tables
                 else pd.DataFrame({c: [] for c in BATCH_COLUMNS}))
        cells = cells[BATCH_COLUMNS + [c for c in cells.columns if c not in BATCH_COLUMNS]]
        per_image = pd.DataFrame(self.per_image, columns=["source", "subject", "mode",
                                                          *summary_columns(*self._classes())])
        per_subject = summarize_calls(
            cells[cells["subject"] != ""].sort_values("subject", kind="stable"),
            ["subject"], *self._classes())
        return BatchResult(cells=cells, per_image=per_image, per_subject=per_subject,
                           problems=list(self.problems), gradcam_files=list(self.gradcam_files))
