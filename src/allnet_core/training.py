"""Training ALLNet: hold-out split, k-fold cross-validation, resumable run folders.

The protocol of :func:`cross_validate` (defaults are the paper's, see :class:`TrainConfig`):

1. Split off a class-stratified hold-out set. With ``split="subject"`` (the default) the
   split is grouped by subject: no donor's cells are on both sides
   (:class:`sklearn.model_selection.StratifiedGroupKFold`; the hold-out is one of its
   ``round(1 / holdout)`` folds). With ``split="image"`` cells are split one by one, as the
   paper did (:func:`sklearn.model_selection.train_test_split`); the report then says that
   subjects are shared between splits.
2. Split the rest into ``folds`` folds the same way (``StratifiedGroupKFold`` or
   ``StratifiedKFold``).
3. For each fold, balance and augment the *training* part only
   (:func:`allnet_core.augment.balance_plan`, ``per_class`` images per class) and validate on
   the untouched validation part after every epoch. The epoch with the best validation F1
   is the fold's model.
4. The fold with the best validation F1 is scored on the hold-out set.
5. Every fold, the mean and standard deviation over folds, and the hold-out are reported
   (``report.md``, ``report.json``, ``curves.png``, ``confusion.png``).

Run folder (every file is written atomically: a crash never leaves a half-written file)::

    config.json  environment.json  splits.csv  report.md  report.json  curves.png
    confusion.png
    fold_<k>/plan.csv history.csv metrics.json model.keras
    fold_<k>/state.json ckpt_e<NNN>.keras   (only while the fold is unfinished)
    holdout/metrics.json predictions.csv per_subject.csv

Resuming (``resume=True``) skips folds whose ``metrics.json`` exists and continues an
unfinished fold from the checkpoint named in its ``state.json``. ``state.json`` is the
commit point of an epoch: it is written after the epoch's checkpoint, so a process killed
at any moment loses at most the epoch it was in.

Batch size is global: with several GPUs (``tf.distribute.MirroredStrategy`` on TensorFlow,
``keras.distribution.DataParallel`` on JAX) each of ``n`` replicas sees
``batch_size / n`` images per step, and the learning rate is not rescaled.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import math
import os
import shutil
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from allnet_core.errors import AllnetError, CancelledError, ConfigError, DatasetError, ModelError
from allnet_core.io import atomic_write, read_rgb, write_csv, write_json
from allnet_core.metrics import as_float, json_safe
from allnet_core.progress import CancelLike, ProgressCallback, check_cancel, emit

__all__ = [
    "PROFILES",
    "TrainConfig",
    "TrainResult",
    "check_dataset",
    "cross_validate",
    "load_model",
    "make_splits",
    "predict_p_all",
    "resume_config",
]

log = logging.getLogger(__name__)

_SPLITS = ("subject", "image")
_PRECISIONS = ("float32", "mixed", "mixed_float16", "mixed_bfloat16")
# Fields that do not change what is computed: they may differ when a run is resumed.
_RUNTIME_FIELDS = ("workers", "cache_bytes", "checkpoint_every", "profile")


@dataclass
class TrainConfig:
    """Everything that defines a training run; defaults are the paper's protocol.

    Every ``allnet train`` flag and every field of the napari "Train ALLNet" widget has the
    name of one of these fields (``--batch-size`` -> ``batch_size``).

    Attributes
    ----------
    optimizer : str
        Keras optimizer name (``"adam"`` in the paper).
    lr : float
        Learning rate (1e-5).
    batch_size : int
        Global batch size (16); split across GPUs when there are several.
    epochs : int
        Epochs per fold (65).
    loss : str
        Keras loss name (``"categorical_crossentropy"``).
    holdout : float
        Fraction of the data kept out of cross-validation (0.2). With ``split="subject"``
        it is realised as one of ``round(1 / holdout)`` subject-grouped folds.
    folds : int
        Cross-validation folds on the rest (5).
    per_class : int
        Training images per class after balancing and augmentation (6000).
    input_size : int
        Side of the square model input (450).
    split : {"subject", "image"}
        ``"subject"`` keeps every subject's cells on one side of every split (honest);
        ``"image"`` splits cells one by one as the paper did.
    seed : int
        Seed of splits, balancing, augmentation, shuffling and weight initialisation.
    precision : {"float32", "mixed", "mixed_float16", "mixed_bfloat16"}
        ``"mixed"`` means ``mixed_float16`` (with automatic loss scaling) on a GPU and
        ``mixed_bfloat16`` on a CPU. The softmax output stays float32.
    conv_dropout, dense_dropout : float
        Dropout rates (the paper gives none; see :mod:`allnet_core.model`).
    dense_units : int
        Width of the two hidden dense layers (4096 in the paper; smaller in ``quick``).
    bn_momentum : float
        Momentum of the batch-normalisation moving statistics (Keras' 0.99 by default).
        Short runs with few steps per epoch (the ``quick`` profile) use 0.9, otherwise the
        moving statistics used at validation lag far behind the weights.
    augment : bool
        Apply the paper's augmentations to the balanced training set (``True``). When
        ``False`` minority classes are filled with unaugmented repeats.
    checkpoint_every : int
        Save a resumable checkpoint every this many epochs (1: a crash loses at most one
        epoch). Larger values save disk time on fast GPUs.
    workers : int
        Threads reading and augmenting images for the training feed.
    cache_bytes : int
        Memory the feed may use to keep decoded images (0: none).
    profile : str
        Name of the preset the values came from (informational; see :data:`PROFILES`).
    """

    optimizer: str = "adam"
    lr: float = 1e-5
    batch_size: int = 16
    epochs: int = 65
    loss: str = "categorical_crossentropy"
    holdout: float = 0.2
    folds: int = 5
    per_class: int = 6000
    input_size: int = 450
    split: str = "subject"
    seed: int = 0
    precision: str = "float32"
    conv_dropout: float = 0.25
    dense_dropout: float = 0.5
    dense_units: int = 4096
    bn_momentum: float = 0.99
    augment: bool = True
    checkpoint_every: int = 1
    workers: int = 2
    cache_bytes: int = 0
    profile: str = "paper"

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise :class:`ConfigError` naming the first value out of range."""
        checks = [
            (self.lr > 0, f"lr must be > 0, got {self.lr}"),
            (self.batch_size >= 1, f"batch_size must be >= 1, got {self.batch_size}"),
            (self.epochs >= 1, f"epochs must be >= 1, got {self.epochs}"),
            (0.0 < self.holdout < 1.0, f"holdout must be in (0, 1), got {self.holdout}"),
            (self.folds >= 2, f"folds must be >= 2, got {self.folds}"),
            (self.per_class >= 1, f"per_class must be >= 1, got {self.per_class}"),
            (self.input_size >= 9, f"input_size must be >= 9, got {self.input_size}"),
            (self.split in _SPLITS, f"split must be one of {_SPLITS}, got {self.split!r}"),
            (self.precision in _PRECISIONS,
             f"precision must be one of {_PRECISIONS}, got {self.precision!r}"),
            (0.0 <= self.conv_dropout < 1.0, f"conv_dropout must be in [0, 1), got "
             f"{self.conv_dropout}"),
            (0.0 <= self.dense_dropout < 1.0, f"dense_dropout must be in [0, 1), got "
             f"{self.dense_dropout}"),
            (self.dense_units >= 1, f"dense_units must be >= 1, got {self.dense_units}"),
            (0.0 <= self.bn_momentum < 1.0, f"bn_momentum must be in [0, 1), got "
             f"{self.bn_momentum}"),
            (self.checkpoint_every >= 1, f"checkpoint_every must be >= 1, got "
             f"{self.checkpoint_every}"),
            (self.workers >= 1, f"workers must be >= 1, got {self.workers}"),
            (self.cache_bytes >= 0, f"cache_bytes must be >= 0, got {self.cache_bytes}"),
        ]
        for ok, message in checks:
            if not ok:
                raise ConfigError(message)

    @classmethod
    def from_profile(cls, profile: str = "paper", **overrides: Any) -> TrainConfig:
        """A config from a preset of :data:`PROFILES`, with some fields overridden.

        Examples
        --------
        >>> TrainConfig.from_profile("quick", epochs=2).epochs
        2
        """
        if profile not in PROFILES:
            raise ConfigError(f"unknown profile {profile!r}; choose one of {sorted(PROFILES)}")
        values = {**PROFILES[profile], "profile": profile}
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        """Plain ``dict`` of the fields."""
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        """JSON text of the fields (what ``config.json`` holds)."""
        return json.dumps(self.to_dict(), indent=2) + "\n"

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainConfig:
        """Build from a ``dict``; unknown keys are an error."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError(f"unknown TrainConfig field(s): {', '.join(unknown)}")
        return cls(**values)

    @classmethod
    def from_json(cls, text_or_path: str | os.PathLike) -> TrainConfig:
        """Build from JSON text or from a ``config.json`` file."""
        text = str(text_or_path)
        if not text.lstrip().startswith("{"):
            path = Path(text_or_path)
            try:
                text = path.read_text(encoding="utf-8")
            except OSError as exc:
                raise ConfigError(f"{path}: cannot read the config ({exc})") from exc
        try:
            values = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"config is not valid JSON ({exc})") from exc
        return cls.from_dict(values)


def resume_config(run_dir: str | os.PathLike, profile: str | None = None,
                  **overrides: Any) -> TrainConfig:
    """The config to continue the run in ``run_dir`` with: its saved ``config.json`` with
    ``overrides`` (``None`` values ignored) applied; a fresh
    ``TrainConfig.from_profile(profile or "paper", **overrides)`` when there is no run yet.

    :func:`cross_validate` still refuses a resume whose config changed anything but
    ``workers``, ``cache_bytes`` or ``checkpoint_every``.
    """
    saved = Path(run_dir) / "config.json"
    overrides = {k: v for k, v in overrides.items() if v is not None}
    if not saved.is_file():
        return TrainConfig.from_profile(profile or "paper", **overrides)
    base = TrainConfig.from_json(saved).to_dict()
    if profile is not None and profile != base["profile"]:
        raise ConfigError(f"{run_dir} was started with profile {base['profile']!r}, not "
                          f"{profile!r}; resume it without --profile")
    base.update(overrides)
    return TrainConfig.from_dict(base)


#: Presets. ``paper`` is the paper's protocol. ``quick`` is a CPU demo, *not* the paper's
#: model: a small input (64 px), narrow dense layers (256 units, about 3 M parameters),
#: 3 folds, 300 images per class, 15 epochs, a higher learning rate (1e-4) and a lower
#: batch-norm momentum (0.9, for runs of a few hundred steps), so that a subject-structured
#: synthetic dataset trains in minutes on two CPU cores.
PROFILES: dict[str, dict[str, Any]] = {
    "paper": {},
    "quick": {
        "input_size": 64,
        "dense_units": 256,
        "epochs": 15,
        "per_class": 300,
        "folds": 3,
        "batch_size": 16,
        "lr": 1e-4,
        "bn_momentum": 0.9,
        "cache_bytes": 512 * 2**20,
    },
}


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
    """

    run_dir: Path
    best_fold: int
    best_model: Path
    folds: list[dict[str, Any]]
    holdout: dict[str, Any]
    report: Path
    summary: dict[str, Any] = field(repr=False, default_factory=dict)


# --------------------------------------------------------------------------- dataset checks


def _as_table(dataset) -> tuple[pd.DataFrame, bool]:
    """(table, verified): accept a folder (read with ``discover``) or a DataFrame."""
    if isinstance(dataset, pd.DataFrame):
        table, verified = dataset.copy(), False
    else:
        from allnet_core.datasets import discover

        table, verified = discover(dataset), True
    missing = {"path", "label", "subject"} - set(table.columns)
    if missing:
        raise DatasetError(f"dataset table lacks column(s) {sorted(missing)}")
    table = table.reset_index(drop=True)
    table["path"] = table["path"].astype(str)
    table["label"] = table["label"].astype(str).str.upper()
    table["subject"] = table["subject"].astype(str).str.lower()
    return table, verified


def check_dataset(table: pd.DataFrame, config: TrainConfig) -> None:
    """Raise :class:`DatasetError` if ``table`` cannot support ``config``'s protocol.

    Checks: not empty, labels ALL/HEM only, both classes present, and enough subjects
    (``split="subject"``) or images (``split="image"``) of each class for a hold-out and
    ``config.folds`` validation folds. The message suggests a fix (``--folds N``).
    """
    if len(table) == 0:
        raise DatasetError("the dataset is empty: no labelled images")
    bad = sorted(set(table["label"]) - {"ALL", "HEM"})
    if bad:
        raise DatasetError(f"labels must be ALL or HEM, found {bad}")
    classes = sorted(set(table["label"]))
    if len(classes) < 2:
        raise DatasetError(
            f"the dataset holds only {classes[0]} cells; training needs both ALL and HEM")
    need = config.folds + 1  # one group per class in the hold-out and in each val fold
    if config.split == "subject":
        per_class = table.groupby("label")["subject"].nunique()
        unit = "subjects"
    else:
        per_class = table.groupby("label").size()
        unit = "images"
    fewest = int(per_class.min())
    if fewest < need:
        cls = per_class.idxmin()
        hint = (f"use --folds {fewest - 1}" if fewest - 1 >= 2 else
                "add data" + (" or use --split image (not subject-disjoint)"
                              if config.split == "subject" else ""))
        raise DatasetError(
            f"only {fewest} {cls} {unit}, but a hold-out plus {config.folds} folds needs at "
            f"least {need} {unit} of each class; {hint}")


def _verify_files(paths: list[str], progress, cancel, workers: int = 4) -> None:
    """Decode every image once so that a bad file stops the run before training."""

    def check(p: str) -> str | None:
        try:
            read_rgb(p)
        except AllnetError as exc:
            return str(exc)
        return None

    bad = []
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        for i, problem in enumerate(pool.map(check, paths), 1):
            if problem:
                bad.append(problem)
            if i % 256 == 0 or i == len(paths):
                emit(progress, "check", done=i, total=len(paths))
                check_cancel(cancel, "file check")
    if bad:
        more = f" (and {len(bad) - 5} more)" if len(bad) > 5 else ""
        raise DatasetError("unreadable image(s): " + "; ".join(bad[:5]) + more)


# --------------------------------------------------------------------------- splits


def _holdout_indices(y, groups, config: TrainConfig) -> tuple[np.ndarray, np.ndarray]:
    from sklearn.model_selection import StratifiedGroupKFold, train_test_split

    idx = np.arange(len(y))
    if config.split == "image":
        rest, hold = train_test_split(idx, test_size=config.holdout, stratify=y,
                                      random_state=config.seed)
        return np.sort(rest), np.sort(hold)
    n_splits = max(2, round(1.0 / config.holdout))
    sgkf = StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=config.seed)
    rest, hold = next(sgkf.split(idx, y, groups))
    return rest, hold


