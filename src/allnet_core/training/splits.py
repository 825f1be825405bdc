"""Splits of a dataset table: the hold-out, the folds, and the checks that come first.

:func:`make_splits` assigns every image to the hold-out or to the folds' training and
validation parts, grouped by subject (``split="subject"``) or one by one
(``split="image"``, the paper's protocol). :func:`check_dataset` refuses a table that
cannot support the protocol before any work starts.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pandas as pd

from allnet_core.classes import CLASS_NAMES, POSITIVE_CLASS
from allnet_core.datasets.table import as_table
from allnet_core.errors import AllnetError, DatasetError
from allnet_core.io import read_rgb
from allnet_core.progress import check_cancel, emit
from allnet_core.training.config import TrainConfig

__all__ = ["check_dataset", "make_splits"]


def check_dataset(table: pd.DataFrame, config: TrainConfig) -> None:
    """Raise :class:`DatasetError` if ``table`` cannot support ``config``'s protocol.

    Checks: not empty, labels ALL/HEM only, both classes present, and enough subjects
    (``split="subject"``) or images (``split="image"``) of each class for a hold-out and
    ``config.folds`` validation folds. The message suggests a fix (``--folds N``).
    """
    if len(table) == 0:
        raise DatasetError("the dataset is empty: no labelled images")
    bad = sorted(set(table["label"]) - set(CLASS_NAMES))
    if bad:
        raise DatasetError(f"labels must be ALL or HEM, found {bad}")
    classes = sorted(set(table["label"]))
    if len(classes) < 2:
        raise DatasetError(
            f"the dataset holds only {classes[0]} cells; training needs both ALL and HEM")
    need = config.folds + 1  # one group per class in the hold-out and in each val fold
    if config.split == "subject":
        per_class = table.groupby("label")["subject"].nunique()
        unit = "subjects"
    else:
        per_class = table.groupby("label").size()
        unit = "images"
    fewest = int(per_class.min())
    if fewest < need:
        cls = per_class.idxmin()
        hint = (f"use --folds {fewest - 1}" if fewest - 1 >= 2 else
                "add data" + (" or use --split image (not subject-disjoint)"
                              if config.split == "subject" else ""))
        raise DatasetError(
            f"only {fewest} {cls} {unit}, but a hold-out plus {config.folds} folds needs at "
            f"least {need} {unit} of each class; {hint}")


def _verify_files(paths: list[str], progress, cancel, workers: int = 4) -> None:
    """Decode every image once so that a bad file stops the run before training."""

    def check(p: str) -> str | None:
        try:
            read_rgb(p)
        except AllnetError as exc:
            return str(exc)
        return None

    bad = []
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        for i, problem in enumerate(pool.map(check, paths), 1):
            if problem:
                bad.append(problem)
            if i % 256 == 0 or i == len(paths):
                emit(progress, "check", done=i, total=len(paths))
                check_cancel(cancel, "file check")
    if bad:
        more = f" (and {len(bad) - 5} more)" if len(bad) > 5 else ""
        raise DatasetError("unreadable image(s): " + "; ".join(bad[:5]) + more)



def _holdout_indices(y, groups, config: TrainConfig) -> tuple[np.ndarray, np.ndarray]:
    from sklearn.model_selection import StratifiedGroupKFold, train_test_split

    idx = np.arange(len(y))
    if config.split == "image":
        rest, hold = train_test_split(idx, test_size=config.holdout, stratify=y,
                                      random_state=config.seed)
        return np.sort(rest), np.sort(hold)
    n_splits = max(2, round(1.0 / config.holdout))
    sgkf = StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=config.seed)
    rest, hold = next(sgkf.split(idx, y, groups))
    return rest, hold


def _fold_indices(y, groups, config: TrainConfig):
    from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold

    idx = np.arange(len(y))
    if config.split == "image":
        cv = StratifiedKFold(n_splits=config.folds, shuffle=True, random_state=config.seed)
        return list(cv.split(idx, y))
    cv = StratifiedGroupKFold(n_splits=config.folds, shuffle=True, random_state=config.seed)
    return list(cv.split(idx, y, groups))


def make_splits(table: pd.DataFrame, config: TrainConfig) -> pd.DataFrame:
    """Assign every image to the hold-out or to the folds' training/validation parts.

    Parameters
    ----------
    table : pandas.DataFrame
        Columns ``path``, ``label`` (``"ALL"``/``"HEM"``) and ``subject``, as from
        :func:`allnet_core.datasets.discover`.
    config : TrainConfig
        Uses ``split``, ``holdout``, ``folds`` and ``seed``.

    Returns
    -------
    pandas.DataFrame
        Long format, columns ``path``, ``subject``, ``label``, ``role``. A hold-out image
        has one row (``role="holdout"``); every other image has one row per fold:
        ``fold_<k>_val`` for the fold it validates and ``fold_<k>_train`` for the others
        (``k`` from 1). Deterministic for a given table order and ``config.seed``.

    Raises
    ------
    DatasetError
        If there are too few subjects/images (see :func:`check_dataset`) or a split ends up
        without one of the classes.
    """
    table, _ = as_table(table)
    check_dataset(table, config)
    y = (table["label"] == POSITIVE_CLASS).to_numpy().astype(int)
    groups = table["subject"].to_numpy()
    rest, hold = _holdout_indices(y, groups, config)
    parts = [table.iloc[hold].assign(role="holdout")]
    fold_parts = _fold_indices(y[rest], groups[rest], config)
    for k, (tr, va) in enumerate(fold_parts, 1):
        parts.append(table.iloc[rest[tr]].assign(role=f"fold_{k}_train"))
        parts.append(table.iloc[rest[va]].assign(role=f"fold_{k}_val"))
    splits = pd.concat(parts, ignore_index=True)[["path", "subject", "label", "role"]]
    for role, g in splits.groupby("role"):
        if g["label"].nunique() < 2:
            raise DatasetError(
                f"split '{role}' holds only {g['label'].iloc[0]} cells: too few subjects per "
                f"class for {config.folds} folds; try --folds {max(2, config.folds - 1)} or "
                "add subjects")
    return splits


def _role_table(splits: pd.DataFrame, role: str) -> pd.DataFrame:
    return splits[splits["role"] == role].reset_index(drop=True)

