"""Reports of training runs and evaluations: Markdown, JSON and PNG plots.

Plots use matplotlib's object API with the Agg canvas (``matplotlib.figure.Figure``), so
nothing here touches pyplot's global state or a GUI backend. Every file is written
atomically.
"""

from __future__ import annotations

import datetime as _dt
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from allnet_core.classes import CLASS_NAMES
from allnet_core.io import atomic_write, write_csv, write_json, write_text
from allnet_core.metrics import as_float, json_safe

__all__ = [
    "TABLE_METRICS",
    "mean_std",
    "metrics_table",
    "plot_confusion",
    "plot_curves",
    "write_evaluation_report",
    "write_run_report",
]

#: Columns of the Table-3-style table, in the paper's order, with their headers.
TABLE_METRICS = (
    ("accuracy", "Accuracy"),
    ("specificity", "Specificity"),
    ("recall", "Recall"),
    ("f1", "F1"),
    ("precision", "Precision"),
    ("mcc", "MCC"),
)


def _pct(value: Any, std: float | None = None) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "n/a"
    text = f"{100.0 * float(value):.2f}"
    if std is not None and math.isfinite(float(std)):
        text += f" ± {100.0 * std:.2f}"
    return text


def mean_std(fold_metrics: Sequence[Mapping[str, Any]]) -> dict[str, dict[str, float]]:
    """Mean and standard deviation of each metric over folds: the one place they are
    computed (``report.md``, ``report.json`` and the napari train widget show these).

    The standard deviation is the sample one (``ddof=1``): the folds are a sample of the
    ways the data could have been split. Undefined values (``None`` or ``nan``, e.g. a
    precision with nothing predicted ALL) are left out of both.

    Parameters
    ----------
    fold_metrics : sequence of dict
        Each fold's metrics (from :func:`allnet_core.metrics.binary_metrics` or
        ``metrics.json``).

    Returns
    -------
    dict
        ``{metric: {"mean": float, "std": float}}`` for the :data:`TABLE_METRICS` and
        ``roc_auc``. With no finite value the mean is ``nan``; with fewer than two (one
        fold) the standard deviation is ``nan`` (undefined), and reports show the mean
        alone.

    Examples
    --------
    >>> s = mean_std([{"accuracy": 0.8}, {"accuracy": 0.9}, {"accuracy": None}])
    >>> round(s["accuracy"]["mean"], 3), round(s["accuracy"]["std"], 4)
    (0.85, 0.0707)
    >>> mean_std([{"accuracy": 0.8}])["accuracy"]
    {'mean': 0.8, 'std': nan}
    """
    out = {}
    for key, _ in TABLE_METRICS + (("roc_auc", ""),):
        values = np.array([as_float(m.get(key)) for m in fold_metrics], dtype=float)
        finite = values[np.isfinite(values)]
        out[key] = {
            "mean": float(finite.mean()) if finite.size else math.nan,
            "std": float(finite.std(ddof=1)) if finite.size > 1 else math.nan,
        }
    return out


def metrics_table(rows: Sequence[tuple[str, Mapping[str, Any]]],
                  summary: Mapping[str, Mapping[str, float]] | None = None) -> str:
    """A Markdown table with one row per ``(name, metrics)``, values in percent.

    Parameters
    ----------
    rows : sequence of (str, dict)
        Row name and a metrics dict from :func:`allnet_core.metrics.binary_metrics`.
    summary : dict, optional
        From :func:`mean_std`; adds a "Mean ± std" row after ``rows``.

    Examples
    --------
    >>> print(metrics_table([("Fold 1", {"accuracy": 0.9, "specificity": 0.8, "recall": 1.0,
    ...   "f1": 0.9, "precision": 0.85, "mcc": 0.7})]).splitlines()[2])
    | Fold 1 | 90.00 | 80.00 | 100.00 | 90.00 | 85.00 | 70.00 |
    """
    header = "| | " + " | ".join(h for _, h in TABLE_METRICS) + " |"
    lines = [header, "|---" * (len(TABLE_METRICS) + 1) + "|"]
    for name, m in rows:
        lines.append(f"| {name} | " + " | ".join(_pct(m.get(k)) for k, _ in TABLE_METRICS)
                     + " |")
    if summary is not None:
        lines.append("| Mean ± std over folds | " + " | ".join(
            _pct(summary[k]["mean"], summary[k]["std"]) for k, _ in TABLE_METRICS) + " |")
    return "\n".join(lines)