def _fold_indices(y, groups, config: TrainConfig):
    from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold

    idx = np.arange(len(y))
    if config.split == "image":
        cv = StratifiedKFold(n_splits=config.folds, shuffle=True, random_state=config.seed)
        return list(cv.split(idx, y))
    cv = StratifiedGroupKFold(n_splits=config.folds, shuffle=True, random_state=config.seed)
    return list(cv.split(idx, y, groups))


def make_splits(table: pd.DataFrame, config: TrainConfig) -> pd.DataFrame:
    """Assign every image to the hold-out or to the folds' training/validation parts.

    Parameters
    ----------
    table : pandas.DataFrame
        Columns ``path``, ``label`` (``"ALL"``/``"HEM"``) and ``subject``, as from
        :func:`allnet_core.datasets.discover`.
    config : TrainConfig
        Uses ``split``, ``holdout``, ``folds`` and ``seed``.

    Returns
    -------
    pandas.DataFrame
        Long format, columns ``path``, ``subject``, ``label``, ``role``. A hold-out image
        has one row (``role="holdout"``); every other image has one row per fold:
        ``fold_<k>_val`` for the fold it validates and ``fold_<k>_train`` for the others
        (``k`` from 1). Deterministic for a given table order and ``config.seed``.

    Raises
    ------
    DatasetError
        If there are too few subjects/images (see :func:`check_dataset`) or a split ends up
        without one of the classes.
    """
    table, _ = _as_table(table)
    check_dataset(table, config)
    y = (table["label"] == "ALL").to_numpy().astype(int)
    groups = table["subject"].to_numpy()
    rest, hold = _holdout_indices(y, groups, config)
    parts = [table.iloc[hold].assign(role="holdout")]
    fold_parts = _fold_indices(y[rest], groups[rest], config)
    for k, (tr, va) in enumerate(fold_parts, 1):
        parts.append(table.iloc[rest[tr]].assign(role=f"fold_{k}_train"))
        parts.append(table.iloc[rest[va]].assign(role=f"fold_{k}_val"))
    splits = pd.concat(parts, ignore_index=True)[["path", "subject", "label", "role"]]
    for role, g in splits.groupby("role"):
        if g["label"].nunique() < 2:
            raise DatasetError(
                f"split '{role}' holds only {g['label'].iloc[0]} cells: too few subjects per "
                f"class for {config.folds} folds; try --folds {max(2, config.folds - 1)} or "
                "add subjects")
    return splits


