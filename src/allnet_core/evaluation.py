"""Scoring a trained ALLNet model on a labelled dataset (``allnet evaluate``)."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from allnet_core.errors import ModelError
from allnet_core.progress import CancelLike, ProgressCallback, check_cancel, emit

__all__ = ["EvaluationResult", "evaluate", "resolve_model"]


@dataclass
class EvaluationResult:
    """What :func:`evaluate` returns.

    Attributes
    ----------
    metrics : dict
        From :func:`allnet_core.metrics.binary_metrics`.
    predictions : pandas.DataFrame
        ``path``, ``subject``, ``label``, ``p_all``, ``predicted`` per image.
    per_subject : pandas.DataFrame
        From :func:`allnet_core.metrics.per_subject_summary`.
    report : pathlib.Path or None
        ``report.md`` when an output folder was given.
    model : pathlib.Path
        The model file scored.
    """

    metrics: dict[str, Any]
    predictions: pd.DataFrame = field(repr=False)
    per_subject: pd.DataFrame = field(repr=False)
    report: Path | None
    model: Path


def resolve_model(model_or_run: str | os.PathLike) -> Path:
    """The model file of a ``.keras`` path or of a run folder (its best fold's model).

    Raises
    ------
    ModelError
        If the path is neither a model file nor a finished run folder.
    """
    p = Path(model_or_run)
    if p.is_file():
        return p
    if p.is_dir():
        report = p / "report.json"
        if report.is_file():
            best = Path(json.loads(report.read_text(encoding="utf-8"))["best_model"])
            candidate = best if best.is_absolute() else p / best
            if not candidate.is_file():  # the run folder was moved: use the name inside it
                candidate = p / best.parent.name / best.name
            if candidate.is_file():
                return candidate
        if (p / "model.keras").is_file():
            return p / "model.keras"
        raise ModelError(f"{p}: not a finished training run (no report.json naming its best "
                         "model) and no model.keras inside")
    raise ModelError(f"{p}: no such model file or run folder")


def evaluate(
    model_or_run: str | os.PathLike,
    dataset,
    out_dir: str | os.PathLike | None = None,
    batch_size: int = 32,
    threshold: float = 0.5,
    progress: ProgressCallback | None = None,
    cancel: CancelLike | None = None,
) -> EvaluationResult:
    """Score a model on every image of a labelled dataset.

    Parameters
    ----------
    model_or_run : path-like
        A ``.keras`` model file or a training run folder (its best model is used).
    dataset : path-like or pandas.DataFrame
        A dataset folder (see :func:`allnet_core.datasets.discover`) or a table with
        ``path``, ``label``, ``subject``.
    out_dir : path-like, optional
        Where to write ``metrics.json``, ``predictions.csv``, ``per_subject.csv``,
        ``confusion.png`` and ``report.md``.
    batch_size : int
        Images per prediction batch.
    threshold : float
        A cell is called ALL when P(ALL) >= ``threshold``.
    progress, cancel
        Progress events (``evaluate_start``, ``evaluate_batch``, ``evaluate_end``) and a
        cancel token checked between batches.

    Returns
    -------
    EvaluationResult
    """
    from allnet_core.feed import TrainingFeed
    from allnet_core.metrics import binary_metrics, per_subject_summary
    from allnet_core.report import write_evaluation_report
    from allnet_core.training import _as_table, load_model

    path = resolve_model(model_or_run)
    table, _ = _as_table(dataset)
    model = load_model(path)
    size = int(model.input_shape[1])
    emit(progress, "evaluate_start", model=str(path), n=len(table), input_size=size)
    feed = TrainingFeed(table["path"].tolist(), table["label"].tolist(), plan=None,
                        batch_size=batch_size, input_size=size, augmenter=None,
                        shuffle=False)
    probs = []
    for i in range(len(feed)):
        check_cancel(cancel, "evaluation")
        x, _ = feed[i]
        probs.append(np.asarray(model.predict_on_batch(x), dtype=np.float64)[:, 1])
        emit(progress, "evaluate_batch", batch=i + 1, batches=len(feed))
    p = np.clip(np.concatenate(probs)[: len(table)], 0.0, 1.0) if probs else np.zeros(0)
    metrics = binary_metrics(table["label"].to_numpy(), p, threshold=threshold)
    predictions = table[["path", "subject", "label"]].assign(
        p_all=p, predicted=np.where(p >= threshold, "ALL", "HEM"))
    per_subject = per_subject_summary(predictions, threshold=threshold)
    report = None
    if out_dir is not None:
        data_name = dataset if not isinstance(dataset, pd.DataFrame) else "<table>"
        report = write_evaluation_report(out_dir, metrics, predictions, per_subject,
                                         model=str(path), data=str(data_name))
    emit(progress, "evaluate_end", **{k: v for k, v in metrics.items()
                                      if isinstance(v, int | float)})
    return EvaluationResult(metrics=metrics, predictions=predictions,
                            per_subject=per_subject, report=report, model=path)
