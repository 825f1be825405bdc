"""How labels, subjects and folds are read from names: C-NMC file names, class folders,
``fold_<N>`` folders, ``subjects.csv`` and the preliminary-test labels CSV.

See :mod:`allnet_core.datasets` for the layouts.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path

import pandas as pd

from allnet_core.classes import CLASS_NAMES
from allnet_core.datasets.report import Problem
from allnet_core.errors import ConfigError

__all__ = ["class_of_folder", "parse_class_map", "parse_cnmc_name"]

# ``_aug<k>`` marks an augmented copy written by ``allnet augment``; it keeps the subject.
_CNMC_NAME = re.compile(r"^UID_([A-Za-z]*\d+)_(\d+)_(\d+)(?:_aug\d+)?_(all|hem)\.[A-Za-z]+$",
                        re.IGNORECASE)
_FOLD_DIR = re.compile(r"^fold_(\d+)$", re.IGNORECASE)
_CLASS_FOLDERS = {
    "all": "ALL", "blast": "ALL", "blasts": "ALL", "leukemia": "ALL", "leukaemia": "ALL",
    "hem": "HEM", "normal": "HEM", "healthy": "HEM",
}
_PRELIM_DIR = "c-nmc_test_prelim_phase_data"


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


def class_of_folder(name: str, classes: Mapping[str, str] | None = None) -> str | None:
    """Map a class folder name to ``"ALL"``/``"HEM"`` (case-insensitive), or None.

    ``classes`` maps other folder names (e.g. another dataset's ``{"blast": "ALL",
    "normal": "HEM"}``, see :func:`parse_class_map`); it is checked before the built-in
    names.
    """
    key = name.lower()
    if classes:
        mapped = {str(k).lower(): v for k, v in classes.items()}.get(key)
        if mapped is not None:
            return mapped
    return _CLASS_FOLDERS.get(key)


def parse_class_map(spec: str | os.PathLike | Mapping[str, str] | None) -> dict[str, str]:
    """A folder-name-to-class mapping from ``"blast=ALL,normal=HEM"`` or a small file.

    Parameters
    ----------
    spec : str, path-like, mapping or None
        ``"name=CLASS,name=CLASS"``; or the path of a text file with one ``name=CLASS``
        (or ``name,CLASS``) per line, ``#`` starting a comment; or a mapping. Class names
        are ``ALL`` or ``HEM`` in any case; folder names match case-insensitively.

    Returns
    -------
    dict
        ``{folder name (lower-cased): "ALL" | "HEM"}``; empty for None or ``""``.

    Raises
    ------
    ConfigError
        For an entry without ``=``, an empty name or a class other than ALL/HEM.

    Examples
    --------
    >>> parse_class_map("Blast=all, normal=HEM")
    {'blast': 'ALL', 'normal': 'HEM'}
    """
    if not spec:
        return {}
    if isinstance(spec, Mapping):
        items, where = [(str(k), str(v)) for k, v in spec.items()], "class mapping"
    else:
        path = Path(spec)
        if path.is_file():
            lines = path.read_text(encoding="utf-8").splitlines()
            entries = [line.split("#", 1)[0].strip() for line in lines]
            where = str(path)
        else:
            entries, where = str(spec).split(","), "class mapping"
        items = [_split_entry(e, where) for e in entries if e.strip()]
    out = {}
    for name, cls in items:
        label = cls.strip().upper()
        if not name.strip() or label not in CLASS_NAMES:
            raise ConfigError(f"{where}: {name.strip()}={cls.strip()} is not a folder name "
                              f"mapped to one of {', '.join(sorted(CLASS_NAMES))}")
        out[name.strip().lower()] = label
    return out


def _split_entry(entry: str, where: str) -> tuple[str, str]:
    for sep in ("=", ","):
        if sep in entry:
            name, cls = entry.split(sep, 1)
            return name, cls
    raise ConfigError(f"{where}: {entry.strip()!r} is not NAME=CLASS (e.g. blast=ALL)")


def _fold_of(path: Path, root: Path) -> str:
    for part in path.relative_to(root).parts[:-1]:
        m = _FOLD_DIR.match(part)
        if m:
            return m.group(1)
    return ""


def _read_csv(csv: Path, what: str, problems: list[Problem]) -> pd.DataFrame | None:
    """Read a side CSV as text; record an error naming ``what`` and return None if unreadable."""
    try:
        return pd.read_csv(csv, dtype=str)
    except Exception as exc:
        problems.append(Problem("error", f"cannot read {what} ({exc})", str(csv)))
        return None


def _read_subjects_csv(root: Path, problems: list[Problem]) -> dict[str, str]:
    csv = root / "subjects.csv"
    if not csv.is_file():
        return {}
    table = _read_csv(csv, "subjects.csv", problems)
    if table is None:
        return {}
    missing = {"file", "subject"} - set(table.columns)
    if missing:
        problems.append(Problem(
            "error", f"subjects.csv needs columns 'file' and 'subject' (missing {sorted(missing)})",
            str(csv)))
        return {}
    out, empty = {}, []
    for line, (f, s) in enumerate(zip(table["file"], table["subject"], strict=True), start=2):
        if pd.isna(f) or not str(f).strip() or pd.isna(s) or not str(s).strip():
            empty.append(f"line {line}" + ("" if pd.isna(f) else f" ({str(f).strip()})"))
            continue
        out[str(f).strip().replace("\\", "/")] = str(s).strip().lower()
    if empty:
        shown = ", ".join(empty[:5]) + (f" and {len(empty) - 5} more" if len(empty) > 5 else "")
        problems.append(Problem(
            "error", f"subjects.csv has {len(empty)} row(s) with an empty 'file' or 'subject' "
            f"cell: {shown}; fill them in or delete those rows", str(csv)))
    return out


def _read_prelim_labels(folder: Path, problems: list[Problem]) -> dict[str, tuple[str, str]]:
    """``{file name: (label, subject)}`` from the preliminary-test labels CSV, if present."""
    candidates = sorted(folder.parent.glob(folder.name + "_labels.csv"))
    candidates += sorted(folder.glob("*labels*.csv"))
    if not candidates:
        return {}
    csv = candidates[0]
    table = _read_csv(csv, "labels CSV", problems)
    if table is None:
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
