"""Lazy access to Keras and facts about the compute device.

Nothing here imports Keras at module import time: call :func:`get_keras` when a model is
really needed. Segmentation, dataset handling and ``allnet --help`` never pay for it.
"""

from __future__ import annotations

import contextlib
import os
import platform
import re
import sys
import tempfile
from collections.abc import Iterator
from functools import cache
from typing import Any

__all__ = ["backend_name", "bfloat16_supported", "describe_environment", "get_keras",
           "gpu_compute_capability", "visible_devices"]


def backend_name() -> str:
    """The Keras backend that :func:`get_keras` will use, without importing Keras."""
    return os.environ.get("KERAS_BACKEND", "tensorflow")


#: Start-up chatter of TensorFlow/XLA's C++ logging, which ``TF_CPP_MIN_LOG_LEVEL`` no longer
#: hides (absl logs before it is initialised): "Could not find cuda drivers", "failed call
#: to cuInit" on a machine without a GPU, oneDNN and CPU-feature notes. Other lines pass.
_NATIVE_NOISE = re.compile(
    r"All log messages before absl::InitializeLog|"
    r"^[IWE]\d{4} .*(port\.cc|cudart_stub|cuda_platform|cuda_executor|cuda_dnn|cuda_fft|"
    r"cuda_blas|cpu_feature_guard|cuInit|cuda drivers|computation placer)|"
    r"^To enable the following instructions|rebuild TensorFlow with the appropriate|"
    r"oneDNN custom operations are on|TF_ENABLE_ONEDNN_OPTS"
)


@cache
def get_keras():
    """Import and return the ``keras`` module, without the framework's start-up chatter.

    The backend is imported and its devices initialised with the process's native
    stderr captured; lines matching :data:`_NATIVE_NOISE` are dropped and anything else
    (a real error) is written back. ``ALLNET_VERBOSE=1`` keeps everything.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    with _filtered_native_stderr():
        import keras

        keras.ops.convert_to_numpy(keras.ops.zeros((1,)))  # device start-up happens here
    return keras


@contextlib.contextmanager
def _filtered_native_stderr() -> Iterator[None]:
    """Capture file descriptor 2 for the block; replay what is not start-up noise."""
    try:
        fd = sys.stderr.fileno()
    except (AttributeError, OSError, ValueError):  # stderr replaced in-process
        fd = None
    if fd is None or os.environ.get("ALLNET_VERBOSE"):
        yield
        return
    sys.stderr.flush()
    saved = os.dup(fd)
    with tempfile.TemporaryFile() as tmp:
        os.dup2(tmp.fileno(), fd)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, fd)
            os.close(saved)
            tmp.seek(0)
            lines = tmp.read().decode("utf-8", "replace").splitlines()
            kept = [line for line in lines if line.strip() and not _NATIVE_NOISE.search(line)]
            if kept:
                sys.stderr.write("\n".join(kept) + "\n")
                sys.stderr.flush()


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


def gpu_compute_capability() -> tuple[int, int] | None:
    """``(major, minor)`` CUDA compute capability of the active backend's first GPU, or
    None (no GPU, or not an NVIDIA one). Imports the backend."""
    keras = get_keras()
    name = keras.backend.backend()
    value: Any = None
    if name == "jax":
        import jax

        gpus = [d for d in jax.devices() if d.platform == "gpu"]
        value = getattr(gpus[0], "compute_capability", None) if gpus else None
    elif name == "tensorflow":
        import tensorflow as tf  # allowed: only to describe the device of the active backend

        gpus = tf.config.list_physical_devices("GPU")
        value = (tf.config.experimental.get_device_details(gpus[0]).get("compute_capability")
                 if gpus else None)
    elif name == "torch":
        import torch

        value = torch.cuda.get_device_capability(0) if torch.cuda.is_available() else None
    if isinstance(value, str):  # JAX: "9.0"
        value = value.split(".")
    try:
        return (int(value[0]), int(value[1])) if value is not None else None
    except (TypeError, ValueError, IndexError):
        return None


def bfloat16_supported() -> bool:
    """Whether the device that training runs on computes in bfloat16: CPUs (XLA, oneDNN)
    and GPUs of compute capability 8.0 (Ampere) or later; a GPU whose capability cannot
    be read (not NVIDIA) counts as supporting it."""
    if not any(d["type"] == "GPU" for d in visible_devices()):
        return True
    capability = gpu_compute_capability()
    return capability is None or capability >= (8, 0)


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
