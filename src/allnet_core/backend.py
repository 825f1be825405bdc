"""Lazy access to Keras and facts about the compute device.

Nothing here imports Keras at module import time: call :func:`get_keras` when a model is
really needed. Segmentation, dataset handling and ``allnet --help`` never pay for it.
"""

from __future__ import annotations

import os
import platform
from functools import cache
from typing import Any

__all__ = ["backend_name", "describe_environment", "get_keras", "visible_devices"]


def backend_name() -> str:
    """The Keras backend that :func:`get_keras` will use, without importing Keras."""
    return os.environ.get("KERAS_BACKEND", "tensorflow")


@cache
def get_keras():
    """Import and return the ``keras`` module (quietening TensorFlow's C++ logging)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras

    return keras


def visible_devices() -> list[dict[str, str]]:
    """Accelerators and CPUs the active backend can use, as ``[{"type", "name"}]``.

    Imports the backend. GPUs come first, so ``visible_devices()[0]["type"]`` is the
    device that training and inference will run on.
    """
    keras = get_keras()
    name = keras.backend.backend()
    devices: list[dict[str, str]] = []
    if name == "tensorflow":
        import tensorflow as tf  # allowed: only to list devices for the active backend

        for kind in ("GPU", "CPU"):
            for d in tf.config.list_logical_devices(kind):
                devices.append({"type": kind, "name": d.name})
    elif name == "jax":
        import jax

        for d in jax.devices():
            devices.append({"type": "GPU" if d.platform == "gpu" else d.platform.upper(),
                            "name": str(d)})
    elif name == "torch":
        import torch

        if torch.cuda.is_available():
            for i in range(torch.cuda.device_count()):
                devices.append({"type": "GPU", "name": torch.cuda.get_device_name(i)})
        devices.append({"type": "CPU", "name": "cpu"})
    else:  # numpy or a future backend
        devices.append({"type": "CPU", "name": "cpu"})
    devices.sort(key=lambda d: d["type"] != "GPU")
    return devices


def describe_environment() -> dict[str, Any]:
    """Package versions, Keras backend and devices, as saved in ``environment.json``."""
    from importlib.metadata import PackageNotFoundError, version

    versions = {}
    for pkg in ("napari-allnet", "numpy", "scikit-image", "scikit-learn", "pandas", "keras",
                "tensorflow", "jax", "torch"):
        try:
            versions[pkg] = version(pkg)
        except PackageNotFoundError:
            continue
    keras = get_keras()
    devices = visible_devices()
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "packages": versions,
        "keras_backend": keras.backend.backend(),
        "devices": devices,
        "device_used": devices[0]["type"] if devices else "CPU",
    }
