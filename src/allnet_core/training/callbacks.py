"""Per-epoch work of a fold: the Keras callback (progress events, cancel between batches,
validation scoring), the selection of the best epoch, and the epoch's commit to disk.

A fold's ``state.json`` is the commit point of an epoch: it is written after the epoch's
checkpoint, so a process killed at any moment loses at most the epoch it was in.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from allnet_core.io import write_json
from allnet_core.progress import emit
from allnet_core.training.config import TrainConfig
from allnet_core.training.runtime import _save_model, predict_p_all

__all__: list[str] = []


#: Least seconds between two ``batch_end`` events (the first batch of an epoch always
#: sends one). Reading a batch's loss waits for the device to finish the step, so an event
#: per batch would keep a fast GPU from queueing the next step while Python works.
BATCH_EVENT_SECONDS = 0.25


def _make_callback(run, fold: int, fold_dir: Path, val: pd.DataFrame, state: dict,
                   val_feed=None):
    """A keras Callback: progress events, cancel between batches, per-epoch checkpoints.

    Validation reads ``val_feed`` (an unshuffled feed of ``val``, e.g. a cached one) when
    given, else the images of ``val``."""
    from allnet_core.backend import get_keras
    from allnet_core.metrics import binary_metrics, labels_to_int

    keras = get_keras()
    config: TrainConfig = run.config
    y_val = labels_to_int(val["label"].to_numpy())

    class _FoldCallback(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.cancelled = False
            self.epoch_started = self.last_event = 0.0
            self.epoch = 0

        def on_epoch_begin(self, epoch, logs=None):
            self.epoch_started = time.perf_counter()
            self.last_event = 0.0
            self.epoch = epoch + 1

        def on_train_batch_end(self, batch, logs=None):
            now = time.perf_counter()
            if batch == 0 or now - self.last_event >= BATCH_EVENT_SECONDS:
                self.last_event = now
                emit(run.progress, "batch_end", fold=fold, folds=config.folds,
                     epoch=self.epoch, epochs=config.epochs, batch=int(batch) + 1,
                     batches=run.batches, **{k: float(v) for k, v in (logs or {}).items()})
            if run.cancel is not None and run.cancel.is_set():
                self.cancelled = True
                self.model.stop_training = True

        def on_epoch_end(self, epoch, logs=None):
            if self.cancelled:  # the epoch is incomplete: keep the last committed state
                return
            keras_logs = logs if logs is not None else {}
            logs = {k: float(v) for k, v in keras_logs.items()}  # waits for the last step
            train_seconds = time.perf_counter() - self.epoch_started
            p = predict_p_all(self.model, val, config, feed=val_feed)
            m = binary_metrics(y_val, p)
            row = {"epoch": epoch + 1, "loss": logs.get("loss", math.nan),
                   "accuracy": logs.get("accuracy", math.nan),
                   "val_loss": _cross_entropy(y_val, p)}
            row.update({f"val_{k}": m[k] for k in ("accuracy", "specificity", "recall",
                                                   "precision", "f1", "mcc", "roc_auc")})
            row["seconds"] = time.perf_counter() - self.epoch_started
            row["train_seconds"] = train_seconds
            row["lr"] = _learning_rate(self.model)
            keras_logs.update({k: row[k] for k in ("val_loss", "val_f1")})  # for the schedule
            state["history"].append(row)
            key = _selection_key(row, config.monitor)
            improved = state["best_key"] is None or key > tuple(state["best_key"])
            if improved:
                state["best_key"] = list(key)
                state["best_epoch"] = epoch + 1
                state["best_metrics"] = {**m, "loss": row["val_loss"], "epoch": epoch + 1}
            state["epoch"] = epoch + 1
            last = epoch + 1 == config.epochs
            if improved or last or (epoch + 1) % config.checkpoint_every == 0:
                _commit_epoch(self.model, fold_dir, state, improved)
            emit(run.progress, "epoch_end", fold=fold, folds=config.folds, epoch=epoch + 1,
                 epochs=config.epochs, **{k: v for k, v in row.items() if k != "epoch"},
                 best_epoch=state["best_epoch"])

    return _FoldCallback()


def _selection_key(row: dict[str, float], monitor: str = "val_f1") -> tuple[float, float]:
    """Higher is better: validation F1, then lower validation loss; with ``monitor``
    ``"val_loss"``, lower validation loss, then F1."""
    f1 = round(float(row["val_f1"]), 12) if np.isfinite(row["val_f1"]) else -1.0
    loss = -float(row["val_loss"]) if np.isfinite(row["val_loss"]) else -math.inf
    return (loss, f1) if monitor == "val_loss" else (f1, loss)


def _learning_rate(model) -> float:
    """The optimizer's current learning rate."""
    from allnet_core.backend import get_keras

    return float(get_keras().ops.convert_to_numpy(model.optimizer.learning_rate))


def _load_fold_state(fold_dir: Path) -> dict[str, Any]:
    """The fold's last committed ``state.json``, or the state of a fold not started."""
    state_path = fold_dir / "state.json"
    if not state_path.is_file():
        return {"epoch": 0, "best_key": None, "best_epoch": 0, "best_metrics": None,
                "history": [], "checkpoint": None, "best_checkpoint": None}
    state = json.loads(state_path.read_text(encoding="utf-8"))
    # continue from the checkpoint: later epochs (if any were recorded) are run again
    state["history"] = state["history"][: state["checkpoint_epoch"]]
    state["epoch"] = state["checkpoint_epoch"]
    return state


def _commit_epoch(model, fold_dir: Path, state: dict, improved: bool) -> None:
    """Save the epoch's checkpoint, then ``state.json`` (the commit), then prune."""
    name = f"ckpt_e{state['epoch']:03d}.keras"
    _save_model(model, fold_dir / name)
    state["checkpoint"] = name
    state["checkpoint_epoch"] = state["epoch"]
    if improved:
        state["best_checkpoint"] = name
    # The history row count must match the checkpoint's epoch on resume.
    write_json(fold_dir / "state.json", state)
    keep = {state["checkpoint"], state.get("best_checkpoint")}
    for old in fold_dir.glob("ckpt_e*.keras"):
        if old.name not in keep:
            old.unlink(missing_ok=True)


def _cross_entropy(y: np.ndarray, p_all: np.ndarray) -> float:
    p_true = np.where(y == 1, p_all, 1.0 - p_all)
    return float(-np.mean(np.log(np.clip(p_true, 1e-7, 1.0)))) if len(y) else math.nan
