"""Fixtures shared by the tests that do not open a napari viewer, and the second backend run.

``pytest tests/core -m backends --keras-backend jax`` runs the tests that train or predict
again under another Keras backend (tox does, after the full run on TensorFlow). The option
sets ``KERAS_BACKEND`` before any test module imports Keras, on every platform. Tests of
files that others keep are marked here by name (:data:`BACKEND_TESTS`); new files use
``@pytest.mark.backends``.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

#: Tests that train or predict, by file, marked ``backends`` at collection.
BACKEND_TESTS = {
    "test_training.py": ("test_run_folder_is_complete", "test_holdout_predictions_match_metrics",
                         "test_progress_events", "test_evaluate_run_on_holdout",
                         "test_cancel_then_resume", "test_mixed_precision_run",
                         "test_resumed_fold_matches_an_uninterrupted_one"),
    "test_feed.py": ("test_keras_fit_sees_every_sample_once_per_epoch",),
    "test_inference.py": ("test_classifies_synthetic_cells_better_than_chance",
                          "test_batches_and_padding_do_not_change_results",
                          "test_load_reads_input_size_and_class_names"),
    "test_model.py": ("test_other_input_sizes",),
}


def pytest_addoption(parser):
    parser.addoption("--keras-backend", default=None,
                     choices=("tensorflow", "jax", "torch", "numpy"),
                     help="run with this Keras backend (sets KERAS_BACKEND before Keras loads)")


def pytest_configure(config):
    backend = config.getoption("--keras-backend")
    if backend:
        os.environ["KERAS_BACKEND"] = backend


#: Fixtures that read ``ALLNET_DATA_DIR``; every test that uses one (directly or through
#: another fixture) must carry the ``realdata`` marker, so that ``-m "not realdata"`` and
#: ``-m realdata`` select what they say.
REALDATA_FIXTURES = ("data_dir",)


def pytest_collection_modifyitems(config, items):
    unmarked = [item.nodeid for item in items
                if set(REALDATA_FIXTURES) & set(getattr(item, "fixturenames", ()))
                and item.get_closest_marker("realdata") is None]
    if unmarked:
        raise pytest.UsageError("tests that read ALLNET_DATA_DIR need @pytest.mark.realdata: "
                                + ", ".join(unmarked))
    modules = {}
    for item in items:
        names = BACKEND_TESTS.get(item.path.name, ())
        if getattr(item, "originalname", None) in names:
            item.add_marker(pytest.mark.backends)
        if names and getattr(item, "module", None) is not None:
            modules[item.path.name] = item.module
    missing = [f"{f}::{name}" for f, module in modules.items() for name in BACKEND_TESTS[f]
               if not hasattr(module, name)]
    if missing:  # a renamed test would silently drop out of the backend run
        raise pytest.UsageError(f"BACKEND_TESTS in {__file__} names missing tests: {missing}")


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """``$ALLNET_DATA_DIR`` (the real data of ``../shared/data``); skips when unset."""
    value = os.environ.get("ALLNET_DATA_DIR")
    if not value:
        pytest.skip("ALLNET_DATA_DIR is not set: real-data test skipped")
    path = Path(value)
    if not path.is_dir():
        pytest.skip(f"ALLNET_DATA_DIR={value} is not a folder: real-data test skipped")
    return path


def _part(data_dir: Path, name: str, what: str) -> Path:
    path = data_dir / name
    if not path.is_dir():
        pytest.skip(f"{path} missing: real {what} test skipped")
    return path


@pytest.fixture(scope="session")
def cnmc_dir(data_dir) -> Path:
    return _part(data_dir, "cnmc", "C-NMC")


@pytest.fixture(scope="session")
def bccd_dir(data_dir) -> Path:
    return _part(data_dir, "bccd", "BCCD")


@pytest.fixture(scope="session")
def cnmc_prelim_dir(data_dir) -> Path:
    return _part(data_dir, "cnmc_prelim", "C-NMC preliminary-test")


# --------------------------------------------------------------------------- fault fixtures


def _try(cmd: list[str]) -> bool:
    import subprocess

    return subprocess.run(cmd, capture_output=True).returncode == 0


def _writable(folder: Path) -> bool:
    probe = folder / ".probe"
    try:
        probe.write_bytes(b"x")
    except OSError:
        return False
    probe.unlink()
    return True


@pytest.fixture
def readonly_dir(tmp_path):
    """An empty folder that this process cannot write in.

    As root (CI) ``chmod`` does not stop writes, so the folder is a read-only bind mount of
    itself; otherwise it is ``chmod 555``. Skips with the reason when neither works.
    """
    folder = tmp_path / "readonly"
    folder.mkdir()
    mounted = False
    if os.geteuid() == 0:
        mounted = _try(["mount", "--bind", str(folder), str(folder)])
        if mounted and not _try(["mount", "-o", "remount,bind,ro", str(folder)]):
            _try(["umount", str(folder)])
            mounted = False
    else:
        folder.chmod(0o555)
    try:
        if _writable(folder):
            pytest.skip("cannot make a read-only folder here (root without mount rights)")
        yield folder
    finally:
        if mounted:
            _try(["umount", str(folder)])
        else:
            folder.chmod(0o755)


@pytest.fixture
def small_disk(tmp_path):
    """A 2 MiB tmpfs (a disk that fills up); skips with the reason unless root may mount."""
    folder = tmp_path / "small_disk"
    folder.mkdir()
    if os.geteuid() != 0 or not _try(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs",
                                      str(folder)]):
        pytest.skip("mounting a small tmpfs needs root with mount rights")
    try:
        yield folder
    finally:
        _try(["umount", "-l", str(folder)])