def _role_table(splits: pd.DataFrame, role: str) -> pd.DataFrame:
    return splits[splits["role"] == role].reset_index(drop=True)


# --------------------------------------------------------------------------- keras helpers


def _precision_policy_name(precision: str) -> str:
    if precision == "mixed":
        from allnet_core.backend import visible_devices

        gpu = any(d["type"] == "GPU" for d in visible_devices())
        return "mixed_float16" if gpu else "mixed_bfloat16"
    return precision


@contextlib.contextmanager
def _dtype_policy(precision: str) -> Iterator[str]:
    """Set Keras' global dtype policy while a model is built or loaded; restore after."""
    from allnet_core.backend import get_keras

    keras = get_keras()
    name = _precision_policy_name(precision)
    old = keras.config.dtype_policy()
    keras.config.set_dtype_policy(name)
    try:
        yield name
    finally:
        keras.config.set_dtype_policy(old)


@contextlib.contextmanager
def _distribution_scope() -> Iterator[dict[str, Any]]:
    """Data-parallel scope over all GPUs when there are several, else a no-op."""
    from allnet_core.backend import get_keras, visible_devices

    keras = get_keras()
    gpus = [d for d in visible_devices() if d["type"] == "GPU"]
    info = {"strategy": "single-device", "replicas": 1}
    backend = keras.backend.backend()
    if len(gpus) > 1 and backend == "tensorflow":
        import tensorflow as tf  # guarded: multi-GPU on the TensorFlow backend only

        strategy = tf.distribute.MirroredStrategy()
        info = {"strategy": "tf.distribute.MirroredStrategy",
                "replicas": int(strategy.num_replicas_in_sync)}
        with strategy.scope():
            yield info
        return
    if len(gpus) > 1 and backend == "jax":
        devices = keras.distribution.list_devices("gpu")
        dist = keras.distribution.DataParallel(devices=devices)
        info = {"strategy": "keras.distribution.DataParallel", "replicas": len(devices)}
        with dist.scope():
            yield info
        return
    yield info


