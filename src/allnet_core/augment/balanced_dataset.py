"""``allnet augment`` on disk: a class-balanced, augmented copy of a whole dataset.

:func:`write_balanced_dataset` plans with :func:`~allnet_core.augment.balance_plan`, then
copies originals byte for byte and writes each augmented copy under a name that keeps the
C-NMC subject (:func:`_copy_name`), so the output is itself a dataset.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path, PurePath
from typing import Any

import numpy as np

from allnet_core.augment.augmenter import Augmenter
from allnet_core.augment.balance import MAX_REDRAWS, balance_plan
from allnet_core.augment.params import apply_params
from allnet_core.errors import ConfigError, DatasetError
from allnet_core.io import atomic_write, read_rgb, write_csv, write_image, write_json
from allnet_core.progress import check_cancel, emit

__all__ = ["write_balanced_dataset"]

_LOSSLESS_SUFFIXES = (".bmp", ".png", ".tif", ".tiff")
_CNMC_STEM = re.compile(r"^(UID_.+)_(all|hem)$", re.IGNORECASE)
#: Columns of the written plan (``augment_plan.csv``), in order.
_PLAN_COLUMNS = ["file", "source", "label", "subject", "fold", "index", "augment", "copy",
                 "params"]


def _copy_name(source_name: str, copy: int) -> str:
    """``UID_11_1_2_all.bmp`` -> ``UID_11_1_2_aug3_all.bmp``; else ``<stem>_aug3<suffix>``."""
    p = PurePath(source_name)
    suffix = p.suffix if p.suffix.lower() in _LOSSLESS_SUFFIXES else ".png"
    m = _CNMC_STEM.match(p.stem)
    if m:
        return f"{m.group(1)}_aug{copy}_{m.group(2)}{suffix}"
    return f"{p.stem}_aug{copy}{suffix}"


def write_balanced_dataset(table, out: str | os.PathLike, per_class: int | None = 6000,
                           seed: int = 0, augmenter: Augmenter | None = None,
                           workers: int | None = None, progress=None, cancel=None):
    """Write a class-balanced, augmented copy of a dataset to ``out`` (the paper's Fig. 8).

    The plan comes from :func:`balance_plan` over the whole table. Originals are copied
    byte for byte; augmented copies are written losslessly (the source's format for BMP,
    PNG and TIFF, PNG for JPEG sources). The output is a dataset that
    :func:`allnet_core.datasets.discover` reads with the same labels, subjects and folds:

    * ``out/[fold_<N>/]{all,hem}/<file>``: the fold folder is kept when the source had one;
    * copies are named ``UID_<subject>_<image>_<cell>_aug<k>_{all,hem}.bmp`` for C-NMC
      sources and ``<stem>_aug<k><suffix>`` otherwise, so the subject stays in the name;
    * ``out/subjects.csv`` (``file``, ``subject``) maps every file to its subject;
    * ``out/augment_plan.csv``: for every output file its source, label, subject and
      parameters (a copy that came out byte-identical to its original or to another copy
      of it is redrawn, and the final parameters are recorded);
    * ``out/augment.json``: the settings.

    This augments *before* any split, as the paper did; near-copies of one cell then land
    on both sides of a later per-image split. ``allnet train`` instead balances the
    training part of each split only.

    Parameters
    ----------
    table : pandas.DataFrame
        From :func:`allnet_core.datasets.discover` (``path``, ``label``, ``subject``,
        ``fold``).
    out : path-like
        Output folder; must not exist or be empty.
    per_class, seed, augmenter
        As for :func:`balance_plan`.
    workers : int, optional
        Threads writing files (default ``min(4, cpu_count)``).
    progress : callable, optional
        Receives ``{"kind": "file", "done": n, "total": N}`` events.
    cancel : CancelToken, optional
        Checked between source images.

    Returns
    -------
    pandas.DataFrame
        The written plan (as in ``augment_plan.csv``).
    """
    import pandas as pd

    out = Path(out)
    _check_inputs(table, out)
    augmenter = augmenter or Augmenter()
    table = table.reset_index(drop=True)
    plan = balance_plan(table["label"], per_class=per_class, seed=seed, augmenter=augmenter)
    folds = table["fold"].astype(str) if "fold" in table.columns else pd.Series([""] * len(table))
    plan = plan.assign(file=_output_files(plan, table["path"], folds))
    writer = _SourceWriter(out, plan, seed, augmenter)
    _write_all(table["path"], writer, workers, progress, cancel)
    plan["params"] = writer.params
    plan = plan.assign(
        source=[str(table.at[i, "path"]) for i in plan["index"]],
        subject=[str(table.at[i, "subject"]) for i in plan["index"]],
        fold=[folds[i] for i in plan["index"]],
    )[_PLAN_COLUMNS]
    counts = _write_records(out, plan, {"per_class": per_class, "seed": seed,
                                        "augmenter": augmenter.to_dict()}, len(table))
    emit(progress, "done", total=len(plan), counts=counts)
    return plan


def _check_inputs(table, out: Path) -> None:
    """Refuse a non-empty output folder and a table without the needed columns."""
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ConfigError(f"{out}: output folder exists and is not empty; choose a new folder")
    missing = {"path", "label", "subject"} - set(table.columns)
    if missing:
        raise DatasetError(f"dataset table lacks column(s) {sorted(missing)}")


def _output_files(plan, paths, folds) -> list[str]:
    """Each plan row's path relative to the output: decided up front, unique, deterministic.

    ``[fold_<N>/]<label>/<name>``; a name already taken (case-insensitively) gets ``_<n>``.
    """
    used: set[str] = set()
    files = []
    for r in plan.itertuples(index=False):
        src = PurePath(paths[r.index])
        folder = (f"fold_{folds[r.index]}/" if folds[r.index] else "") + str(r.label).lower()
        name = src.name if not r.augment else _copy_name(src.name, int(r.copy))
        rel = f"{folder}/{name}"
        n = 1
        while rel.lower() in used:
            stem, suffix = os.path.splitext(name)
            rel = f"{folder}/{stem}_{n}{suffix}"
            n += 1
        used.add(rel.lower())
        files.append(rel)
    return files


def _digest(image: np.ndarray) -> bytes:
    return hashlib.sha256(image.tobytes()).digest()


@dataclass
class _SourceWriter:
    """Writes the output files of one source image at a time (thread-safe across sources).

    ``params`` starts as the plan's parameters; a copy that came out byte-identical to its
    original or to an earlier copy of it is redrawn, and its final parameters replace the
    planned ones.
    """

    out: Path
    plan: Any  # pandas.DataFrame with a ``file`` column
    seed: int
    augmenter: Augmenter
    params: list[str] = field(init=False)

    def __post_init__(self) -> None:
        self.params = list(self.plan["params"])

    def write_source(self, index: int, src: Path, rows: list[int]) -> None:
        """Copy (originals) or augment and write (copies) the plan ``rows`` of one source."""
        original = None
        seen: set[bytes] = set()
        for i in rows:
            dest = self.out / self.plan.at[i, "file"]
            dest.parent.mkdir(parents=True, exist_ok=True)
            if not self.plan.at[i, "augment"]:
                with atomic_write(dest) as tmp:
                    shutil.copyfile(src, tmp)
                continue
            if original is None:
                original = read_rgb(src)
                seen.add(_digest(original))
            image, self.params[i] = self._unique_copy(
                original, self.params[i], seen, [index, int(self.plan.at[i, "copy"])])
            write_image(dest, image)

    def _unique_copy(self, original: np.ndarray, params: str, seen: set[bytes],
                     key: list[int]) -> tuple[np.ndarray, str]:
        """Apply ``params``, redrawing (under ``seed`` and ``key``) while the result repeats."""
        for attempt in range(MAX_REDRAWS + 1):
            image = apply_params(original, params)
            digest = _digest(image)
            if digest not in seen:
                break
            redraw = np.random.default_rng([self.seed, *key, attempt])
            params = json.dumps(self.augmenter.sample_params(redraw), sort_keys=True)
        seen.add(digest)
        return image, params


def _write_all(paths, writer: _SourceWriter, workers: int | None, progress, cancel) -> None:
    """Run ``writer`` over every source on a thread pool, with progress and cancelling."""
    groups = writer.plan.groupby("index", sort=True).indices
    total, done = len(writer.plan), 0
    emit(progress, "start", total=total)
    n_workers = workers or max(1, min(4, os.cpu_count() or 1))
    with ThreadPoolExecutor(max_workers=n_workers) as pool:
        futures = []
        for index, rows in groups.items():
            job = pool.submit(writer.write_source, int(index), Path(paths[index]),
                              [int(i) for i in rows])
            futures.append((job, len(rows)))
        try:
            for fut, n in futures:
                check_cancel(cancel, "augment")
                fut.result()
                done += n
                emit(progress, "file", done=done, total=total)
        except BaseException:
            for fut, _ in futures:
                fut.cancel()
            raise


def _write_records(out: Path, plan, settings: dict, sources: int) -> dict[str, int]:
    """Write ``subjects.csv``, ``augment_plan.csv`` and ``augment.json``; return the counts."""
    import pandas as pd

    write_csv(out / "subjects.csv",
              pd.DataFrame({"file": plan["file"], "subject": plan["subject"]}))
    write_csv(out / "augment_plan.csv", plan)
    counts = {str(k): int(v) for k, v in plan.groupby("label").size().items()}
    write_json(out / "augment.json", {**settings, "counts": counts, "sources": sources})
    return counts
