"""The training loop: :func:`cross_validate` runs the folds, finishes each, scores the best
fold's model on the hold-out and writes the report.

A fold's ``metrics.json`` is its commit point: resuming skips folds that have one and
continues an unfinished fold from the checkpoint named in its ``state.json``.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from allnet_core.datasets.table import as_table
from allnet_core.errors import CancelledError, ModelError
from allnet_core.io import atomic_write, check_output_dir, write_csv, write_json
from allnet_core.metrics import as_float, json_safe
from allnet_core.progress import CancelLike, ProgressCallback, check_cancel, emit
from allnet_core.training.callbacks import _load_fold_state, _make_callback, _selection_key
from allnet_core.training.config import TrainConfig
from allnet_core.training.feeds import build_fold_caches, make_fold_feeds, remove_fold_caches
from allnet_core.training.rundir import (
    _log_environment,
    _plan_for_csv,
    _prepare_run_dir,
    check_not_in_use,
    run_dir_lock,
)
from allnet_core.training.runtime import (
    _distribution_scope,
    _dtype_policy,
    _new_model,
    load_model,
    predict_p_all,
)
from allnet_core.training.schedule import fold_schedule
from allnet_core.training.splits import _role_table, _verify_files, make_splits

__all__ = ["TrainResult", "cross_validate"]


@dataclass
class TrainResult:
    """What :func:`cross_validate` returns.

    Attributes
    ----------
    run_dir : pathlib.Path
        The run folder.
    best_fold : int
        1-based number of the fold whose model was scored on the hold-out.
    best_model : pathlib.Path
        ``fold_<best>/model.keras``.
    folds : list of dict
        Each fold's validation metrics (at its best epoch).
    holdout : dict
        Hold-out metrics of the best fold's model.
    report : pathlib.Path
        ``report.md``.
    summary : dict
        The content of ``report.json``.
    card : dict
        The best model's card (``fold_<best>/model.card.json``, see
        :mod:`allnet_core.training.trust`).
    """

    run_dir: Path
    best_fold: int
    best_model: Path
    folds: list[dict[str, Any]]
    holdout: dict[str, Any]
    report: Path
    summary: dict[str, Any] = field(repr=False, default_factory=dict)
    card: dict[str, Any] = field(repr=False, default_factory=dict)


@dataclass
class _Run:
    config: TrainConfig
    run_dir: Path
    progress: ProgressCallback | None
    cancel: CancelLike | None
    batches: int = 0


def _balance(train: pd.DataFrame, config: TrainConfig, fold: int):
    from allnet_core.augment import Augmenter, balance_plan

    seed = config.seed * 1000 + fold
    augmenter = Augmenter(seed=seed)
    plan = balance_plan(train["label"].tolist(), per_class=config.per_class, seed=seed,
                        augmenter=augmenter)
    if not config.augment:  # fill minority classes with plain repeats
        plan = plan.assign(augment=False, params="{}")
        return plan, None
    return plan, augmenter


def _train_fold(run: _Run, splits: pd.DataFrame, fold: int) -> dict[str, Any]:
    """Train one fold (or continue it); return its metrics (as in ``metrics.json``)."""
    from allnet_core.backend import get_keras

    keras = get_keras()
    config = run.config
    fold_dir = run.run_dir / f"fold_{fold}"
    fold_dir.mkdir(exist_ok=True)
    metrics_path = fold_dir / "metrics.json"
    if metrics_path.is_file():
        metrics = json.loads(metrics_path.read_text(encoding="utf-8"))
        for old in fold_dir.glob("ckpt_e*.keras"):  # left over by a kill after the commit
            old.unlink(missing_ok=True)
        (fold_dir / "state.json").unlink(missing_ok=True)
        remove_fold_caches(fold_dir)
        emit(run.progress, "fold_skipped", fold=fold, folds=config.folds,
             reason="already complete", val_f1=metrics.get("f1"))
        return metrics

    train = _role_table(splits, f"fold_{fold}_train")
    val = _role_table(splits, f"fold_{fold}_val")
    plan, augmenter = _balance(train, config, fold)
    if not (fold_dir / "plan.csv").is_file():
        write_csv(fold_dir / "plan.csv", _plan_for_csv(plan, train))

    state = _load_fold_state(fold_dir)
    caches = build_fold_caches(run, fold, fold_dir, train, val, plan)
    with _dtype_policy(config.precision), _distribution_scope():
        if state["checkpoint"]:
            model = load_model(fold_dir / state["checkpoint"], compile=True)
        else:
            keras.utils.set_random_seed(config.seed * 1000 + fold)
            model = _new_model(config)
        start = int(state["epoch"])
        feed, val_feed = make_fold_feeds(config, train, plan, augmenter, caches,
                                         seed=config.seed * 1000 + fold, epoch=start)
        run.batches = len(feed)
        emit(run.progress, "fold_start", fold=fold, folds=config.folds, epochs=config.epochs,
             start_epoch=start + 1, n_train=len(train), n_train_balanced=len(plan),
             n_val=len(val), batches=run.batches, feed=config.feed)
        schedule, stopped = fold_schedule(model, config, state["history"])
        if start < config.epochs and not stopped:
            if start:
                keras.utils.set_random_seed(config.seed * 1000 + fold * 100 + start)
            callback = _make_callback(run, fold, fold_dir, val, state, val_feed)
            model.fit(feed, epochs=config.epochs, initial_epoch=start, verbose=0,
                      shuffle=False, callbacks=[feed.epoch_callback(), callback, *schedule])
            if callback.cancelled:
                done = state["checkpoint_epoch"] if state.get("checkpoint") else 0
                emit(run.progress, "cancelled", fold=fold, epoch=done)
                raise CancelledError(
                    f"training cancelled during fold {fold} (epochs 1-{done} of it are "
                    f"saved); continue with `allnet train ... --out {run.run_dir} --resume`")
    metrics = _finish_fold(run, fold, fold_dir, state)
    remove_fold_caches(fold_dir)
    return metrics


def _finish_fold(run: _Run, fold: int, fold_dir: Path, state: dict) -> dict[str, Any]:
    """Promote the best checkpoint to ``model.keras``; write history and metrics."""
    best = fold_dir / str(state.get("best_checkpoint") or "")
    target = fold_dir / "model.keras"
    if best.is_file():
        with atomic_write(target) as tmp:
            shutil.copyfile(best, tmp)
    elif not target.is_file():
        raise ModelError(f"{fold_dir}: the best checkpoint is missing; delete the folder "
                         "and resume to retrain this fold")
    history = pd.DataFrame(state["history"])
    write_csv(fold_dir / "history.csv", history)
    metrics = dict(state["best_metrics"])
    metrics.update(fold=fold, best_epoch=state["best_epoch"], epochs=state["epoch"],
                   model=str(target.relative_to(run.run_dir)))
    write_json(fold_dir / "metrics.json", json_safe(metrics))  # the fold's commit point
    for old in fold_dir.glob("ckpt_e*.keras"):
        old.unlink(missing_ok=True)
    state_path = fold_dir / "state.json"
    state_path.unlink(missing_ok=True)
    fields = {k: v for k, v in metrics.items() if isinstance(v, int | float | str)}
    emit(run.progress, "fold_end", **{**fields, "folds": run.config.folds})
    return metrics


def _score_holdout(run: _Run, splits: pd.DataFrame, best_fold: int) -> dict[str, Any]:
    from allnet_core.metrics import binary_metrics, per_subject_summary, prediction_table

    check_cancel(run.cancel, "training")
    hold = _role_table(splits, "holdout")
    model_path = run.run_dir / f"fold_{best_fold}" / "model.keras"
    emit(run.progress, "holdout_start", fold=best_fold, n=len(hold))
    model = load_model(model_path)
    p = predict_p_all(model, hold, run.config)
    metrics = binary_metrics(hold["label"].to_numpy(), p)
    metrics.update(fold=best_fold, model=str(model_path.relative_to(run.run_dir)))
    predictions = prediction_table(hold, p)
    out = run.run_dir / "holdout"
    write_csv(out / "predictions.csv", predictions)
    write_csv(out / "per_subject.csv", per_subject_summary(predictions))
    write_json(out / "metrics.json", json_safe(metrics))
    emit(run.progress, "holdout_end", **{k: v for k, v in metrics.items()
                                         if isinstance(v, int | float | str)})
    return metrics


def cross_validate(
    dataset,
    config: TrainConfig | None = None,
    out_dir: str | os.PathLike = "allnet-run",
    progress: ProgressCallback | None = None,
    cancel: CancelLike | None = None,
    resume: bool = False,
    verify: bool = True,
) -> TrainResult:
    """Run the hold-out + k-fold protocol and write a run folder.

    Parameters
    ----------
    dataset : path-like or pandas.DataFrame
        A dataset folder (read with :func:`allnet_core.datasets.discover`, which decodes
        every image) or a table with columns ``path``, ``label``, ``subject``.
    config : TrainConfig, optional
        The protocol; the paper's defaults when omitted.
    out_dir : path-like
        The run folder. It must not hold another run unless ``resume`` is true.
    progress : callable, optional
        Receives event dicts: ``start``, ``check``, ``device``, ``fold_start``,
        ``batch_end`` (``loss``, ``accuracy``), ``epoch_end`` (``loss``, ``accuracy``,
        ``val_loss``, ``val_accuracy``, ``val_f1`` ...), ``fold_end``, ``fold_skipped``,
        ``holdout_start``, ``holdout_end``, ``trust_start``, ``trust_end`` (calibration,
        out-of-scope reference and model card), ``cancelled``, ``done``. Folds and epochs are
        numbered from 1.
    cancel : CancelToken, optional
        Checked between batches. When set, training stops at the next batch; finished
        epochs and folds stay on disk and the run can be resumed.
    resume : bool
        Continue the run in ``out_dir``: completed folds are kept, an unfinished fold
        continues from its last saved epoch. The configuration must match the saved one
        (except the runtime fields ``workers``, ``cache_bytes``, ``checkpoint_every``,
        ``feed``, ``cache_dir``). Without a run in ``out_dir`` a new run starts.
    verify : bool
        Decode every image of a table before training (a folder is always verified by
        ``discover``).

    Returns
    -------
    TrainResult

    Raises
    ------
    DatasetError
        Before any training: empty dataset, one class, unreadable file, fewer subjects
        than needed for the folds (the message suggests ``--folds N``).
    ConfigError
        A config value of a wrong type or out of range; ``out_dir`` holds another run (and
        ``resume`` is false) or a different config.
    RunInUseError
        Another process trains in ``out_dir`` (it holds the run folder's lock).
    OutputError
        ``out_dir`` is a file or cannot be written (checked before any work).
    CancelledError
        When ``cancel`` was set; the run folder stays resumable.

    Examples
    --------
    >>> cfg = TrainConfig.from_profile("quick")  # doctest: +SKIP
    >>> result = cross_validate("data/", cfg, "runs/quick")  # doctest: +SKIP
    >>> result.holdout["accuracy"]  # doctest: +SKIP
    0.93
    """
    config = config or TrainConfig()
    config.validate()  # nothing is written before the config is valid
    run_dir = check_output_dir(out_dir)
    check_not_in_use(run_dir)
    started = time.perf_counter()
    table, verified = as_table(dataset)
    splits = make_splits(table, config)  # raises on too few subjects / one class
    if verify and not verified:
        _verify_files(table["path"].tolist(), progress, cancel, workers=max(1, config.workers))
    with run_dir_lock(run_dir):  # a second writer is refused, naming this process
        return _run_protocol(run_dir, config, table, splits, progress, cancel, resume,
                             started)


def _best_fold(fold_metrics: list[dict[str, Any]], monitor: str = "val_f1") -> int:
    """1-based number of the fold with the highest validation F1 (the first of equals; with
    ``monitor`` ``"val_loss"``: the lowest validation loss); a fold whose figure is undefined
    ranks below any defined one."""
    keys = [_selection_key({"val_f1": as_float(m["f1"]), "val_loss": as_float(m["loss"])},
                           monitor) for m in fold_metrics]
    return int(np.argmax([k[0] for k in keys])) + 1


def _run_protocol(run_dir: Path, config: TrainConfig, table: pd.DataFrame,
                  splits: pd.DataFrame, progress: ProgressCallback | None,
                  cancel: CancelLike | None, resume: bool, started: float) -> TrainResult:
    """The part of :func:`cross_validate` that runs under the run folder's lock."""
    resumed = _prepare_run_dir(run_dir, config, splits, resume)
    run = _Run(config=config, run_dir=run_dir, progress=progress, cancel=cancel)
    emit(progress, "start", run_dir=str(run_dir), folds=config.folds, epochs=config.epochs,
         n_images=len(table), n_holdout=int((splits["role"] == "holdout").sum()),
         split=config.split, resumed=resumed)
    _log_environment(run_dir, config, progress)

    fold_metrics = []
    for fold in range(1, config.folds + 1):
        check_cancel(cancel, "training")
        fold_metrics.append(_train_fold(run, splits, fold))
    best_fold = _best_fold(fold_metrics, config.monitor)
    holdout = _score_holdout(run, splits, best_fold)
    from allnet_core.training.trust import write_trust  # calibration, scope, model card

    card = write_trust(run, splits, best_fold)

    from allnet_core.report import write_run_report

    summary = write_run_report(run_dir, config, splits, fold_metrics, holdout, best_fold,
                               seconds=time.perf_counter() - started, card=card)
    result = TrainResult(run_dir=run_dir, best_fold=best_fold,
                         best_model=run_dir / f"fold_{best_fold}" / "model.keras",
                         folds=fold_metrics, holdout=holdout, report=run_dir / "report.md",
                         summary=summary, card=card)
    emit(progress, "done", run_dir=str(run_dir), report=str(result.report),
         best_fold=best_fold, best_model=str(result.best_model),
         holdout_accuracy=holdout["accuracy"], holdout_f1=holdout["f1"])
    return result
