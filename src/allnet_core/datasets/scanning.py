"""Listing the labelled images under a root: :func:`scan` (every problem collected, for
``allnet data check``) and :func:`discover` (the table, or one error naming every problem).

Problems found: unreadable files, unknown class folders, files with no label, duplicate
files (same bytes), an empty root, a single class.
"""

from __future__ import annotations

import logging
import os
from collections import defaultdict
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pandas as pd

from allnet_core.datasets.layouts import (
    _CLASS_FOLDERS,
    _PRELIM_DIR,
    _fold_of,
    _read_prelim_labels,
    _read_subjects_csv,
    class_of_folder,
    parse_class_map,
    parse_cnmc_name,
)
from allnet_core.datasets.listing import file_sha256
from allnet_core.datasets.report import OWN_SUBJECT_PREFIX, DatasetReport, Problem
from allnet_core.errors import AllnetError, DatasetError
from allnet_core.io import find_images, read_rgb

__all__ = ["COLUMNS", "discover", "scan"]

log = logging.getLogger("allnet_core.datasets")

#: Columns of the table returned by :func:`discover`.
COLUMNS = ("path", "label", "subject", "fold", "source")


def _verify(paths: list[Path], problems: list[Problem], workers: int = 4) -> set[Path]:
    """Decode every image; return the unreadable ones (and record why)."""

    def check(p: Path) -> tuple[Path, str | None]:
        try:
            read_rgb(p)
        except AllnetError as exc:
            return p, getattr(exc, "problem", str(exc))
        return p, None

    bad: set[Path] = set()
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for p, why in pool.map(check, paths):
            if why is not None:
                bad.add(p)
                problems.append(Problem("error", f"unreadable image: {why}", str(p)))
    return bad


def _find_duplicates(paths: list[Path], problems: list[Problem]) -> None:
    by_size: dict[int, list[Path]] = defaultdict(list)
    for p in paths:
        by_size[p.stat().st_size].append(p)
    by_hash: dict[str, list[Path]] = defaultdict(list)
    for group in by_size.values():
        if len(group) > 1:
            for p in group:
                by_hash[file_sha256(p)].append(p)
    for group in by_hash.values():
        if len(group) > 1:
            first, *rest = sorted(group)
            for p in rest:
                problems.append(Problem("error", f"duplicate of {first} (same bytes)", str(p)))