def _compile(model, config: TrainConfig) -> None:
    from allnet_core.backend import get_keras

    keras = get_keras()
    try:
        optimizer = keras.optimizers.get(config.optimizer)
    except ValueError as exc:
        raise ConfigError(f"unknown optimizer {config.optimizer!r} ({exc})") from exc
    optimizer = type(optimizer)(learning_rate=config.lr)
    model.compile(optimizer=optimizer, loss=config.loss, metrics=["accuracy"])


def _new_model(config: TrainConfig):
    from allnet_core.model import build_allnet

    s = config.input_size
    model = build_allnet((s, s, 3), conv_dropout=config.conv_dropout,
                         dense_dropout=config.dense_dropout, dense_units=config.dense_units)
    for layer in model.layers:
        if type(layer).__name__ == "BatchNormalization":
            layer.momentum = config.bn_momentum
    _compile(model, config)
    return model


def load_model(path: str | os.PathLike, compile: bool = False):
    """Load a ``.keras`` model file with ``safe_mode=True``.

    Raises
    ------
    ModelError
        If the file is missing or not a loadable Keras model.
    """
    from allnet_core.backend import get_keras

    path = Path(path)
    if not path.is_file():
        raise ModelError(f"{path}: no such model file")
    keras = get_keras()
    try:
        return keras.saving.load_model(path, compile=compile, safe_mode=True)
    except Exception as exc:  # keras raises ValueError, OSError, zipfile errors...
        raise ModelError(f"{path}: cannot load the model ({type(exc).__name__}: {exc})") from exc


