"""The plots of reports: accuracy and loss curves, the confusion matrix, the reliability
diagram.

matplotlib's object API with the Agg canvas (``matplotlib.figure.Figure``), so nothing
here touches pyplot's global state or a GUI backend. Files are written atomically.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from allnet_core.classes import CLASS_NAMES
from allnet_core.io import atomic_write

__all__ = ["plot_confusion", "plot_curves", "plot_reliability"]


def _save_figure(fig, path: Path) -> Path:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)
    with atomic_write(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
    return path


def plot_curves(histories: Mapping[int, pd.DataFrame], path: str | os.PathLike) -> Path:
    """Accuracy and loss per epoch for each fold (training solid, validation dashed).

    Epoch ticks are whole numbers; a fold with a single epoch is drawn as markers (a line
    needs two points).

    Parameters
    ----------
    histories : dict of int to pandas.DataFrame
        Fold number to its ``history.csv`` table (``epoch``, ``loss``, ``accuracy``,
        ``val_loss``, ``val_accuracy``).
    path : path-like
        PNG file to write.
    """
    return _save_figure(_curves_figure(histories), Path(path))


def _curves_figure(histories: Mapping[int, pd.DataFrame]):
    """The figure of :func:`plot_curves`."""
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    fig = Figure(figsize=(11, 4.2))
    ax_acc, ax_loss = fig.subplots(1, 2)
    colors = [f"C{i}" for i in range(10)]
    for i, (fold, h) in enumerate(sorted(histories.items())):
        # one epoch is one point per curve: markers, filled for training, open for validation
        train = {"color": colors[i % len(colors)], "marker": "o" if len(h) == 1 else None}
        val = {**train, "ls": "--", "mfc": "none"}
        ax_acc.plot(h["epoch"], 100 * h["accuracy"], label=f"fold {fold} train", **train)
        ax_acc.plot(h["epoch"], 100 * h["val_accuracy"], label=f"fold {fold} val", **val)
        ax_loss.plot(h["epoch"], h["loss"], label=f"fold {fold} train", **train)
        ax_loss.plot(h["epoch"], h["val_loss"], label=f"fold {fold} val", **val)
    ax_acc.set(xlabel="epoch", ylabel="accuracy (%)", title="Accuracy per epoch")
    ax_loss.set(xlabel="epoch", ylabel="categorical cross-entropy", title="Loss per epoch")
    for ax in (ax_acc, ax_loss):
        ax.grid(alpha=0.3)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))  # whole epochs
    ax_loss.legend(fontsize=7, ncol=2)
    return fig


def plot_confusion(metrics: Mapping[str, Any], path: str | os.PathLike,
                   title: str = "Confusion matrix") -> Path:
    """A 2x2 confusion matrix (rows: truth, columns: prediction; counts and row %).

    Parameters
    ----------
    metrics : dict
        Holds ``tn``, ``fp``, ``fn``, ``tp`` (from :func:`~allnet_core.metrics.binary_metrics`).
    path : path-like
        PNG file to write.
    title : str
        Figure title.
    """
    from matplotlib.figure import Figure

    cm = np.array([[metrics["tn"], metrics["fp"]], [metrics["fn"], metrics["tp"]]], float)
    rows = cm.sum(axis=1, keepdims=True)
    frac = np.divide(cm, rows, out=np.zeros_like(cm), where=rows > 0)
    fig = Figure(figsize=(4.6, 4.0))
    ax = fig.subplots()
    im = ax.imshow(frac, cmap="Blues", vmin=0, vmax=1)
    names = CLASS_NAMES  # rows and columns: index 0 is HEM (negative), 1 is ALL
    ax.set_xticks([0, 1], labels=[f"pred. {n}" for n in names])
    ax.set_yticks([0, 1], labels=[f"true {n}" for n in names])
    for i in range(2):
        for j in range(2):
            ax.text(j, i, f"{int(cm[i, j])}\n{100 * frac[i, j]:.1f}%", ha="center",
                    va="center", color="white" if frac[i, j] > 0.5 else "black", fontsize=11)
    ax.set_title(title)
    fig.colorbar(im, ax=ax, fraction=0.046, label="fraction of true class")
    return _save_figure(fig, Path(path))


def plot_reliability(summary: Mapping[str, Any], path: str | os.PathLike,
                     title: str = "Reliability on the hold-out") -> Path:
    """A reliability diagram: fraction truly ALL against mean P(ALL) per bin, before and
    after calibration, the diagonal of perfect calibration, and the cells per bin.

    Parameters
    ----------
    summary : dict
        Holds ``reliability_before``, ``reliability_after``, ``ece_before``,
        ``ece_after`` (from :func:`allnet_core.model.calibration.calibration_summary` or
        a card's ``holdout``).
    path : path-like
        PNG file to write.
    """
    from matplotlib.figure import Figure

    fig = Figure(figsize=(5.2, 4.6))
    ax = fig.subplots()
    ax.plot([0, 1], [0, 1], color="0.6", ls=":", label="perfect calibration")
    for key, color, name in (("before", "#d55e00", "raw"), ("after", "#0072b2", "calibrated")):
        r = summary[f"reliability_{key}"]
        conf = np.asarray(r["confidence"], float)
        acc = np.asarray(r["accuracy"], float)
        used = np.isfinite(conf) & np.isfinite(acc)
        ece = summary.get(f"ece_{key}")
        ece = "n/a" if ece is None or not np.isfinite(ece) else f"{float(ece):.3f}"
        ax.plot(conf[used], acc[used], "o-", color=color, label=f"{name} (ECE {ece})")
    edges = np.asarray(summary["reliability_after"]["edges"], float)
    counts = np.asarray(summary["reliability_after"]["count"], float)
    twin = ax.twinx()
    twin.bar(edges[:-1], counts, width=np.diff(edges), align="edge", color="0.85",
             zorder=0)
    twin.set_ylabel("cells per bin (calibrated)")
    ax.set_zorder(twin.get_zorder() + 1)
    ax.patch.set_visible(False)
    ax.set(xlim=(0, 1), ylim=(0, 1), xlabel="mean P(ALL) in bin", ylabel="fraction truly ALL",
           title=title)
    ax.legend(loc="upper left", fontsize=8)
    return _save_figure(fig, Path(path))
