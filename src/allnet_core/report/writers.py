"""The files of a training run's and an evaluation's report: Markdown, JSON, CSV, PNG.

Every file is written atomically.
"""

from __future__ import annotations

import datetime as _dt
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from allnet_core.io import write_csv, write_json, write_text
from allnet_core.metrics import json_safe
from allnet_core.report.plots import plot_confusion, plot_curves
from allnet_core.report.tables import (
    class_counts,
    format_metric,
    mean_std,
    metrics_table,
    undefined_note,
)

__all__ = ["write_evaluation_report", "write_run_report"]


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
    model card, ``reliability.png`` and the card's section (:mod:`allnet_core.report.trust`).

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
        "expected_seconds": _expected_seconds(cfg),
    }
    text = _run_markdown(json_safe(report), splits, per_subject)
    if card:
        from allnet_core.report.trust import add_card

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
        f"{_training_extras(cfg, report['folds'])}"
        f"Each fold's model is its epoch with the best {_monitor_words(cfg)}; the fold with "
        f"the best {_monitor_words(cfg)} (fold {k}) is scored on the hold-out.",
        "",
        _time_line(report),
        "",
        "## Results (%; ALL is the positive class)",
        "",
        table,
        "",
        f"Hold-out confusion matrix (fold {k} model): TN {report['holdout']['tn']}, "
        f"FP {report['holdout']['fp']}, FN {report['holdout']['fn']}, "
        f"TP {report['holdout']['tp']}; ROC AUC "
        f"{format_metric('roc_auc', report['holdout'].get('roc_auc'))}.",
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


def _monitor_words(cfg: Mapping[str, Any]) -> str:
    return ("validation loss (lowest)" if cfg.get("monitor") == "val_loss"
            else "validation F1")


def _training_extras(cfg: Mapping[str, Any], folds: Sequence[Mapping[str, Any]]) -> str:
    """What the run did beyond the paper's protocol, in a sentence or two (or nothing)."""
    extras = []
    if cfg.get("lr_schedule") == "plateau":
        extras.append(f"learning rate halved after {cfg['lr_patience']} epochs without "
                      "improvement")
    if cfg.get("early_stopping"):
        trained = ", ".join(str(m.get("epochs", "?")) for m in folds)
        extras.append(f"early stopping after {cfg['early_stopping']} epochs without "
                      f"improvement (epochs trained per fold: {trained})")
    if cfg.get("epoch_flips"):
        extras.append("random flips and quarter turns every epoch")
    if cfg.get("stain_jitter"):
        extras.append(f"stain jitter +-{100 * cfg['stain_jitter']:g} % per channel every epoch")
    if not extras:
        return ""
    return "Beyond the paper: " + "; ".join(extras) + ". "


def _expected_seconds(cfg: Mapping[str, Any]) -> float | None:
    from allnet_core.training.estimate import estimate_seconds

    try:
        return estimate_seconds(cfg)
    except (KeyError, TypeError, ValueError, ZeroDivisionError):
        return None


def _time_line(report: Mapping[str, Any]) -> str:
    """The wall clock of this invocation beside the estimator's expected time."""
    from allnet_core.training.estimate import format_duration

    seconds, expected = report.get("seconds"), report.get("expected_seconds")
    took = (f"{seconds / 60:.1f} min (this invocation; a resumed run counts only its part)"
            if seconds is not None else "not recorded")
    bound = "at most " if report["config"].get("early_stopping") else ""
    line = f"Time: {took} on {report.get('device') or 'an unknown device'}"
    if expected is not None:
        line += (f"; expected on 2 CPU cores: {bound}{format_duration(expected)} "
                 "(allnet_core.training.estimate)")
    return line + "."


def _subject_markdown(per_subject: pd.DataFrame) -> str:
    lines = ["| subject | cells | truth | called ALL (%) | mean P(ALL) | call | correct |",
             "|---|---|---|---|---|---|---|"]
    for _, r in per_subject.iterrows():
        lines.append(
            f"| {r['subject']} | {r['cells']} | {r['true_class']} | "
            f"{100 * r['fraction_all']:.1f} | {r['mean_p_all']:.3f} | "
            f"{r['class']} | {'yes' if r['correct'] else 'no'} |")
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
    note = undefined_note(metrics)
    text = "\n".join([
        "# ALLNet evaluation",
        "",
        f"Model `{model}` on `{data}`: {metrics['n']} images ({class_counts(metrics)}) from "
        f"{len(per_subject)} subjects.",
        "",
        "## Metrics (%; ALL is the positive class)",
        "",
        metrics_table([("Evaluation", metrics)]),
        "",
        *([note, ""] if note else []),
        f"Confusion matrix: TN {metrics['tn']}, FP {metrics['fp']}, FN {metrics['fn']}, "
        f"TP {metrics['tp']}; ROC AUC {format_metric('roc_auc', metrics.get('roc_auc'))}.",
        "",
        "![confusion matrix](confusion.png)",
        "",
        "## Per subject",
        "",
        _subject_markdown(per_subject) if len(per_subject) else "(no subjects)",
        "",
    ])
    if calibration:  # reliability.png and its section
        from allnet_core.report.trust import evaluation_markdown
        text += "\n" + evaluation_markdown(calibration, out)
    return write_text(out / "report.md", text)