def _save_model(model, path: Path) -> None:
    with atomic_write(path) as tmp:
        model.save(tmp)


def _feed(table: pd.DataFrame, config: TrainConfig, plan=None, augmenter=None,
          shuffle: bool = False, seed: int = 0, batch_size: int | None = None,
          epoch: int = 0):
    from allnet_core.feed import TrainingFeed

    return TrainingFeed(
        table["path"].tolist(), table["label"].tolist(), plan=plan,
        batch_size=batch_size or config.batch_size, input_size=config.input_size,
        augmenter=augmenter, shuffle=shuffle, seed=seed, workers=config.workers,
        cache_bytes=config.cache_bytes, epoch=epoch,
    )


def predict_p_all(model, table: pd.DataFrame, config: TrainConfig,
                  batch_size: int | None = None) -> np.ndarray:
    """P(ALL) for every image of ``table`` (in order), read without augmentation."""
    if len(table) == 0:
        return np.zeros(0)
    feed = _feed(table, config, batch_size=batch_size or max(config.batch_size, 32))
    probs = np.asarray(model.predict(feed, verbose=0), dtype=np.float64)
    return np.clip(probs[: len(table), 1], 0.0, 1.0)


def _cross_entropy(y: np.ndarray, p_all: np.ndarray) -> float:
    p_true = np.where(y == 1, p_all, 1.0 - p_all)
    return float(-np.mean(np.log(np.clip(p_true, 1e-7, 1.0)))) if len(y) else math.nan


