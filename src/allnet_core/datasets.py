"""Finding labelled cell images in a folder and checking them before work starts.

Layouts understood by :func:`scan` and :func:`discover` (they may be mixed under one root):

C-NMC 2019
    ``.../training_data/fold_<N>/{all,hem}/UID_<subject>_<image>_<cell>_{all,hem}.bmp``.
    Label and subject come from the file name, the fold from the ``fold_<N>`` folder.
    Subject ids are case-insensitive (the real release has both ``h3`` and ``H3``); they
    are stored lower-cased. Subjects starting with ``h`` are healthy donors.
C-NMC preliminary test
    ``C-NMC_test_prelim_phase_data/<n>.bmp`` with ``C-NMC_test_prelim_phase_data_labels.csv``
    beside the folder (columns ``Patient_ID`` = original ``UID_...`` name, ``new_names`` =
    file name, ``labels`` = 1 for ALL, 0 for HEM). Without the CSV the files are listed
    with no label, which is reported.
Plain class folders
    ``<root>/<class>/*`` (any depth below the class folder). Class folder names map
    case-insensitively: ``all``, ``blast``, ``blasts``, ``leukemia``, ``leukaemia`` -> ALL;
    ``hem``, ``normal``, ``healthy`` -> HEM. An optional ``subjects.csv`` at the root with
    columns ``file`` (path relative to the root, or bare file name) and ``subject`` maps
    files to subjects; without it each image is its own subject, and the report warns.

Problems are collected, never raised one by one: unreadable files, unknown class folders,
files with no label, duplicate files (same bytes), an empty root, a single class.
:func:`discover` raises one :class:`~allnet_core.errors.DatasetError` listing every error;
:func:`scan` returns them in a :class:`DatasetReport` for ``allnet data check``.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from allnet_core.errors import AllnetError, DatasetError
from allnet_core.io import find_images, read_rgb

__all__ = [
    "COLUMNS",
    "DatasetReport",
    "Problem",
    "class_of_folder",
    "compare_with_listing",
    "discover",
    "parse_cnmc_name",
    "scan",
]

log = logging.getLogger(__name__)

#: Columns of the table returned by :func:`discover`.
COLUMNS = ("path", "label", "subject", "fold", "source")

# ``_aug<k>`` marks an augmented copy written by ``allnet augment``; it keeps the subject.
_CNMC_NAME = re.compile(r"^UID_([A-Za-z]*\d+)_(\d+)_(\d+)(?:_aug\d+)?_(all|hem)\.[A-Za-z]+$",
                        re.IGNORECASE)
_FOLD_DIR = re.compile(r"^fold_(\d+)$", re.IGNORECASE)
_CLASS_FOLDERS = {
    "all": "ALL", "blast": "ALL", "blasts": "ALL", "leukemia": "ALL", "leukaemia": "ALL",
    "hem": "HEM", "normal": "HEM", "healthy": "HEM",
}
_PRELIM_DIR = "c-nmc_test_prelim_phase_data"


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a dataset: ``severity`` is ``"error"`` or ``"warning"``."""

    severity: str
    message: str
    path: str = ""

    def __str__(self) -> str:
        where = f"{self.path}: " if self.path else ""
        return f"{self.severity}: {where}{self.message}"


@dataclass
class DatasetReport:
    """What :func:`scan` found under ``root``: the table and the problems."""

    root: Path
    table: pd.DataFrame
    problems: list[Problem] = field(default_factory=list)

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "error"]

    @property
    def warnings(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "warning"]

    def raise_if_errors(self) -> None:
        """Raise one :class:`DatasetError` naming every error, if there is any."""
        errs = self.errors
        if errs:
            shown = "\n  ".join(str(p) for p in errs[:20])
            more = f"\n  ... and {len(errs) - 20} more" if len(errs) > 20 else ""
            raise DatasetError(f"dataset {self.root} has {len(errs)} error(s):\n  {shown}{more}")

    def summary(self) -> str:
        """Human-readable counts per class, fold and subject, then the problems."""
        t = self.table
        lines = [f"Dataset: {self.root}", f"Images: {len(t)}"]
        if len(t):
            by_class = t["label"].replace("", "(none)").value_counts().sort_index()
            lines.append("Per class: " + ", ".join(f"{k} {v}" for k, v in by_class.items()))
            folds = t["fold"].replace("", "(none)").value_counts().sort_index()
            lines.append("Per fold: " + ", ".join(f"{k} {v}" for k, v in folds.items()))
            subj = t.groupby("subject")["label"].agg(["size", lambda s: "/".join(sorted(set(s)))])
            subj.columns = ["images", "labels"]
            lines.append(f"Subjects: {len(subj)}")
            for sid, row in subj.sort_index().iterrows():
                lines.append(f"  {sid:>10}  {row['labels']:<8} {row['images']}")
        if self.problems:
            lines.append(f"Problems: {len(self.errors)} error(s), {len(self.warnings)} warning(s)")
            lines.extend(f"  {p}" for p in self.problems)
        else:
            lines.append("Problems: none")
        return "\n".join(lines)


