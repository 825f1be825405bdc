"""The end of a training run: how far to trust the best model, written into its model card.

After the folds, :func:`write_trust`

1. predicts the best fold's own training images (unaugmented) and validation images,
   keeping the head features (:func:`allnet_core.model.predict.predict_features`);
2. fits the calibration on the validation predictions (temperature scaling,
   :func:`allnet_core.model.calibration.fit_temperature`) and the out-of-scope reference on
   the training features with its threshold on the validation features
   (:func:`allnet_core.model.scope.fit_scope`);
3. scores the hold-out with both: metrics with 95 % intervals by bootstrap over subjects,
   ECE and reliability before and after calibration, the share of uncertain and
   out-of-scope cells, per-subject calls;
4. writes ``fold_<k>/model.card.json`` and ``model.card.npz`` beside the best model and the
   hold-out's calibrated P(ALL) and calls into ``holdout/predictions.csv`` (the columns of
   :func:`allnet_core.metrics.prediction_table`, then ``p_all_raw``, ``call`` and
   ``oos_score``) and ``holdout/per_subject.csv``.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from allnet_core.classes import CLASS_NAMES
from allnet_core.progress import check_cancel, emit

__all__ = ["file_list_fingerprint", "write_trust"]


def file_list_fingerprint(paths, root: str | os.PathLike | None = None) -> str:
    """``sha256:<hex>`` of the sorted ``relative path<TAB>size`` lines of the files.

    Paths are taken relative to ``root`` (default their common folder), so a dataset
    moved elsewhere keeps its fingerprint; a file added, removed, renamed or changed in
    size changes it.
    """
    paths = [Path(p) for p in dict.fromkeys(map(str, paths))]
    if root is None:
        root = Path(os.path.commonpath([str(p.parent) for p in paths])) if paths else Path()
    lines = sorted(f"{Path(os.path.relpath(p, root)).as_posix()}\t{p.stat().st_size}"
                   for p in paths)
    return "sha256:" + hashlib.sha256("\n".join(lines).encode("utf-8")).hexdigest()


def _predict(model, table: pd.DataFrame, config) -> tuple[np.ndarray, np.ndarray]:
    from allnet_core.model.predict import predict_features
    from allnet_core.training.runtime import _feed

    if not len(table):
        return np.zeros(0), np.zeros((0, 0), np.float32)
    feed = _feed(table, config, batch_size=max(config.batch_size, 32))
    p, feats = predict_features(model, feed)
    return p[:len(table)], feats[:len(table)]


def _data_facts(splits: pd.DataFrame) -> dict[str, Any]:
    """Images and subjects per class of the whole dataset, and its fingerprint."""
    files = splits.drop_duplicates("path")
    return {
        "images": {c: int((files["label"] == c).sum()) for c in CLASS_NAMES},
        "subjects": {c: int(files.loc[files["label"] == c, "subject"].nunique())
                     for c in CLASS_NAMES},
        "fingerprint": file_list_fingerprint(files["path"]),
        "fingerprint_rule": "sha256 of the sorted 'relative path<TAB>size' lines",
    }


def _protocol(config, best_fold: int) -> dict[str, Any]:
    keys = ("split", "folds", "holdout", "seed", "profile", "augment", "per_class",
            "epochs", "input_size", "dense_units", "lr", "batch_size", "optimizer")
    return {**{k: getattr(config, k) for k in keys}, "best_fold": int(best_fold),
            "balancing": f"training part of each fold balanced to {config.per_class} "
                         f"images per class ({'augmented' if config.augment else 'repeated'} "
                         "copies)"}


def _fit(model, run, splits, best_fold):
    """Calibration and out-of-scope reference from the best fold's training/validation."""
    from allnet_core.metrics import labels_to_int
    from allnet_core.model.calibration import expected_calibration_error, fit_temperature
    from allnet_core.model.scope import fit_scope
    from allnet_core.training.splits import _role_table

    train = _role_table(splits, f"fold_{best_fold}_train")
    val = _role_table(splits, f"fold_{best_fold}_val")
    _, f_train = _predict(model, train, run.config)
    check_cancel(run.cancel, "training")
    p_val, f_val = _predict(model, val, run.config)
    y_val = labels_to_int(val["label"].to_numpy())
    calibration = fit_temperature(y_val, p_val)
    scope = fit_scope(f_train, f_val, train_subjects=train["subject"].to_numpy(str),
                      val_subjects=val["subject"].to_numpy(str))
    cal = {**calibration.to_dict(), "fitted_on": f"validation cells of fold {best_fold}",
           "n": int(len(val)),
           "validation_ece_before": expected_calibration_error(y_val, p_val),
           "validation_ece_after": expected_calibration_error(
               y_val, calibration.apply(p_val))}
    return calibration, scope, cal


