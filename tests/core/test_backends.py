"""Backends and devices: the mixed-precision policy per backend, and data-parallel training
on two simulated CPU devices (JAX, ``keras.distribution.DataParallel``).

``tox`` runs the ``backends``-marked tests twice: on TensorFlow with the rest of the suite,
and on JAX (``pytest tests/core -m backends --keras-backend jax``).
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import textwrap

import pytest

TINY = dict(input_size=32, dense_units=16, epochs=1, per_class=16, folds=2, batch_size=8,
            lr=1e-3, holdout=0.25, workers=1)


@pytest.mark.backends
def test_mixed_precision_policy_per_backend(monkeypatch):
    """``mixed`` is bfloat16 where the device computes in it (this CPU; GPUs from compute
    capability 8.0), float16 on older GPUs; the softmax stays float32 on every backend."""
    import numpy as np

    import allnet_core.backend as backend
    from allnet_core.model import build_allnet
    from allnet_core.training.runtime import _dtype_policy, _precision_policy_name

    keras = backend.get_keras()
    assert keras.backend.backend() == backend.backend_name()
    assert backend.gpu_compute_capability() is None  # no GPU here
    assert _precision_policy_name("mixed") == "mixed_bfloat16"
    assert _precision_policy_name("float32") == "float32"
    with _dtype_policy("mixed") as name:
        model = build_allnet((32, 32, 3), dense_units=8)
    assert name == "mixed_bfloat16" and keras.config.dtype_policy().name == "float32"
    assert model.get_layer("conv1").compute_dtype == "bfloat16"
    assert model.get_layer("conv1").variable_dtype == "float32"
    assert model.get_layer("probabilities").compute_dtype == "float32"
    p = model.predict(np.zeros((2, 32, 32, 3), np.uint8), verbose=0)
    assert p.dtype == np.float32 and np.allclose(p.sum(1), 1, atol=1e-3)

    gpu = [{"type": "GPU", "name": "gpu:0"}, {"type": "CPU", "name": "cpu:0"}]
    monkeypatch.setattr(backend, "visible_devices", lambda: gpu)
    for capability, policy in (((7, 5), "mixed_float16"), ((8, 0), "mixed_bfloat16"),
                               ((9, 0), "mixed_bfloat16"), (None, "mixed_bfloat16")):
        monkeypatch.setattr(backend, "gpu_compute_capability", lambda c=capability: c)
        assert _precision_policy_name("mixed") == policy, capability


def test_one_device_trains_without_a_distribution():
    from allnet_core.training.runtime import _data_parallel, device_distribution

    assert device_distribution() == {"strategy": "single-device", "replicas": 1,
                                     "processes": 1}
    assert _data_parallel() == (1, (0, 1))


_TWO_DEVICES = textwrap.dedent("""
    import json, sys
    from allnet_core.training import TrainConfig, cross_validate
    import jax
    events = []
    result = cross_validate(sys.argv[1], TrainConfig(**json.loads(sys.argv[2])), sys.argv[3],
                            progress=events.append)
    device = next(e for e in events if e["kind"] == "device")
    print(json.dumps({"devices": jax.device_count(), "replicas": device["replicas"],
                      "best_fold": result.best_fold}))
""")


@pytest.mark.skipif(importlib.util.find_spec("jax") is None, reason="jax is not installed")
def test_data_parallel_on_two_simulated_devices(tmp_path):
    """A short ``cross_validate`` on JAX with two CPU devices gives the usual run folder,
    the replicas recorded in ``environment.json``. XLA_FLAGS must be set before JAX loads:
    a child process."""
    from allnet_core.synthetic import write_cnmc_dataset

    data = write_cnmc_dataset(tmp_path / "data", subjects=8, cells_per_subject=6, seed=1,
                              size=40)
    run = tmp_path / "run"
    env = {**os.environ, "KERAS_BACKEND": "jax",
           "XLA_FLAGS": "--xla_force_host_platform_device_count=2"}
    out = subprocess.run([sys.executable, "-c", _TWO_DEVICES, str(data), json.dumps(TINY),
                          str(run)], env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    printed = json.loads(out.stdout.strip().splitlines()[-1])
    assert printed["devices"] == 2 and printed["replicas"] == 2
    environment = json.loads((run / "environment.json").read_text())
    assert environment["keras_backend"] == "jax"
    assert environment["distribution"] == {"strategy": "keras.distribution.DataParallel",
                                           "replicas": 2, "processes": 1}
    for name in ("config.json", "splits.csv", "report.md", "report.json",
                 "holdout/metrics.json", "holdout/predictions.csv"):
        assert (run / name).is_file(), name
    for k in (1, 2):
        for name in ("history.csv", "metrics.json", "model.keras", "plan.csv"):
            assert (run / f"fold_{k}" / name).is_file(), (k, name)
