"""ALLNet against Table 2 of the paper: every output shape and parameter count at 450x450x3,
other input sizes, and portability across Keras backends."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from allnet_core.model import CLASS_NAMES, PAPER_PARAMETERS, build_allnet

# Table 2: layer name -> (output shape without batch, parameters)
TABLE_2 = {
    "conv1": ((450, 450, 64), 1_792),
    "pool1": ((150, 150, 64), 0),
    "conv2": ((150, 150, 256), 147_712),
    "pool2": ((50, 50, 256), 0),
    "conv3": ((50, 50, 384), 885_120),
    "bn3": ((50, 50, 384), 1_536),
    "pool3": ((17, 17, 384), 0),
    "drop3": ((17, 17, 384), 0),
    "conv4": ((17, 17, 512), 1_769_984),
    "bn4": ((17, 17, 512), 2_048),
    "pool4": ((6, 6, 512), 0),
    "drop4": ((6, 6, 512), 0),
    "flatten": ((18_432,), 0),
    "fc1": ((4096,), 75_501_568),
    "drop_fc1": ((4096,), 0),
    "fc2": ((4096,), 16_781_312),
    "drop_fc2": ((4096,), 0),
    "logits": ((2,), 8_194),
    "probabilities": ((2,), 0),
}


@pytest.fixture(scope="module")
def paper_model():
    return build_allnet()


def _count(weights) -> int:
    return int(sum(np.prod(w.shape) for w in weights))


@pytest.mark.parametrize("name", list(TABLE_2))
def test_table2_shape_and_parameters(paper_model, name):
    shape, params = TABLE_2[name]
    layer = paper_model.get_layer(name)
    assert tuple(layer.output.shape[1:]) == shape
    assert layer.count_params() == params


def test_paper_totals(paper_model):
    assert paper_model.count_params() == PAPER_PARAMETERS == 95_099_266
    assert _count(paper_model.trainable_weights) == 95_097_474
    assert _count(paper_model.non_trainable_weights) == 1_792
    assert tuple(paper_model.input_shape) == (None, 450, 450, 3)
    assert tuple(paper_model.output_shape) == (None, 2)
    assert CLASS_NAMES == ("HEM", "ALL")


def test_layer_kinds_follow_the_table(paper_model):
    kinds = {name: type(paper_model.get_layer(name)).__name__ for name in TABLE_2}
    assert {kinds[f"conv{i}"] for i in range(1, 5)} == {"Conv2D"}
    assert {kinds[f"pool{i}"] for i in range(1, 5)} == {"MaxPooling2D"}
    assert kinds["bn3"] == kinds["bn4"] == "BatchNormalization"
    for i in range(1, 5):
        conv = paper_model.get_layer(f"conv{i}")
        assert conv.kernel_size == (3, 3) and conv.padding == "same"
        assert conv.activation.__name__ == "relu"
        pool = paper_model.get_layer(f"pool{i}")
        assert pool.pool_size == (3, 3) and pool.strides == (3, 3)
    assert paper_model.get_layer("pool3").padding == "same"
    assert paper_model.get_layer("pool4").padding == "same"
    assert paper_model.get_layer("probabilities").dtype_policy.compute_dtype == "float32"


@pytest.mark.parametrize("size", [32, 48, 96, 150])
def test_other_input_sizes(size):
    model = build_allnet((size, size, 3), dense_units=64)
    x = np.random.default_rng(0).uniform(0, 255, (2, size, size, 3)).astype("float32")
    p = np.asarray(model.predict(x, verbose=0))
    assert p.shape == (2, 2)
    np.testing.assert_allclose(p.sum(axis=1), 1.0, rtol=1e-5)
    # the convolutional part does not depend on dense_units
    assert model.get_layer("conv4").count_params() == 1_769_984


def test_dropout_rates_are_exposed():
    model = build_allnet((48, 48, 3), conv_dropout=0.1, dense_dropout=0.3, dense_units=16)
    assert model.get_layer("drop3").rate == 0.1
    assert model.get_layer("drop_fc2").rate == 0.3


@pytest.mark.parametrize("kwargs", [
    {"input_shape": (64, 64, 1)},
    {"input_shape": (8, 8, 3)},
    {"input_shape": (64, 64, 3), "conv_dropout": 1.0},
])
def test_bad_arguments(kwargs):
    with pytest.raises(ValueError):
        build_allnet(**kwargs)


def test_model_source_is_backend_neutral():
    src = Path(build_allnet.__code__.co_filename).read_text()
    assert "import tensorflow" not in src and "tf." not in src


_PORTABLE = textwrap.dedent("""
    import numpy as np, keras
    from allnet_core.model import build_allnet
    m = build_allnet((48, 48, 3), dense_units=16)
    x = np.random.default_rng(0).uniform(0, 255, (2, 48, 48, 3)).astype("float32")
    p = np.asarray(m.predict(x, verbose=0))
    assert p.shape == (2, 2) and np.allclose(p.sum(1), 1, atol=1e-5)
    print(keras.backend.backend(), m.count_params())
""")


def _backend_available(name: str) -> bool:
    import importlib.util

    needs = "jax" if name == "numpy" else name  # Keras' numpy backend imports jax
    return importlib.util.find_spec(needs) is not None


def _module_source(root: Path, name: str) -> str:
    """The source of module ``name`` under ``root``: one file, or every file of a package."""
    if (root / name).is_dir():
        files = sorted((root / name).rglob("*.py"))
        assert files, name
        return "\n".join(f.read_text() for f in files)
    return (root / f"{name}.py").read_text()


def test_core_code_imports_no_framework_outside_guarded_device_code():
    """Only keras.ops/layers in the model and training paths; tensorflow appears only in the
    guarded multi-GPU branch of training and in backend's device listing."""
    import allnet_core

    root = Path(allnet_core.__file__).parent
    for name in ("model", "metrics", "report", "evaluation", "feed"):
        src = _module_source(root, name)
        assert "import tensorflow" not in src and "import torch" not in src, name
        assert "import jax" not in src, name
    training = _module_source(root, "training")
    assert training.count("import tensorflow") == 1
    guarded = training.split("def _distribution_scope")[1].split("\ndef ")[0]
    assert "import tensorflow" in guarded


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["numpy", "jax", "torch"])
def test_builds_and_predicts_on_other_backends(backend):
    if not _backend_available(backend):
        needs = "jax (Keras' numpy backend imports it)" if backend == "numpy" else backend
        pytest.skip(f"{needs} is not installed here")
    env = {**os.environ, "KERAS_BACKEND": backend}
    out = subprocess.run([sys.executable, "-c", _PORTABLE], env=env, capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    name, params = out.stdout.split()[-2:]
    assert name == backend
    assert int(params) == build_allnet((48, 48, 3), dense_units=16).count_params()
