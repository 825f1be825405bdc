"""Classify the cells of many image files in one run: :func:`classify_images`.

Cells are pooled across files into full batches (a folder of single-cell images costs one
forward pass per ``batch_size`` cells, not one per file), Grad-CAM overlays are written
per image on request, and the result holds one row per cell plus per-image and
per-subject summaries. ``allnet classify`` and the worker are thin adapters around it.

The same run goes three ways: in this process, keeping everything in memory (default);
in this process, streaming to a resumable Parquet store (``out``,
:mod:`~allnet_core.inference.store`); or as Dask tasks on a ``dask.distributed`` cluster
(``client``, :mod:`~allnet_core.inference.distributed`). The per-image work is the one
:class:`~allnet_core.inference._run.BatchRun` in all three.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from allnet_core.classes import NEGATIVE_CLASS, POSITIVE_CLASS
from allnet_core.errors import ConfigError, ImageReadError
from allnet_core.inference._run import (
    BATCH_COLUMNS,
    BatchRun,
    gradcam_names,
    per_image_columns,
    subject_of,
)
from allnet_core.inference.calls import DEFAULT_UNCERTAIN, OUT_OF_SCOPE, UNCERTAIN, check_band
from allnet_core.inference.cells import MODES
from allnet_core.model.predict import DEFAULT_BATCH, check_batch_size
from allnet_core.progress import CancelLike, ProgressCallback, check_cancel, emit
from allnet_core.validation import check_choice

__all__ = ["BATCH_COLUMNS", "BatchResult", "classify_images", "find_image_files",
           "subject_of"]


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
        One row per classified file (:data:`~allnet_core.inference._run.PER_IMAGE_COLUMNS`):
        ``source``, ``subject``, ``mode``, then the counts of
        :func:`~allnet_core.inference.calls.summarize_calls`: ``cells``, ``ALL``, ``HEM``,
        ``uncertain``, ``out_of_scope`` (cells of each call), ``all_fraction`` (ALL among
        the confident in-scope cells, ``nan`` without any) and its 95 % interval
        ``all_fraction_low``, ``all_fraction_high``.
    per_subject : pandas.DataFrame
        ``subject`` and the same counts over the cells of each subject (files with a
        subject only), sorted by subject.
    problems : list of str
        One message per unreadable file that was skipped (``skip_bad=True``, or any run
        with ``out`` or ``client`` after the first error).
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
        if item.is_dir() and item.suffix.lower() == ".zarr":
            files.append(item)  # a zarr image is a folder
        elif item.is_dir():
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
                    cancel: CancelLike | None = None, out: str | os.PathLike | None = None,
                    client=None, images_per_task: int | None = None,
                    uncertain=DEFAULT_UNCERTAIN) -> BatchResult:
    """Classify every white cell of many image files.

    Parameters
    ----------
    classifier : Classifier or path-like
        A classifier, or a ``.keras`` file or run folder to load one from. With
        ``client`` or ``out`` the model must come from a file (the workers load it
        themselves, and the store records its hash).
    inputs : path-like or sequence of path-like
        Image files and folders (searched recursively, see :func:`find_image_files`).
    mode : {"auto", "cells", "smear"}
        Per image, see :func:`~allnet_core.inference.image_cells`.
    tta : bool
        Test-time augmentation.
    batch_size : int
        Cells per forward pass, pooled across files.
    threshold : float
        Calibrated P(ALL) at or above which a cell is of class ALL.
    gradcam_dir : path-like, optional
        Write ``<name>_gradcam.png`` per image here: the image with its Grad-CAM heatmap
        overlaid (``<name>_<k>_gradcam.png`` when two inputs share a name).
    skip_bad : bool
        Report unreadable files in :attr:`BatchResult.problems` and go on; by default
        the first one stops the run. On a cluster every bad image is recorded and the
        run goes on.
    progress : callable, optional
        Receives ``{"kind": "start", "total"}``, then ``{"kind": "file", "done", "total",
        "path", "skipped"}`` per file, then ``{"kind": "done", "images", "cells",
        "skipped"}``. With ``out``, a ``{"kind": "resume", "done", "total"}`` event
        first says how many inputs the store already holds; ``total`` then counts the
        others.
    cancel : CancelToken, optional
        Checked before every file and every batch.
    out : path-like, optional
        A result store folder (``*.parquet``, see :mod:`allnet_core.inference.store`):
        results stream there as they finish, and a rerun skips the images it holds.
    client : distributed.Client, optional
        Run as Dask tasks on this cluster (see :mod:`allnet_core.inference.distributed`).
    images_per_task : int, optional
        Images per Dask task (with ``client``); default ``batch_size``, fewer when that would
        leave under 4 tasks per worker (see
        :func:`~allnet_core.inference.distributed.run_on_cluster`).
    uncertain : (float, float) or None
        The uncertain band of calibrated P(ALL) (see :mod:`allnet_core.inference.calls`);
        None for none.

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
    >>> with LocalCluster(n_workers=2) as cluster, Client(cluster) as client:  # doctest: +SKIP
    ...     result = classify_images("model.keras", ["smears/"], client=client,
    ...                              out="cells.parquet")
    """
    check_choice(mode, MODES, "mode")
    if not 0.0 <= threshold <= 1.0:
        raise ConfigError(f"threshold must be in [0, 1], got {threshold}")
    band = list(check_band(uncertain, threshold))  # a list: as the store's JSON reads back
    files = find_image_files(inputs)
    options = {"mode": mode, "tta": tta, "batch_size": check_batch_size(batch_size),
               "threshold": threshold, "uncertain": band}
    gradcam_dir = None if gradcam_dir is None else Path(gradcam_dir)
    if gradcam_dir is not None:
        from allnet_core.io import check_output_dir

        check_output_dir(gradcam_dir, "gradcam_dir")  # before the work
    if client is None and out is None:
        return _in_memory(_loaded(classifier), files, options, gradcam_dir, skip_bad,
                          progress, cancel)
    from allnet_core.inference.screening import screen

    return screen(classifier, files, options, out=out, client=client,
                  gradcam_dir=gradcam_dir, skip_bad=skip_bad, progress=progress,
                  cancel=cancel, images_per_task=images_per_task)


def _loaded(classifier):
    """A :class:`Classifier`, loaded from a path when given one."""
    if isinstance(classifier, str | os.PathLike):
        from allnet_core.inference.classifier import Classifier

        return Classifier.load(classifier)
    return classifier


def _in_memory(clf, files: list[Path], options: dict, gradcam_dir: Path | None,
               skip_bad: bool, progress, cancel) -> BatchResult:
    """Every file in this process, results kept in memory."""
    run = BatchRun(clf, gradcam_dir=gradcam_dir, cancel=cancel, **options)
    names = gradcam_names(files)
    problems: list[str] = []
    emit(progress, "start", total=len(files))
    for i, path in enumerate(files):
        check_cancel(cancel, "classification")
        try:
            run.add_file(path, gradcam_name=names[i])
        except ImageReadError as exc:
            if not skip_bad:
                raise ImageReadError(
                    exc.path, f"{exc.problem} (stopped at file {i + 1} of {len(files)})"
                ) from exc
            problems.append(str(exc))
            emit(progress, "file", done=i + 1, total=len(files), path=str(path), skipped=True)
            continue
        emit(progress, "file", done=i + 1, total=len(files), path=str(path), skipped=False)
    run.flush()
    cells, per_image = run.tables_result()
    result = make_result(cells, per_image, problems, run.gradcam_files, classes=run.classes)
    emit(progress, "done", images=len(result.per_image), cells=len(result.cells),
         skipped=len(result.problems))
    return result


def make_result(cells, per_image, problems: list[str], gradcam_files=(),
                classes: tuple[str, str] | None = None) -> BatchResult:
    """A :class:`BatchResult`: the call counts of every image (``per_image`` gives the
    images, with ``source``, ``subject`` and ``mode``) and of every subject, counted from
    the ``call`` column of ``cells``.

    ``classes`` is ``(positive, negative)``, the names the counts take (default ALL, HEM).
    """
    import pandas as pd

    from allnet_core.inference.calls import call_counts, summarize_calls

    classes = tuple(classes) if classes else (POSITIVE_CLASS, NEGATIVE_CLASS)
    cells = cells[BATCH_COLUMNS + [c for c in cells.columns if c not in BATCH_COLUMNS]]
    cells = cells.reset_index(drop=True)
    by_image = summarize_calls(cells, ["source"], *classes).set_index("source")
    empty = call_counts([], *classes)
    rows = [{**row, **(by_image.loc[row["source"]].to_dict()
                       if row["source"] in by_image.index else empty)}
            for row in per_image[["source", "subject", "mode"]].to_dict(orient="records")]
    per_image = pd.DataFrame(rows, columns=per_image_columns(*classes))
    per_image = per_image.astype({c: int for c in ["cells", *classes, UNCERTAIN, OUT_OF_SCOPE]})
    with_subject = cells[cells["subject"] != ""].sort_values("subject", kind="stable")
    per_subject = summarize_calls(with_subject, ["subject"], *classes)
    return BatchResult(cells=cells, per_image=per_image, per_subject=per_subject,
                       problems=list(problems), gradcam_files=list(gradcam_files))