def parse_cnmc_name(name: str) -> dict | None:
    """Parse a C-NMC cell file name (also ``allnet augment``'s ``..._aug<k>_all.bmp`` copies).

    Returns
    -------
    dict or None
        ``{"subject", "image", "cell", "label"}`` (subject lower-cased, label ``ALL``/``HEM``)
        or None when ``name`` is not a C-NMC cell name.

    Examples
    --------
    >>> parse_cnmc_name("UID_H3_12_1_hem.bmp")
    {'subject': 'h3', 'image': 12, 'cell': 1, 'label': 'HEM'}
    """
    m = _CNMC_NAME.match(Path(name).name)
    if m is None:
        return None
    return {
        "subject": m.group(1).lower(),
        "image": int(m.group(2)),
        "cell": int(m.group(3)),
        "label": m.group(4).upper(),
    }


def class_of_folder(name: str) -> str | None:
    """Map a class folder name to ``"ALL"``/``"HEM"`` (case-insensitive), or None."""
    return _CLASS_FOLDERS.get(name.lower())


def _fold_of(path: Path, root: Path) -> str:
    for part in path.relative_to(root).parts[:-1]:
        m = _FOLD_DIR.match(part)
        if m:
            return m.group(1)
    return ""


def _read_subjects_csv(root: Path, problems: list[Problem]) -> dict[str, str]:
    csv = root / "subjects.csv"
    if not csv.is_file():
        return {}
    try:
        table = pd.read_csv(csv, dtype=str)
    except Exception as exc:
        problems.append(Problem("error", f"cannot read subjects.csv ({exc})", str(csv)))
        return {}
    missing = {"file", "subject"} - set(table.columns)
    if missing:
        problems.append(Problem(
            "error", f"subjects.csv needs columns 'file' and 'subject' (missing {sorted(missing)})",
            str(csv)))
        return {}
    return {str(f).replace("\\", "/"): str(s).strip().lower()
            for f, s in zip(table["file"], table["subject"], strict=True)}


def _read_prelim_labels(folder: Path, problems: list[Problem]) -> dict[str, tuple[str, str]]:
    """``{file name: (label, subject)}`` from the preliminary-test labels CSV, if present."""
    candidates = sorted(folder.parent.glob(folder.name + "_labels.csv"))
    candidates += sorted(folder.glob("*labels*.csv"))
    if not candidates:
        return {}
    csv = candidates[0]
    try:
        table = pd.read_csv(csv, dtype=str)
    except Exception as exc:
        problems.append(Problem("error", f"cannot read labels CSV ({exc})", str(csv)))
        return {}
    cols = {c.lower(): c for c in table.columns}
    if not {"new_names", "labels"} <= set(cols):
        problems.append(Problem(
            "error", "labels CSV needs columns 'new_names' and 'labels'", str(csv)))
        return {}
    out = {}
    for _, row in table.iterrows():
        raw = str(row[cols["labels"]]).strip().lower()
        label = {"1": "ALL", "all": "ALL", "0": "HEM", "hem": "HEM"}.get(raw, "")
        parsed = parse_cnmc_name(str(row[cols["patient_id"]])) if "patient_id" in cols else None
        out[str(row[cols["new_names"]]).strip()] = (label, parsed["subject"] if parsed else "")
    return out


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


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _find_duplicates(paths: list[Path], problems: list[Problem]) -> None:
    by_size: dict[int, list[Path]] = defaultdict(list)
    for p in paths:
        by_size[p.stat().st_size].append(p)
    by_hash: dict[str, list[Path]] = defaultdict(list)
    for group in by_size.values():
        if len(group) > 1:
            for p in group:
                by_hash[_sha256(p)].append(p)
    for group in by_hash.values():
        if len(group) > 1:
            first, *rest = sorted(group)
            for p in rest:
                problems.append(Problem("error", f"duplicate of {first} (same bytes)", str(p)))


