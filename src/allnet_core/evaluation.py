"""Scoring a trained ALLNet model on a labelled dataset (``allnet evaluate``).

A dataset of one class is scored too: a set of healthy cells alone measures specificity,
a set of blasts alone recall. Metrics that need both classes (MCC, ROC AUC) are then
undefined, and the report says why (:func:`allnet_core.metrics.undefined_reasons`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from allnet_core.classes import CLASS_NAMES
from allnet_core.errors import ModelError
from allnet_core.model.files import find_model_file
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
        One row per image, :func:`allnet_core.metrics.prediction_table`: ``source``,
        ``subject``, ``true_class``, ``class`` (ALL or HEM at the threshold), ``p_all``
        (calibrated by the model card), then ``p_all_raw`` (uncalibrated), ``call``
        (ALL, HEM, uncertain or out_of_scope, as ``allnet classify`` calls cells) and
        ``oos_score`` (``nan`` for a model without a card).
    per_subject : pandas.DataFrame
        From :func:`allnet_core.metrics.per_subject_summary`.
    report : pathlib.Path or None
        ``report.md`` when an output folder was given.
    model : pathlib.Path
        The model file scored.
    calibration : dict
        ECE and reliability bins of raw and calibrated P(ALL)
        (:func:`allnet_core.model.calibration.calibration_summary`) and ``calibrated``
        (whether the model had a usable card).
    calls : dict
        :func:`allnet_core.inference.calls.call_counts` of the ``call`` column.
    """

    metrics: dict[str, Any]
    predictions: pd.DataFrame = field(repr=False)
    per_subject: pd.DataFrame = field(repr=False)
    report: Path | None
    model: Path
    calibration: dict[str, Any] = field(repr=False, default_factory=dict)
    calls: dict[str, Any] = field(default_factory=dict)


#: The model file of a ``.keras`` path or of a run folder: the one finder, shared with
#: ``allnet classify`` (an alias of :func:`allnet_core.model.find_model_file`).
resolve_model = find_model_file


