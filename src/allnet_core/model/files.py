"""Finding the model file of a path: the one rule set that classify, evaluate and the worker
share.

A path is either a ``.keras`` file, used as it is, or a training run folder written by
:func:`allnet_core.training.cross_validate`, whose best model is found as described in
:func:`find_model_file`.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from allnet_core.errors import ModelError

__all__ = ["find_model_file"]

#: Model file names looked for directly in a folder without ``report.json``, in order.
_FOLDER_MODEL_NAMES = ("model.keras", "best_model.keras")


def find_model_file(path: str | os.PathLike) -> Path:
    """The model file for ``path``: a ``.keras`` file, or the best model of a run folder.

    A run folder written by :func:`allnet_core.training.cross_validate` names its best fold
    in ``report.json`` (``best_fold``: ``fold_<k>/model.keras``; or ``best_model``, a path
    absolute or relative to the folder, also looked up by its last two parts inside the
    folder when the run folder was moved). Without a report the search is: ``model.keras``
    or ``best_model.keras`` in the folder itself, else the only ``*.keras`` file below it
    (checkpoints ``ckpt_*.keras`` ignored); several candidates are an error that lists them.

    Parameters
    ----------
    path : str or path-like
        A model file or a run folder.

    Returns
    -------
    pathlib.Path
        An existing file (not yet checked to be a Keras model).

    Raises
    ------
    ModelError
        If nothing usable is found.

    Examples
    --------
    >>> find_model_file("runs/demo")  # doctest: +SKIP
    PosixPath('runs/demo/fold_2/model.keras')
    """
    p = Path(path)
    if not p.exists():
        raise ModelError(f"{p}: no such model file or run folder")
    if p.is_file():
        return p
    report = p / "report.json"
    if report.is_file():
        return _best_from_report(p, report)
    for name in _FOLDER_MODEL_NAMES:
        if (p / name).is_file():
            return p / name
    found = sorted(f for f in p.rglob("*.keras") if not f.name.startswith(("ckpt_", ".")))
    if len(found) == 1:
        return found[0]
    if not found:
        raise ModelError(f"{p}: the folder holds no .keras model file")
    listing = ", ".join(str(f.relative_to(p)) for f in found[:6])
    raise ModelError(
        f"{p}: the folder holds {len(found)} models ({listing}{', ...' if len(found) > 6 else ''}) "
        "and no report.json naming the best; pass one model file"
    )


def _best_from_report(run: Path, report: Path) -> Path:
    """The best model that a run folder's ``report.json`` names."""
    try:
        info = json.loads(report.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ModelError(f"{report}: not readable JSON ({exc})") from exc
    candidates = []
    if isinstance(info, dict) and info.get("best_fold") is not None:
        candidates.append(run / f"fold_{info['best_fold']}" / "model.keras")
    if isinstance(info, dict) and info.get("best_model"):
        best = Path(info["best_model"])
        candidates.append(best if best.is_absolute() else run / best)
        candidates.append(run / best.parent.name / best.name)  # the run folder was moved
    candidates = list(dict.fromkeys(candidates))
    for c in candidates:
        if c.is_file():
            return c
    raise ModelError(
        f"{run}: report.json names the best model "
        f"({', '.join(str(c) for c in candidates) or 'none'}) but the file is missing"
    )
