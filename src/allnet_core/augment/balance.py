"""Class balancing: :func:`balance_plan` says, for every sample of a balanced training
set, which original it comes from and which augmentation parameters turn it into the copy.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

import numpy as np

from allnet_core.augment.augmenter import Augmenter
from allnet_core.classes import CLASS_NAMES
from allnet_core.errors import ConfigError, DatasetError

__all__ = ["balance_plan"]

#: Draws of parameters tried before accepting a repeat (a copy like an earlier one).
MAX_REDRAWS = 50


def _resolve_classes(values: list, classes: Sequence | None) -> tuple:
    if classes is not None:
        return tuple(classes)
    present = set(values)
    for candidate in (CLASS_NAMES, (0, 1)):
        if present <= set(candidate):
            return candidate
    try:
        return tuple(sorted(present))
    except TypeError:
        return tuple(sorted(present, key=str))


def balance_plan(labels: Sequence, per_class: int | None = 6000, seed: int = 0,
                 augmenter: Augmenter | None = None,
                 classes: Sequence | None = None):
    """Plan a class-balanced training set of ``per_class`` samples per class.

    A class with more originals than ``per_class`` is subsampled (without replacement,
    under ``seed``). A class with fewer keeps every original once, as is, and is filled
    with augmented copies spread evenly over its originals: the originals are shuffled once
    and copies go round-robin, so no original gets more than one copy more than another.
    Parameters are redrawn (up to 50 times) when they repeat those of an earlier copy of
    the same original, so copies of one original differ.

    Give it the training part of a split only: the plan refers to rows of ``labels`` by
    position and never to anything else, so hold-out and validation images cannot leak in.

    Parameters
    ----------
    labels : sequence
        Class label of each training image (e.g. ``"ALL"``/``"HEM"``), in the order of the
        table the plan will index.
    per_class : int or None, optional
        Samples per class after balancing (the paper: 6000). None means the size of the
        largest class.
    seed : int, optional
        Seed for subsampling, the spread of copies and the augmentation parameters.
    augmenter : Augmenter, optional
        Draws the parameters of the copies (default ``Augmenter()``).
    classes : sequence, optional
        Classes that must all be present. Default: :data:`~allnet_core.classes.CLASS_NAMES`
        (``("HEM", "ALL")``) for those string labels, ``(0, 1)`` for those integer labels,
        else the labels present.

    Returns
    -------
    pandas.DataFrame
        One row per output sample, classes in ``classes`` order, originals first:

        ``index``   row position (0-based) into ``labels``
        ``label``   the class label
        ``augment`` False for an original used as is, True for an augmented copy
        ``copy``    0 for the original, k for its k-th augmented copy
        ``params``  JSON text of the augmentation parameters (``"{}"`` for originals)

    Raises
    ------
    ConfigError
        If ``per_class`` is not a positive integer.
    DatasetError
        If ``labels`` is empty or a class has no images.

    Examples
    --------
    >>> plan = balance_plan(["ALL"] * 5 + ["HEM"] * 2, per_class=4, seed=0)
    >>> plan.groupby("label").size().to_dict()
    {'ALL': 4, 'HEM': 4}
    >>> int(plan["augment"].sum())
    2
    """
    import pandas as pd

    if per_class is not None and (
        isinstance(per_class, bool) or not isinstance(per_class, (int, np.integer))
        or per_class <= 0
    ):
        raise ConfigError(f"per_class must be a positive integer, got {per_class!r}")
    values = list(np.asarray(labels, dtype=object).ravel()) if len(labels) else []
    if not values:
        raise DatasetError("cannot balance: the list of training labels is empty")
    if augmenter is None:
        augmenter = Augmenter()
    cls = _resolve_classes(values, classes)
    arr = np.array([str(v) for v in values], dtype=object)
    by_class = {c: np.flatnonzero(arr == str(c)) for c in cls}
    missing = [c for c, idx in by_class.items() if idx.size == 0]
    if missing:
        counts = {str(c): int(i.size) for c, i in by_class.items()}
        raise DatasetError(
            f"cannot balance: class(es) {missing} have no images (counts: {counts})"
        )
    stray = sorted({str(v) for v in values} - {str(c) for c in cls})
    if stray:
        raise DatasetError(f"labels {stray} are not among the classes {list(cls)}")
    target = int(per_class) if per_class is not None else max(i.size for i in by_class.values())

    rng = np.random.default_rng(seed)
    rows: list[tuple] = []
    for c in cls:
        idx = by_class[c]
        label = values[idx[0]]
        if idx.size >= target:
            keep = np.sort(rng.choice(idx, size=target, replace=False))
            rows.extend((int(i), label, False, 0, "{}") for i in keep)
            continue
        rows.extend((int(i), label, False, 0, "{}") for i in idx)
        order = rng.permutation(idx)
        seen: dict[int, set[str]] = {}
        for k in range(target - idx.size):
            src = int(order[k % idx.size])
            used = seen.setdefault(src, set())
            for _ in range(MAX_REDRAWS):  # no two copies of one original alike
                text = json.dumps(augmenter.sample_params(rng), sort_keys=True)
                if text not in used and text != "{}":
                    break
            used.add(text)
            rows.append((src, label, True, k // idx.size + 1, text))
    return pd.DataFrame(rows, columns=["index", "label", "augment", "copy", "params"])