def _holdout(predictor, run, splits) -> tuple[dict[str, Any], pd.DataFrame]:
    """The hold-out scored with calibration and scope: card entries and predictions."""
    from allnet_core.inference.calls import DEFAULT_UNCERTAIN, call_cells, summarize_calls
    from allnet_core.intervals import subject_bootstrap
    from allnet_core.metrics import labels_to_int, prediction_table
    from allnet_core.model.calibration import calibration_summary
    from allnet_core.training.splits import _role_table

    hold = _role_table(splits, "holdout")
    p_raw, feats = _predict(predictor, hold, run.config)
    y = labels_to_int(hold["label"].to_numpy())
    p = predictor.calibrate(p_raw)
    oos = predictor.oos_score(feats) if len(feats) else np.zeros(0)
    calls = call_cells(p, oos, 0.5, DEFAULT_UNCERTAIN)
    predictions = prediction_table(hold, p, 0.5).assign(p_all_raw=p_raw, call=calls,
                                                        oos_score=oos)
    per_subject = summarize_calls(predictions.sort_values("subject", kind="stable"),
                                  ["subject", "true_class"])
    per_subject["mean_p_all"] = per_subject["subject"].map(
        predictions.groupby("subject")["p_all"].mean())
    entry = {
        "images": int(len(hold)),
        "subjects": int(hold["subject"].nunique()),
        "subjects_per_class": {c: int(hold.loc[hold["label"] == c, "subject"].nunique())
                               for c in CLASS_NAMES},
        "metrics": subject_bootstrap(y, p, hold["subject"].to_numpy(), seed=run.config.seed),
        "interval": "95 % percentile bootstrap over subjects (2000 resamples, ALL and HEM "
                    "subjects resampled separately)",
        "threshold": 0.5, "uncertain_band": list(DEFAULT_UNCERTAIN),
        **calibration_summary(y, p_raw, p),
        "uncertain_fraction": float(np.mean(calls == "uncertain")) if len(calls) else None,
        "out_of_scope_fraction": float(np.mean(calls == "out_of_scope")) if len(calls) else None,
        "per_subject": per_subject.to_dict(orient="records"),
    }
    return entry, predictions


def write_trust(run, splits: pd.DataFrame, best_fold: int) -> dict[str, Any]:
    """Fit calibration and out-of-scope reference on the best fold, score the hold-out with
    them, write the best model's card; return the card's content."""
    from allnet_core import __version__
    from allnet_core.backend import get_keras
    from allnet_core.io import write_csv
    from allnet_core.model.card import RESEARCH_USE, write_card
    from allnet_core.model.features import feature_layer_name
    from allnet_core.model.loading import load_model
    from allnet_core.model.predict import Predictor

    model_path = run.run_dir / f"fold_{best_fold}" / "model.keras"
    emit(run.progress, "trust_start", fold=best_fold)
    loaded = load_model(model_path)
    calibration, scope, cal = _fit(loaded, run, splits, best_fold)
    check_cancel(run.cancel, "training")
    holdout, predictions = _holdout(Predictor(loaded, calibration=calibration, scope=scope),
                                    run, splits)
    from allnet_core.metrics import per_subject_summary

    # the hold-out tables again, now from the calibrated P(ALL), with the calls
    write_csv(run.run_dir / "holdout" / "predictions.csv", predictions)
    write_csv(run.run_dir / "holdout" / "per_subject.csv", per_subject_summary(predictions))
    keras = get_keras()
    data = {
        "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "allnet_version": __version__,
        "keras_backend": keras.backend.backend(), "keras_version": keras.__version__,
        "input_size": list(loaded.input_size),
        "class_names": list(loaded.class_names), "positive_class": loaded.positive_class,
        "training_data": _data_facts(splits),
        "protocol": _protocol(run.config, best_fold),
        "holdout": holdout,
        "calibration": cal,
        "out_of_scope": {"method": "larger of two Mahalanobis distances (Ledoit-Wolf "
                                   "covariance): model features and cell size and stain",
                         "feature_layer": feature_layer_name(loaded.model),
                         "fitted_on": f"training cells of fold {best_fold} (size and "
                                      "stain: and its validation cells)",
                         "threshold_on": f"validation cells of fold {best_fold} (size and "
                                         "stain: leave-one-subject-out)",
                         "holdout_flagged": holdout["out_of_scope_fraction"]},
        "intended_use": RESEARCH_USE,
    }
    data = json.loads(write_card(model_path, data, scope).read_text(encoding="utf-8"))
    emit(run.progress, "trust_end", fold=best_fold, temperature=calibration.temperature,
         ece_before=holdout["ece_before"], ece_after=holdout["ece_after"],
         out_of_scope=holdout["out_of_scope_fraction"])
    return data