def scan(root: str | os.PathLike, verify: bool = True, duplicates: bool = True) -> DatasetReport:
    """List the labelled images under ``root`` and collect every problem.

    Parameters
    ----------
    root : path-like
        Dataset folder (any of the layouts in the module docstring).
    verify : bool
        Decode every image with :func:`~allnet_core.io.read_rgb` to find unreadable files.
    duplicates : bool
        Hash files of equal size to find duplicates.

    Returns
    -------
    DatasetReport
        ``table`` has the columns :data:`COLUMNS`, one row per usable image, sorted by path.
    """
    root = Path(root)
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
            folder_label = class_of_folder(parent)
            if folder_label is not None and folder_label != parsed["label"]:
                problems.append(Problem(
                    "error", f"file name says {parsed['label']} but it is in folder "
                    f"'{parent}'", str(p)))
                continue
            rows.append((str(p), parsed["label"], parsed["subject"], _fold_of(p, root), "cnmc"))
            continue
        # Plain layout: the nearest ancestor folder (below root) that names a class.
        label = next((class_of_folder(part) for part in reversed(rel.parts[:-1])
                      if class_of_folder(part)), None)
        if label is None:
            if len(rel.parts) > 1:
                problems.append(Problem(
                    "error", f"unknown class folder '{rel.parts[0]}' (expected one of "
                    f"{', '.join(sorted(_CLASS_FOLDERS))})", str(p)))
            else:
                problems.append(Problem("error", "no label: image lies directly in the root; "
                                        "put it in a class folder (all/ or hem/)", str(p)))
            continue
        key = rel.as_posix()
        subject = subjects_map.get(key) or subjects_map.get(p.name)
        if subject is None:
            own_subject += 1
            subject = f"img:{rel.with_suffix('').as_posix()}"
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
    elif len(table):
        classes = sorted(set(table["label"]))
        if len(classes) < 2:
            problems.append(Problem(
                "error", f"only one class ({classes[0]}) found; training needs both ALL and HEM",
                str(root)))
    table = table.sort_values("path", kind="stable").reset_index(drop=True)
    return DatasetReport(root=root, table=table, problems=problems)


def discover(root: str | os.PathLike, verify: bool = True) -> pd.DataFrame:
    """Table of the labelled images under ``root``, one row per image.

    Parameters
    ----------
    root : path-like
        Dataset folder (see the module docstring for the layouts).
    verify : bool
        Decode every image first, so unreadable files are reported before work starts.

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
    report = scan(root, verify=verify)
    report.raise_if_errors()
    for w in report.warnings:
        log.warning("%s", w)
    return report.table


def read_listing(path: str | os.PathLike) -> pd.DataFrame:
    """Read an official sha256 listing (TSV: ``sha256``, ``size_bytes``, path column)."""
    path = Path(path)
    try:
        table = pd.read_csv(path, sep="\t", dtype=str)
    except Exception as exc:
        raise DatasetError(f"{path}: cannot read listing ({exc})") from exc
    if table.shape[1] < 3 or "sha256" not in table.columns:
        raise DatasetError(f"{path}: a listing needs columns sha256, size_bytes and a path")
    table = table.rename(columns={table.columns[2]: "path"})
    return table[["sha256", "size_bytes", "path"]]


def compare_with_listing(root: str | os.PathLike, listing: str | os.PathLike) -> dict:
    """Compare the files under ``root`` with an official listing.

    Local files are keyed by their path from the ``C-NMC_Leukemia`` folder (or from
    ``root`` when there is none). Only listing entries inside the part of the release that
    ``root`` holds are expected: a root at ``.../training_data/fold_0`` is not blamed for
    missing test files.

    Returns
    -------
    dict
        ``matching``, ``differing``, ``missing``, ``extra``: lists of listing-style paths,
        and ``expected``: how many listing entries fall inside the scope.
    """
    root = Path(root).resolve()
    official = read_listing(listing)
    anchor = official["path"].str.split("/").str[0].mode()
    anchor = anchor.iloc[0] if len(anchor) else ""
    if anchor and anchor in root.parts:
        i = root.parts.index(anchor)
        scope = "/".join(root.parts[i:]) + "/"
        base = Path(*root.parts[:i])
    else:
        scope = ""
        base = root
    local = {}
    for p in sorted(q for q in root.rglob("*") if q.is_file()):
        local[p.relative_to(base).as_posix()] = p
    expected = official[official["path"].str.startswith(scope)] if scope else official
    sha = dict(zip(expected["path"], expected["sha256"], strict=True))
    matching, differing, missing = [], [], []
    for path, digest in sha.items():
        p = local.get(path)
        if p is None:
            missing.append(path)
        elif _sha256(p) == digest:
            matching.append(path)
        else:
            differing.append(path)
    extra = sorted(k for k in local if k not in sha)
    return {"expected": len(sha), "matching": matching, "differing": differing,
            "missing": missing, "extra": extra}