def _save_figure(fig, path: Path) -> Path:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)
    with atomic_write(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
    return path


def plot_curves(histories: Mapping[int, pd.DataFrame], path: str | os.PathLike) -> Path:
    """Accuracy and loss per epoch for each fold (training solid, validation dashed).

    Parameters
    ----------
    histories : dict of int to pandas.DataFrame
        Fold number to its ``history.csv`` table (``epoch``, ``loss``, ``accuracy``,
        ``val_loss``, ``val_accuracy``).
    path : path-like
        PNG file to write.
    """
    from matplotlib.figure import Figure

    fig = Figure(figsize=(11, 4.2))
    ax_acc, ax_loss = fig.subplots(1, 2)
    colors = [f"C{i}" for i in range(10)]
    for i, (fold, h) in enumerate(sorted(histories.items())):
        c = colors[i % len(colors)]
        ax_acc.plot(h["epoch"], 100 * h["accuracy"], color=c, label=f"fold {fold} train")
        ax_acc.plot(h["epoch"], 100 * h["val_accuracy"], color=c, ls="--",
                    label=f"fold {fold} val")
        ax_loss.plot(h["epoch"], h["loss"], color=c, label=f"fold {fold} train")
        ax_loss.plot(h["epoch"], h["val_loss"], color=c, ls="--", label=f"fold {fold} val")
    ax_acc.set(xlabel="epoch", ylabel="accuracy (%)", title="Accuracy per epoch")
    ax_loss.set(xlabel="epoch", ylabel="categorical cross-entropy", title="Loss per epoch")
    for ax in (ax_acc, ax_loss):
        ax.grid(alpha=0.3)
    ax_loss.legend(fontsize=7, ncol=2)
    return _save_figure(fig, Path(path))


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


def _split_summary(splits: pd.DataFrame) -> pd.DataFrame:
    g = splits.groupby(["role", "label"]).agg(images=("path", "size"),
                                              subjects=("subject", "nunique"))
    return g.reset_index()


def _subject_overlap(splits: pd.DataFrame) -> int:
    """How many subjects appear in more than one of hold-out / fold validation parts."""
    parts = splits[splits["role"].str.endswith("_val") | (splits["role"] == "holdout")]
    return int((parts.groupby("subject")["role"].nunique() > 1).sum())


def write_run_report(run_dir: str | os.PathLike, config, splits: pd.DataFrame,
                     fold_metrics: Sequence[Mapping[str, Any]], holdout: Mapping[str, Any],
                     best_fold: int, seconds: float | None = None,
                     card: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Write ``report.md``, ``report.json``, ``curves.png``, ``confusion.png`` and, with a
    model card, ``reliability.png`` and the card's section (:mod:`allnet_core.trust_report`).

    Parameters
    ----------
    run_dir : path-like
        The run folder (holds ``fold_<k>/history.csv``).
    config : TrainConfig
        The run's configuration.
    splits : pandas.DataFrame
        From :func:`allnet_core.training.make_splits`.
    fold_metrics : sequence of dict
        Each fold's validation metrics at its best epoch.
    holdout : dict
        The best fold's hold-out metrics.
    best_fold : int
        1-based fold number scored on the hold-out.
    seconds : float, optional
        Wall time of this (possibly resumed) invocation.
    card : dict, optional
        The best model's card (:func:`allnet_core.training.trust.write_trust`).

    Returns
    -------
    dict
        What ``report.json`` holds.
    """
    run_dir = Path(run_dir)
    histories = {}
    for k in range(1, len(fold_metrics) + 1):
        h = run_dir / f"fold_{k}" / "history.csv"
        if h.is_file():
            histories[k] = pd.read_csv(h)
    plot_curves(histories, run_dir / "curves.png")
    plot_confusion(holdout, run_dir / "confusion.png",
                   title=f"Hold-out, fold {best_fold} model")
    summary_stats = mean_std(fold_metrics)
    env_path = run_dir / "environment.json"
    env = {}
    if env_path.is_file():
        import json

        env = json.loads(env_path.read_text(encoding="utf-8"))
    per_subject_path = run_dir / "holdout" / "per_subject.csv"
    per_subject = pd.read_csv(per_subject_path) if per_subject_path.is_file() else None
    cfg = config.to_dict()
    report = {
        "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "config": cfg,
        "split": config.split,
        "subjects_shared_between_splits": config.split == "image",
        "subjects_in_several_splits": _subject_overlap(splits),
        "n_images": int(splits["path"].nunique()),
        "n_subjects": int(splits["subject"].nunique()),
        "folds": list(fold_metrics),
        "folds_mean_std": summary_stats,
        "best_fold": int(best_fold),
        "best_model": str(run_dir / f"fold_{best_fold}" / "model.keras"),
        "holdout": dict(holdout),
        "device": env.get("device_used"),
        "keras_backend": env.get("keras_backend"),
        "seconds": seconds,
    }
    text = _run_markdown(json_safe(report), splits, per_subject)
    if card:
        from allnet_core.trust_report import add_card

        text += "\n" + add_card(report, card, run_dir, best_fold)
    report = json_safe(report)
    write_json(run_dir / "report.json", report)
    write_text(run_dir / "report.md", text)
    return report


def _run_markdown(report: dict[str, Any], splits: pd.DataFrame,
                  per_subject: pd.DataFrame | None) -> str:
    cfg = report["config"]
    k = report["best_fold"]
    rows = [(f"Fold {m['fold']} (validation)", m) for m in report["folds"]]
    table = metrics_table(rows, report["folds_mean_std"])
    table += "\n" + metrics_table([(f"**Hold-out** (fold {k} model)", report["holdout"])]
                                  ).splitlines()[2]
    if report["split"] == "subject":
        protocol = (
            "Splits are **grouped by subject**: no subject has cells in two of hold-out, "
            "training and validation, so these figures estimate performance on new patients "
            f"(subjects found in more than one split: {report['subjects_in_several_splits']}).")
    else:
        protocol = (
            "**Warning: split by image (the paper's protocol). Subjects are shared between "
            "hold-out, training and validation**, so cells of the same patient are on both "
            "sides and these figures overestimate performance on new patients "
            f"({report['subjects_in_several_splits']} subjects appear in more than one "
            "split). Use `--split subject` for an honest estimate.")
    sizes = _split_summary(splits)
    size_lines = ["| part | class | images | subjects |", "|---|---|---|---|"]
    for _, r in sizes.iterrows():
        size_lines.append(f"| {r['role']} | {r['label']} | {r['images']} | {r['subjects']} |")
    parts = [
        "# ALLNet training report",
        "",
        f"Created {report['created']}; {report['n_images']} images from "
        f"{report['n_subjects']} subjects; Keras backend {report['keras_backend']} on "
        f"{report['device']}.",
        "",
        protocol,
        "",
        f"Protocol: hold-out {cfg['holdout']:g}, {cfg['folds']}-fold cross-validation on the "
        f"rest, training folds balanced to {cfg['per_class']} images per class "
        f"({'augmented' if cfg['augment'] else 'repeated'} copies, training part only); "
        f"{cfg['epochs']} epochs, {cfg['optimizer']} lr {cfg['lr']:g}, batch {cfg['batch_size']}, "
        f"input {cfg['input_size']}x{cfg['input_size']}, dense units {cfg['dense_units']}, "
        f"precision {cfg['precision']}, profile `{cfg['profile']}`, seed {cfg['seed']}. "
        "Each fold's model is its epoch with the best validation F1; the fold with the best "
        f"validation F1 (fold {k}) is scored on the hold-out.",
        "",
        "## Results (%; ALL is the positive class)",
        "",
        table,
        "",
        f"Hold-out confusion matrix (fold {k} model): TN {report['holdout']['tn']}, "
        f"FP {report['holdout']['fp']}, FN {report['holdout']['fn']}, "
        f"TP {report['holdout']['tp']}; ROC AUC {_pct(report['holdout'].get('roc_auc'))} %.",
        "",
        "![accuracy and loss per epoch](curves.png)",
        "",
        "![hold-out confusion matrix](confusion.png)",
        "",
    ]
    if per_subject is not None and len(per_subject):
        parts += ["## Hold-out per subject", "", _subject_markdown(per_subject), ""]
    parts += ["## Split sizes", "", *size_lines, ""]
    return "\n".join(parts)


def _subject_markdown(per_subject: pd.DataFrame) -> str:
    lines = ["| subject | cells | truth | called ALL (%) | mean P(ALL) | call | correct |",
             "|---|---|---|---|---|---|---|"]
    for _, r in per_subject.iterrows():
        lines.append(
            f"| {r['subject']} | {r['cells']} | {r['true_label']} | "
            f"{100 * r['fraction_all']:.1f} | {r['mean_p_all']:.3f} | "
            f"{r['predicted_label']} | {'yes' if r['correct'] else 'no'} |")
    n_ok = int(per_subject["correct"].sum())
    lines.append("")
    lines.append(f"Subject-level calls correct: {n_ok} of {len(per_subject)}.")
    return "\n".join(lines)


def write_evaluation_report(out_dir: str | os.PathLike, metrics: Mapping[str, Any],
                            predictions: pd.DataFrame, per_subject: pd.DataFrame,
                            model: str, data: str,
                            calibration: Mapping[str, Any] | None = None) -> Path:
    """Write an evaluation's ``metrics.json``, ``predictions.csv``, ``per_subject.csv``,
    ``confusion.png``, ``report.md`` (and ``reliability.png`` with ``calibration``) into
    ``out_dir``; return the report's path."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "metrics.json", json_safe({**metrics, "model": model, "data": data}))
    write_csv(out / "predictions.csv", predictions)
    write_csv(out / "per_subject.csv", per_subject)
    plot_confusion(metrics, out / "confusion.png", title="Evaluation")
    text = "\n".join([
        "# ALLNet evaluation",
        "",
        f"Model `{model}` on `{data}`: {metrics['n']} images from "
        f"{len(per_subject)} subjects.",
        "",
        "## Metrics (%; ALL is the positive class)",
        "",
        metrics_table([("Evaluation", metrics)]),
        "",
        f"Confusion matrix: TN {metrics['tn']}, FP {metrics['fp']}, FN {metrics['fn']}, "
        f"TP {metrics['tp']}; ROC AUC {_pct(metrics.get('roc_auc'))} %.",
        "",
        "![confusion matrix](confusion.png)",
        "",
        "## Per subject",
        "",
        _subject_markdown(per_subject) if len(per_subject) else "(no subjects)",
        "",
    ])
    if calibration:  # reliability.png and its section
        from allnet_core.trust_report import evaluation_markdown
        text += "\n" + evaluation_markdown(calibration, out)
    return write_text(out / "report.md", text)