# --------------------------------------------------------------------------- callbacks


def _make_callback(run, fold: int, fold_dir: Path, val: pd.DataFrame, state: dict):
    """A keras Callback: progress events, cancel between batches, per-epoch checkpoints."""
    from allnet_core.backend import get_keras
    from allnet_core.metrics import binary_metrics, labels_to_int

    keras = get_keras()
    config: TrainConfig = run.config
    y_val = labels_to_int(val["label"].to_numpy())

    class _FoldCallback(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.cancelled = False
            self.epoch_started = 0.0
            self.epoch = 0

        def on_epoch_begin(self, epoch, logs=None):
            self.epoch_started = time.perf_counter()
            self.epoch = epoch + 1

        def on_train_batch_end(self, batch, logs=None):
            logs = logs or {}
            emit(run.progress, "batch_end", fold=fold, folds=config.folds, epoch=self.epoch,
                 epochs=config.epochs, batch=int(batch) + 1, batches=run.batches,
                 **{k: float(v) for k, v in logs.items()})
            if run.cancel is not None and run.cancel.is_set():
                self.cancelled = True
                self.model.stop_training = True

        def on_epoch_end(self, epoch, logs=None):
            if self.cancelled:  # the epoch is incomplete: keep the last committed state
                return
            logs = {k: float(v) for k, v in (logs or {}).items()}
            p = predict_p_all(self.model, val, config)
            m = binary_metrics(y_val, p)
            row = {"epoch": epoch + 1, "loss": logs.get("loss", math.nan),
                   "accuracy": logs.get("accuracy", math.nan),
                   "val_loss": _cross_entropy(y_val, p)}
            row.update({f"val_{k}": m[k] for k in ("accuracy", "specificity", "recall",
                                                   "precision", "f1", "mcc", "roc_auc")})
            row["seconds"] = time.perf_counter() - self.epoch_started
            state["history"].append(row)
            key = _selection_key(row)
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


def _selection_key(row: dict[str, float]) -> tuple[float, float]:
    """Higher is better: validation F1, then lower validation loss."""
    f1 = row["val_f1"] if np.isfinite(row["val_f1"]) else -1.0
    loss = row["val_loss"] if np.isfinite(row["val_loss"]) else math.inf
    return (round(float(f1), 12), -float(loss))


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


# --------------------------------------------------------------------------- the run


@dataclass
class _Run:
    config: TrainConfig
    run_dir: Path
    progress: ProgressCallback | None
    cancel: CancelLike | None
    batches: int = 0


def _check_resume_config(run_dir: Path, config: TrainConfig) -> None:
    saved = TrainConfig.from_json(run_dir / "config.json")
    diff = [f.name for f in dataclasses.fields(TrainConfig)
            if f.name not in _RUNTIME_FIELDS
            and getattr(saved, f.name) != getattr(config, f.name)]
    if diff:
        details = ", ".join(f"{n}: run has {getattr(saved, n)!r}, asked {getattr(config, n)!r}"
                            for n in diff)
        raise ConfigError(
            f"{run_dir}: cannot resume with a different configuration ({details}); resume "
            "without changing these options, or start a new run with another --out")


def _prepare_run_dir(run_dir: Path, config: TrainConfig, splits: pd.DataFrame,
                     resume: bool) -> bool:
    """Create or reopen the run folder; return True when resuming an existing run."""
    existing = (run_dir / "config.json").is_file()
    if existing and not resume:
        raise ConfigError(
            f"{run_dir} already holds a training run; continue it with --resume or choose "
            "another --out")
    if existing:
        _remove_stale_temporaries(run_dir)
        _check_resume_config(run_dir, config)
        saved = pd.read_csv(run_dir / "splits.csv", dtype=str, keep_default_na=False)
        same = (len(saved) == len(splits) and
                (saved[["path", "role"]].to_numpy() == splits[["path", "role"]]
                 .astype(str).to_numpy()).all())
        if not same:
            raise DatasetError(
                f"{run_dir}: the dataset changed since this run started (its splits.csv "
                "differs); start a new run with another --out")
        return True
    # A folder holding only what a killed start left (splits.csv, temporaries) is reused.
    if run_dir.exists() and any(p for p in run_dir.iterdir()
                                if not p.name.startswith(".") and p.name != "splits.csv"):
        raise ConfigError(f"{run_dir} exists and is not empty; choose another --out")
    run_dir.mkdir(parents=True, exist_ok=True)
    _remove_stale_temporaries(run_dir)
    write_csv(run_dir / "splits.csv", splits)
    write_json(run_dir / "config.json", config.to_dict())  # the run's commit point
    return False


def _remove_stale_temporaries(run_dir: Path) -> None:
    """Delete temporary files that a killed process left behind (``.name.XXXX.ext`` from
    :func:`allnet_core.io.atomic_write`); files under real names are always complete."""
    for p in list(run_dir.glob(".*")) + list(run_dir.glob("*/.*")):
        if p.is_file():
            p.unlink(missing_ok=True)


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
        emit(run.progress, "fold_skipped", fold=fold, folds=config.folds,
             reason="already complete", val_f1=metrics.get("f1"))
        return metrics

    train = _role_table(splits, f"fold_{fold}_train")
    val = _role_table(splits, f"fold_{fold}_val")
    plan, augmenter = _balance(train, config, fold)
    if not (fold_dir / "plan.csv").is_file():
        write_csv(fold_dir / "plan.csv", _plan_for_csv(plan, train))

    state_path = fold_dir / "state.json"
    state: dict[str, Any] = {"epoch": 0, "best_key": None, "best_epoch": 0,
                             "best_metrics": None, "history": [], "checkpoint": None,
                             "best_checkpoint": None}
    if state_path.is_file():
        state = json.loads(state_path.read_text(encoding="utf-8"))
        state["history"] = state["history"][: state["checkpoint_epoch"]]
        state["epoch"] = state["checkpoint_epoch"]

    with _dtype_policy(config.precision), _distribution_scope():
        if state["checkpoint"]:
            model = load_model(fold_dir / state["checkpoint"], compile=True)
        else:
            keras.utils.set_random_seed(config.seed * 1000 + fold)
            model = _new_model(config)
        start = int(state["epoch"])
        feed = _feed(train, config, plan=plan, augmenter=augmenter, shuffle=True,
                     seed=config.seed * 1000 + fold, epoch=int(state["epoch"]))
        run.batches = len(feed)
        emit(run.progress, "fold_start", fold=fold, folds=config.folds, epochs=config.epochs,
             start_epoch=start + 1, n_train=len(train), n_train_balanced=len(plan),
             n_val=len(val), batches=run.batches)
        if start < config.epochs:
            if start:
                keras.utils.set_random_seed(config.seed * 1000 + fold * 100 + start)
            callback = _make_callback(run, fold, fold_dir, val, state)
            model.fit(feed, epochs=config.epochs, initial_epoch=start, verbose=0,
                      shuffle=False, callbacks=[callback])
            if callback.cancelled:
                done = state["checkpoint_epoch"] if state.get("checkpoint") else 0
                emit(run.progress, "cancelled", fold=fold, epoch=done)
                raise CancelledError(
                    f"training cancelled during fold {fold} (epochs 1-{done} of it are "
                    f"saved); continue with `allnet train ... --out {run.run_dir} --resume`")
    return _finish_fold(run, fold, fold_dir, state)


def _plan_for_csv(plan: pd.DataFrame, train: pd.DataFrame) -> pd.DataFrame:
    out = plan.copy()
    if "index" in out.columns:
        out.insert(1, "path", train["path"].to_numpy()[out["index"].to_numpy(int)])
    for col in out.columns:
        if out[col].map(lambda v: isinstance(v, dict | list)).any():
            out[col] = out[col].map(lambda v: json.dumps(v, default=_jsonable))
    return out


def _jsonable(o):
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    return str(o)


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
    from allnet_core.metrics import binary_metrics, per_subject_summary

    check_cancel(run.cancel, "training")
    hold = _role_table(splits, "holdout")
    model_path = run.run_dir / f"fold_{best_fold}" / "model.keras"
    emit(run.progress, "holdout_start", fold=best_fold, n=len(hold))
    model = load_model(model_path)
    p = predict_p_all(model, hold, run.config)
    metrics = binary_metrics(hold["label"].to_numpy(), p)
    metrics.update(fold=best_fold, model=str(model_path.relative_to(run.run_dir)))
    predictions = hold[["path", "subject", "label"]].assign(
        p_all=p, predicted=np.where(p >= 0.5, "ALL", "HEM"))
    out = run.run_dir / "holdout"
    write_csv(out / "predictions.csv", predictions)
    write_csv(out / "per_subject.csv", per_subject_summary(predictions))
    write_json(out / "metrics.json", json_safe(metrics))
    emit(run.progress, "holdout_end", **{k: v for k, v in metrics.items()
                                         if isinstance(v, int | float | str)})
    return metrics


def _log_environment(run: _Run) -> dict[str, Any]:
    from allnet_core.backend import describe_environment, get_keras

    env = describe_environment()
    gpus = [d for d in env["devices"] if d["type"] == "GPU"]
    backend = get_keras().backend.backend()
    if len(gpus) > 1 and backend in ("tensorflow", "jax"):
        dist_info = {"strategy": "tf.distribute.MirroredStrategy" if backend == "tensorflow"
                     else "keras.distribution.DataParallel", "replicas": len(gpus)}
    else:
        dist_info = {"strategy": "single-device", "replicas": 1}
    env["precision_policy"] = _precision_policy_name(run.config.precision)
    env["distribution"] = dist_info
    name = env["devices"][0]["name"] if env["devices"] else "cpu"
    log.info("training on %s (%s), Keras backend %s, precision %s",
             env["device_used"], name, env["keras_backend"], env["precision_policy"])
    emit(run.progress, "device", device=env["device_used"], name=name,
         backend=env["keras_backend"], precision=env["precision_policy"],
         replicas=dist_info.get("replicas", 1))
    write_json(run.run_dir / "environment.json", env)
    return env


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
        ``holdout_start``, ``holdout_end``, ``cancelled``, ``done``. Folds and epochs are
        numbered from 1.
    cancel : CancelToken, optional
        Checked between batches. When set, training stops at the next batch; finished
        epochs and folds stay on disk and the run can be resumed.
    resume : bool
        Continue the run in ``out_dir``: completed folds are kept, an unfinished fold
        continues from its last saved epoch. The configuration must match the saved one
        (except ``workers``, ``cache_bytes``, ``checkpoint_every``). Without a run in
        ``out_dir`` a new run starts.
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
        ``out_dir`` holds another run (and ``resume`` is false) or a different config.
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
    config.validate()
    run_dir = Path(out_dir)
    started = time.perf_counter()
    table, verified = _as_table(dataset)
    splits = make_splits(table, config)  # raises on too few subjects / one class
    if verify and not verified:
        _verify_files(table["path"].tolist(), progress, cancel, workers=max(1, config.workers))
    resumed = _prepare_run_dir(run_dir, config, splits, resume)
    run = _Run(config=config, run_dir=run_dir, progress=progress, cancel=cancel)
    emit(progress, "start", run_dir=str(run_dir), folds=config.folds, epochs=config.epochs,
         n_images=len(table), n_holdout=int((splits["role"] == "holdout").sum()),
         split=config.split, resumed=resumed)
    _log_environment(run)

    fold_metrics = []
    for fold in range(1, config.folds + 1):
        check_cancel(cancel, "training")
        fold_metrics.append(_train_fold(run, splits, fold))
    keys = [_selection_key({"val_f1": as_float(m["f1"]), "val_loss": as_float(m["loss"])})
            for m in fold_metrics]
    best_fold = int(np.argmax([k[0] for k in keys])) + 1  # first fold with the best F1
    holdout = _score_holdout(run, splits, best_fold)

    from allnet_core.report import write_run_report

    summary = write_run_report(run_dir, config, splits, fold_metrics, holdout, best_fold,
                               seconds=time.perf_counter() - started)
    result = TrainResult(run_dir=run_dir, best_fold=best_fold,
                         best_model=run_dir / f"fold_{best_fold}" / "model.keras",
                         folds=fold_metrics, holdout=holdout, report=run_dir / "report.md",
                         summary=summary)
    emit(progress, "done", run_dir=str(run_dir), report=str(result.report),
         best_fold=best_fold, best_model=str(result.best_model),
         holdout_accuracy=holdout["accuracy"], holdout_f1=holdout["f1"])
    return result
