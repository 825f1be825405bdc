"""What "Train ALLNet" shows when a run ends: the Table-3-style summary and the verdict on
the best model.

Rows: each fold, ``mean ± std`` over folds and the hold-out score of the best fold; columns
the paper's metrics, as in the run's ``report.md``. The verdict is the model card's
headline and warnings (:func:`allnet_core.model.card.assess`).
"""

from __future__ import annotations

import math
from typing import Any

from magicgui.widgets import Table

from allnet_core.report import TABLE_METRICS, mean_std

__all__ = ["METRICS", "compact_table", "metrics_table", "model_verdict"]

#: Metric columns of the Table-3-style summary, in the paper's order (as in report.md).
METRICS = tuple(key for key, _ in TABLE_METRICS)


def metrics_table(folds: list[dict[str, Any]], holdout: dict[str, Any] | None,
                  best_fold: int | None = None) -> dict[str, Any]:
    """The Table-3-style summary as magicgui ``Table`` data (percentages).

    Rows: each fold, ``mean ± std`` over folds, and the hold-out score of the best fold.
    The mean and (sample) standard deviation are :func:`allnet_core.report.mean_std`'s,
    as in the run's ``report.md``.
    """

    def pct(v):
        return "" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{100 * v:.1f}"

    rows, index = [], []
    for i, m in enumerate(folds, 1):
        rows.append([pct(m.get(k)) for k in METRICS])
        index.append(f"fold {m.get('fold', i)}")
    if folds:
        stats = mean_std(folds)
        rows.append([_mean_pm_std(stats[k]) for k in METRICS])
        index.append("mean ± std")
    if holdout:
        rows.append([pct(holdout.get(k)) for k in METRICS])
        index.append(f"hold-out (fold {best_fold or holdout.get('fold', '?')})")
    return {"data": rows, "index": index, "columns": list(METRICS)}


def _mean_pm_std(stat: dict[str, float]) -> str:
    """``"mean ± std"`` in percent; the mean alone when the std is undefined (one fold)."""
    mean, std = stat["mean"], stat["std"]
    if not math.isfinite(mean):
        return ""
    if not math.isfinite(std):
        return f"{100 * mean:.1f}"
    return f"{100 * mean:.1f} ± {100 * std:.1f}"


def plain_table(table: Table) -> None:
    """Show cells as given (magicgui's delegate would reformat "69.4" as "69.4000") and
    size columns to their content."""
    from qtpy.QtWidgets import QHeaderView, QStyledItemDelegate

    table.native.setItemDelegate(QStyledItemDelegate(table.native))
    table.native.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeToContents)


def compact_table(table: Table) -> None:
    """Tall enough for every row, but never wider than the dock: wide tables scroll
    sideways instead of pushing the dock (and squeezing the canvas)."""
    from qtpy.QtCore import Qt
    from qtpy.QtWidgets import QSizePolicy

    native = table.native
    native.resizeColumnsToContents()
    native.setMinimumWidth(0)
    native.setHorizontalScrollBarPolicy(Qt.ScrollBarAsNeeded)
    native.setSizePolicy(QSizePolicy.Ignored, QSizePolicy.Fixed)
    height = (native.horizontalHeader().height() + 2 * native.frameWidth()
              + sum(native.rowHeight(r) for r in range(native.rowCount()))
              + native.horizontalScrollBar().sizeHint().height())
    native.setFixedHeight(height)


def model_verdict(result: dict[str, Any]) -> tuple[str, bool]:
    """How good the run's best model is, and whether to offer it to "Classify cells".

    Returns
    -------
    text : str
        The card's headline and warnings, and what happens to the model.
    offer : bool
        False for a model whose hold-out is at chance (its MCC interval includes 0) or
        that has no usable card: it is not selected in "Classify cells", and ``text`` says
        so and where the file is.
    """
    from allnet_core.model.card import assess, read_card

    best = result.get("best_model")
    verdict = assess(read_card(best, verify=False) if best else None)
    text = f"Done (fold {result.get('best_fold')}). {verdict.headline}."
    text += "".join(f" WARNING: {w}" for w in verdict.warnings)
    if not best:
        return text, False
    if verdict.at_chance or verdict.untested:
        return (text + " The model is NOT selected in 'Classify cells'; to try it anyway, "
                f"choose 'model file' there and pick {best}.", False)
    return text + " Best model selected in 'Classify cells'.", True
