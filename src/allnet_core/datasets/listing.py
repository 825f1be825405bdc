"""Comparing a dataset folder with an official sha256 listing (``allnet data check
--against-listing``), and the file hash it uses.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pandas as pd

from allnet_core.errors import DatasetError

__all__ = ["compare_with_listing", "file_sha256", "read_listing"]


def file_sha256(path: str | os.PathLike) -> str:
    """Hex sha256 of a file's bytes, read in 1 MiB chunks; of a folder (e.g. a ``.zarr``
    image): of its files' relative names and bytes, in sorted order."""
    h = hashlib.sha256()
    path = Path(path)
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for f in files:
        if path.is_dir():
            h.update(f.relative_to(path).as_posix().encode() + b"\0")
        with open(f, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()


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
        elif file_sha256(p) == digest:
            matching.append(path)
        else:
            differing.append(path)
    extra = sorted(k for k in local if k not in sha)
    return {"expected": len(sha), "matching": matching, "differing": differing,
            "missing": missing, "extra": extra}