def scan(root: str | os.PathLike, verify: bool = True, duplicates: bool = True,
         classes: Mapping[str, str] | str | None = None,
         require_both_classes: bool = True) -> DatasetReport:
    """List the labelled images under ``root`` and collect every problem.

    Parameters
    ----------
    root : path-like
        Dataset folder (any of the layouts in the module docstring).
    verify : bool
        Decode every image with :func:`~allnet_core.io.read_rgb` to find unreadable files.
    duplicates : bool
        Hash files of equal size to find duplicates.
    classes : mapping or str, optional
        Class folder names beyond the built-in ones, e.g. ``{"blast": "ALL", "normal":
        "HEM"}`` or ``"blast=ALL,normal=HEM"`` (see
        :func:`~allnet_core.datasets.parse_class_map`); checked first.
    require_both_classes : bool
        A folder with one class only is an error (training needs both). Evaluation passes
        False: scoring a set of healthy cells alone (its specificity) is legitimate.

    Returns
    -------
    DatasetReport
        ``table`` has the columns :data:`COLUMNS`, one row per usable image, sorted by path.
    """
    root = Path(root)
    classes = parse_class_map(classes)
    problems: list[Problem] = []
    if not root.is_dir():
        raise DatasetError(f"{root}: dataset folder does not exist")
    images = find_images(root)
    subjects_map = _read_subjects_csv(root, problems)
    prelim_cache: dict[Path, dict] = {}
    rows = []
    own_subject = 0
    for p in images:
        rel = p.relative_to(root)
        parsed = parse_cnmc_name(p.name)
        parent = p.parent.name
        if parent.lower() == _PRELIM_DIR:
            labels = prelim_cache.setdefault(p.parent, _read_prelim_labels(p.parent, problems))
            label, subject = labels.get(p.name, ("", ""))
            if not label:
                problems.append(Problem("warning", "no label (no preliminary-test labels CSV "
                                        "entry for this file)", str(p)))
                continue
            rows.append((str(p), label, subject or f"prelim:{p.stem}", "", "cnmc_prelim"))
            continue
        if parsed is not None:
            folder_label = class_of_folder(parent, classes)
            if folder_label is not None and folder_label != parsed["label"]:
                problems.append(Problem(
                    "error", f"file name says {parsed['label']} but it is in folder "
                    f"'{parent}'", str(p)))
                continue
            rows.append((str(p), parsed["label"], parsed["subject"], _fold_of(p, root), "cnmc"))
            continue
        # Plain layout: the nearest ancestor folder (below root) that names a class.
        label = next((class_of_folder(part, classes) for part in reversed(rel.parts[:-1])
                      if class_of_folder(part, classes)), None)
        if label is None:
            if len(rel.parts) > 1:
                known = ", ".join(sorted({*_CLASS_FOLDERS, *classes}))
                problems.append(Problem(
                    "error", f"unknown class folder '{rel.parts[0]}' (known: {known}; map "
                    "other names with a class mapping, e.g. --classes "
                    f"{rel.parts[0]}=ALL or =HEM)", str(p)))
            else:
                problems.append(Problem("error", "no label: image lies directly in the root; "
                                        "put it in a class folder (all/ or hem/)", str(p)))
            continue
        key = rel.as_posix()
        subject = subjects_map.get(key) or subjects_map.get(p.name)
        if subject is None:
            own_subject += 1
            subject = f"{OWN_SUBJECT_PREFIX}{rel.with_suffix('').as_posix()}"
        rows.append((str(p), label, subject, _fold_of(p, root), "folders"))

    if own_subject:
        problems.append(Problem(
            "warning", f"{own_subject} image(s) have no subject (no subjects.csv entry): each is "
            "treated as its own subject, so subject-grouped splits cannot keep a donor's cells "
            "together", str(root)))
    table = pd.DataFrame(rows, columns=list(COLUMNS))
    if verify and len(table):
        bad = _verify([Path(p) for p in table["path"]], problems)
        table = table[~table["path"].isin({str(b) for b in bad})]
    if duplicates and len(table):
        _find_duplicates([Path(p) for p in table["path"]], problems)
    if not images:
        problems.append(Problem("error", "no image files found (looked for "
                                ".bmp .png .jpg .jpeg .tif .tiff, recursively)", str(root)))
    elif len(table) and require_both_classes:
        classes = sorted(set(table["label"]))
        if len(classes) < 2:
            problems.append(Problem(
                "error", f"only one class ({classes[0]}) found; training needs both ALL and HEM",
                str(root)))
    table = table.sort_values("path", kind="stable").reset_index(drop=True)
    return DatasetReport(root=root, table=table, problems=problems)


def discover(root: str | os.PathLike, verify: bool = True,
             classes: Mapping[str, str] | str | None = None,
             require_both_classes: bool = True) -> pd.DataFrame:
    """Table of the labelled images under ``root``, one row per image.

    Parameters
    ----------
    root : path-like
        Dataset folder (see the module docstring for the layouts).
    verify : bool
        Decode every image first, so unreadable files are reported before work starts.
    classes : mapping or str, optional
        Class folder names beyond the built-in ones, as for :func:`scan`.
    require_both_classes : bool
        Refuse a folder with one class only (the default, as training needs); see
        :func:`scan`.

    Returns
    -------
    pandas.DataFrame
        Columns :data:`COLUMNS`: ``path`` (str), ``label`` (``"ALL"``/``"HEM"``),
        ``subject`` (lower-cased str), ``fold`` (str, ``""`` when none), ``source``
        (``"cnmc"``, ``"cnmc_prelim"`` or ``"folders"``).

    Raises
    ------
    DatasetError
        Listing every error found (empty root, single class, unreadable, duplicate or
        unlabelled files ...). Warnings are logged.
    """
    report = scan(root, verify=verify, classes=classes,
                  require_both_classes=require_both_classes)
    report.raise_if_errors()
    for w in report.warnings:
        log.warning("%s", w)
    return report.table
