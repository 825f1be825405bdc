"""The Keras side of training: precision policy, device distribution, building, compiling,
saving, loading and predicting.

Keras is imported lazily, inside the functions, through :func:`allnet_core.backend.get_keras`.
Batch size is global: with several devices (``tf.distribute.MirroredStrategy`` over GPUs on
TensorFlow, ``keras.distribution.DataParallel`` over all devices on JAX) each of ``n``
replicas sees ``batch_size / n`` images per step, and the learning rate is not rescaled.
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
    """The Keras dtype policy of a :attr:`TrainConfig.precision`: ``"mixed"`` is
    ``mixed_bfloat16`` where the device computes in bfloat16
    (:func:`~allnet_core.backend.bfloat16_supported`), else ``mixed_float16``."""
    if precision == "mixed":
        from allnet_core.backend import bfloat16_supported

        return "mixed_bfloat16" if bfloat16_supported() else "mixed_float16"
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
    """How training spreads over devices: ``{"strategy": ..., "replicas": n,
    "processes": p}``.

    - JAX: ``keras.distribution.DataParallel`` over all devices of JAX's default platform
      when there are several: all GPUs of the machine, all devices of all hosts after
      ``jax.distributed.initialize()`` (``processes`` > 1), or the simulated CPU devices
      of ``XLA_FLAGS=--xla_force_host_platform_device_count=N``.
    - TensorFlow: ``tf.distribute.MirroredStrategy`` over all GPUs when there are several.
    - Else ``{"strategy": "single-device", "replicas": 1, "processes": 1}``.

    Each batch (``batch_size`` is global) is split evenly over the replicas.
    """
    from allnet_core.backend import get_keras, visible_devices

    keras = get_keras()
    backend = keras.backend.backend()
    if backend == "jax":
        import jax

        devices = keras.distribution.list_devices()
        if len(devices) > 1:
            return {"strategy": _STRATEGIES["jax"], "replicas": len(devices),
                    "processes": jax.process_count()}
    gpus = [d for d in visible_devices() if d["type"] == "GPU"]
    if backend == "tensorflow" and len(gpus) > 1:
        return {"strategy": _STRATEGIES["tensorflow"], "replicas": len(gpus), "processes": 1}
    return {"strategy": "single-device", "replicas": 1, "processes": 1}


@contextlib.contextmanager
def _distribution_scope() -> Iterator[None]:
    """Data-parallel scope over all devices when there are several (see
    :func:`device_distribution`), else a no-op."""
    from allnet_core.backend import get_keras

    strategy = device_distribution()["strategy"]
    if strategy == _STRATEGIES["tensorflow"]:
        import tensorflow as tf  # guarded: multi-GPU on the TensorFlow backend only

        with tf.distribute.MirroredStrategy().scope():
            yield
    elif strategy == _STRATEGIES["jax"]:
        keras = get_keras()
        devices = keras.distribution.list_devices()
        with keras.distribution.DataParallel(devices=devices).scope():
            yield
    else:
        yield


def _data_parallel() -> tuple[int, tuple[int, int]]:
    """``(replicas, (process index, process count))`` of the active Keras distribution
    (``(1, (0, 1))`` without one): every batch must split evenly over the replicas, and
    each process feeds its own slice of it."""
    from allnet_core.backend import get_keras

    keras = get_keras()
    dist = keras.distribution.distribution()
    if dist is None:
        return 1, (0, 1)
    replicas = int(np.prod(dist.device_mesh.shape))
    if keras.backend.backend() != "jax":
        return replicas, (0, 1)
    import jax

    return replicas, (jax.process_index(), jax.process_count())


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
          epoch: int = 0, flips: bool = False, jitter: float = 0.0):
    """The on-the-fly feed of ``table``: training (``shuffle``: partial batches trimmed to
    the replicas) or prediction (partial batches padded)."""
    from allnet_core.feed import TrainingFeed

    replicas, _ = _data_parallel()
    return TrainingFeed(
        table["path"].tolist(), table["label"].tolist(), plan=plan,
        batch_size=batch_size or config.batch_size, input_size=config.input_size,
        augmenter=augmenter, shuffle=shuffle, seed=seed, workers=config.workers,
        cache_bytes=config.cache_bytes, epoch=epoch, flips=flips, batch_multiple=replicas,
        pad=not shuffle, jitter=jitter,
    )


def predict_p_all(model, table: pd.DataFrame, config: TrainConfig,
                  batch_size: int | None = None, feed=None) -> np.ndarray:
    """P(ALL) for every image of ``table`` (in order), read without augmentation, or read
    from ``feed`` (an unshuffled feed of the same images, e.g. a cached one).

    The feed's batches go through the one predictor,
    :func:`allnet_core.model.predict_p_all`, reading the column of
    :data:`allnet_core.classes.POSITIVE_CLASS` (the feed encodes labels by
    :data:`~allnet_core.classes.CLASS_NAMES`). A given ``feed``'s batches reach the
    predictor as they are (a cached feed's ``uint8``: the device casts them, the host
    copies a quarter of the bytes).
    """
    from allnet_core.model.predict import Predictor
    from allnet_core.model.predict import predict_p_all as predict

    if len(table) == 0:
        return np.zeros(0)
    if feed is None:
        feed = _feed(table, config, batch_size=batch_size or max(config.batch_size, 32))
        return predict(model, feed, positive_index=POSITIVE_INDEX)[: len(table)]
    predictor = Predictor(model, POSITIVE_INDEX)
    parts = [predictor.p_positive(feed[i][0], feed.batch_size) for i in range(len(feed))]
    return np.concatenate(parts)[: len(table)]
