"""The Keras side of training: precision policy, device distribution, building, compiling,
saving, loading and predicting.

Keras is imported lazily, inside the functions, through :func:`allnet_core.backend.get_keras`.
Batch size is global: with several GPUs (``tf.distribute.MirroredStrategy`` on TensorFlow,
``keras.distribution.DataParallel`` on JAX) each of ``n`` replicas sees
``batch_size / n`` images per step, and the learning rate is not rescaled.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from allnet_core.classes import POSITIVE_INDEX
from allnet_core.errors import ConfigError
from allnet_core.io import atomic_write
from allnet_core.training.config import TrainConfig

__all__ = ["device_distribution", "load_model", "predict_p_all"]


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


#: The data-parallel engine of each Keras backend that has one.
_STRATEGIES = {"tensorflow": "tf.distribute.MirroredStrategy",
               "jax": "keras.distribution.DataParallel"}


def device_distribution() -> dict[str, Any]:
    """How training spreads over devices: ``{"strategy": ..., "replicas": n}``.

    Data-parallel over all GPUs when there are several and the Keras backend has an engine
    for it (TensorFlow, JAX); else ``{"strategy": "single-device", "replicas": 1}``.
    """
    from allnet_core.backend import get_keras, visible_devices

    gpus = [d for d in visible_devices() if d["type"] == "GPU"]
    backend = get_keras().backend.backend()
    if len(gpus) > 1 and backend in _STRATEGIES:
        return {"strategy": _STRATEGIES[backend], "replicas": len(gpus)}
    return {"strategy": "single-device", "replicas": 1}


@contextlib.contextmanager
def _distribution_scope() -> Iterator[None]:
    """Data-parallel scope over all GPUs when there are several (see
    :func:`device_distribution`), else a no-op."""
    from allnet_core.backend import get_keras

    strategy = device_distribution()["strategy"]
    if strategy == _STRATEGIES["tensorflow"]:
        import tensorflow as tf  # guarded: multi-GPU on the TensorFlow backend only

        with tf.distribute.MirroredStrategy().scope():
            yield
    elif strategy == _STRATEGIES["jax"]:
        keras = get_keras()
        devices = keras.distribution.list_devices("gpu")
        with keras.distribution.DataParallel(devices=devices).scope():
            yield
    else:
        yield


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
    """A run's Keras model (a checkpoint or a fold's model) through the one safe loader.

    :func:`allnet_core.model.load_model` with its checks (no Lambda layers, safe mode,
    RGB input, one probability per class); returns the Keras model itself, compiled on
    request so that a checkpoint resumes with its optimizer state.
    """
    from allnet_core.model.loading import load_model as load

    return load(path, compile=compile).model


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
    """P(ALL) for every image of ``table`` (in order), read without augmentation.

    The feed's batches go through the one predictor,
    :func:`allnet_core.model.predict_p_all`, reading the column of
    :data:`allnet_core.classes.POSITIVE_CLASS` (the feed encodes labels by
    :data:`~allnet_core.classes.CLASS_NAMES`).
    """
    from allnet_core.model.predict import predict_p_all as predict

    if len(table) == 0:
        return np.zeros(0)
    feed = _feed(table, config, batch_size=batch_size or max(config.batch_size, 32))
    return predict(model, feed, positive_index=POSITIVE_INDEX)[: len(table)]