def evaluate(
    model_or_run: str | os.PathLike,
    dataset,
    out_dir: str | os.PathLike | None = None,
    batch_size: int = 32,
    threshold: float = 0.5,
    progress: ProgressCallback | None = None,
    cancel: CancelLike | None = None,
    classes=None,
) -> EvaluationResult:
    """Score a model on every image of a labelled dataset.

    Parameters
    ----------
    model_or_run : path-like
        A ``.keras`` model file or a training run folder (its best model is used). It is
        loaded by :func:`allnet_core.model.load_model`, the loader of ``allnet classify``:
        the same models are refused, and P(ALL) is read from the column that the class
        names (a ``config.json`` beside the model or in its run folder) give to ALL, and
        calibrated by the model's card (metrics use the calibrated P(ALL); the report
        shows the expected calibration error before and after).
    dataset : path-like or pandas.DataFrame
        A dataset folder (see :func:`allnet_core.datasets.discover`) or a table with
        ``path``, ``label``, ``subject``. One class only is allowed.
    out_dir : path-like, optional
        Where to write ``metrics.json``, ``predictions.csv``, ``per_subject.csv``,
        ``confusion.png``, ``reliability.png`` and ``report.md``.
    batch_size : int
        Images per prediction batch.
    threshold : float
        A cell is called ALL when P(ALL) >= ``threshold``.
    progress, cancel
        Progress events (``evaluate_start``, ``evaluate_batch``, ``evaluate_end``) and a
        cancel token checked between batches.
    classes : mapping or str, optional
        Class folder names beyond the built-in ones for a dataset folder, e.g.
        ``"blast=ALL,normal=HEM"`` (see :func:`allnet_core.datasets.parse_class_map`).

    Returns
    -------
    EvaluationResult

    Raises
    ------
    ModelError
        For a model that :func:`allnet_core.model.load_model` refuses, one whose classes
        are not ALL and HEM, or one whose input is not square.
    OutputError
        ``out_dir`` is a file or cannot be written (checked before any work).
    """
    from allnet_core.datasets.table import as_table
    from allnet_core.feed import TrainingFeed
    from allnet_core.inference.calls import DEFAULT_UNCERTAIN, call_cells, call_counts
    from allnet_core.io import check_output_dir
    from allnet_core.metrics import (
        binary_metrics,
        labels_to_int,
        per_subject_summary,
        prediction_table,
    )
    from allnet_core.model.calibration import calibration_summary
    from allnet_core.model.predict import Predictor
    from allnet_core.report import write_evaluation_report

    if out_dir is not None:
        check_output_dir(out_dir)  # a file, a read-only folder: refused before the work
    loaded = _load_binary_model(model_or_run)
    path, size = loaded.path, loaded.input_size[0]
    table, _ = as_table(dataset, classes=classes, require_both_classes=False)
    emit(progress, "evaluate_start", model=str(path), n=len(table), input_size=size)
    feed = TrainingFeed(table["path"].tolist(), table["label"].tolist(), plan=None,
                        batch_size=batch_size, input_size=size, augmenter=None,
                        shuffle=False)
    predictor = Predictor(loaded)
    p_raw, rows = _predict(predictor, feed, batch_size, progress, cancel)
    p_raw = p_raw[: len(table)]
    p = predictor.calibrate(p_raw)
    oos = predictor.oos_score(None if rows is None else rows[: len(table)])
    if not len(oos):
        oos = np.full(len(table), np.nan)
    metrics = binary_metrics(table["label"].to_numpy(), p, threshold=threshold)
    calibration = {**calibration_summary(labels_to_int(table["label"].to_numpy()), p_raw, p),
                   "calibrated": bool(loaded.card is not None and loaded.card.usable)}
    metrics.update(ece_before=calibration["ece_before"], ece_after=calibration["ece_after"])
    calls = call_cells(p, oos, threshold, DEFAULT_UNCERTAIN)
    predictions = prediction_table(table, p, threshold).assign(p_all_raw=p_raw, call=calls,
                                                               oos_score=oos)
    per_subject = per_subject_summary(predictions, threshold=threshold)
    report = None
    if out_dir is not None:
        data_name = dataset if not isinstance(dataset, pd.DataFrame) else "<table>"
        report = write_evaluation_report(out_dir, metrics, predictions, per_subject,
                                         model=str(path), data=str(data_name),
                                         calibration=calibration)
    emit(progress, "evaluate_end", **{k: v for k, v in metrics.items()
                                      if isinstance(v, int | float)})
    return EvaluationResult(metrics=metrics, predictions=predictions,
                            per_subject=per_subject, report=report, model=path,
                            calibration=calibration, calls=call_counts(calls))


def _predict(predictor, feed, batch_size: int, progress, cancel):
    """Raw P(ALL) of every image of ``feed`` and, when the model has an out-of-scope
    reference, the rows its score needs (else ``None``), from one pass each, through
    :func:`~allnet_core.model.predict.predict_p_all` or
    :func:`~allnet_core.model.predict.predict_features`."""
    from allnet_core.model.predict import predict_features, predict_p_all

    def batches():
        for i in range(len(feed)):
            check_cancel(cancel, "evaluation")
            yield feed[i]
            emit(progress, "evaluate_batch", batch=i + 1, batches=len(feed))

    if predictor.scope is None:
        return predict_p_all(predictor, batches(), batch_size=batch_size), None
    p_raw, rows = predict_features(predictor, batches(), batch_size=batch_size)
    return p_raw, (rows if len(rows) else None)


def _load_binary_model(model_or_run):
    """The model through the one safe loader, checked to score ALL against HEM."""
    from allnet_core.model.loading import load_model

    loaded = load_model(model_or_run)
    if sorted(loaded.class_names) != sorted(CLASS_NAMES):
        raise ModelError(f"{loaded.source}: evaluate scores ALL against HEM; the model's "
                         f"classes are {loaded.class_names}")
    h, w = loaded.input_size
    if h != w:
        raise ModelError(f"{loaded.source}: evaluate reads images at a square size; the "
                         f"model input is {h}x{w}")
    return loaded
