"""Fixtures of the napari viewer tests (run them as their own pytest process, under Xvfb).

``cd /work/main && QT_QPA_PLATFORM=xcb python -m pytest tests/napari -q -p xvfb``

Keras/TensorFlow must never be imported here: every test is checked after it runs, and the
whole session once more at its end. Models for the tests are trained in a subprocess.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).parent
FORBIDDEN = ("keras", "tensorflow")


def _loaded_frameworks() -> list[str]:
    return [m for m in FORBIDDEN if m in sys.modules]


@pytest.fixture(autouse=True)
def _no_framework_in_napari_process():
    """Fail the test that imported keras or tensorflow into the napari process."""
    yield
    loaded = _loaded_frameworks()
    assert not loaded, f"{loaded} imported into the napari test process"


def pytest_sessionfinish(session, exitstatus):
    loaded = _loaded_frameworks()
    if loaded:
        session.config.get_terminal_writer().line(
            f"FAILED: {loaded} were imported into the napari test process", red=True)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


@pytest.fixture(autouse=True, scope="session")
def _stop_workers():
    """Stop the plugin's worker processes at the end of the session."""
    yield
    from napari_allnet._session import shutdown_clients

    shutdown_clients()


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    """A tiny ALLNet (48 px input) trained on synthetic cells, in a subprocess."""
    out = tmp_path_factory.mktemp("model") / "tiny.keras"
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    proc = subprocess.run([sys.executable, str(HERE / "_make_tiny_model.py"), str(out)],
                          capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert out.is_file()
    return out


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory) -> Path:
    """A small synthetic C-NMC-layout dataset: 10 subjects (5 per class), 48 px cells."""
    from allnet_core.synthetic import write_cnmc_dataset

    root = tmp_path_factory.mktemp("dataset")
    write_cnmc_dataset(root, subjects=10, cells_per_subject=4, seed=0, size=48)
    return root


@pytest.fixture
def carded_model(tiny_model):
    """``make(folder, mcc, split="subject")``: a copy of the tiny model in ``folder`` with a
    model card claiming that hold-out MCC (``{"value", "low", "high"}``) and split, and a
    calibration of temperature 2."""
    import shutil

    from allnet_core.model.card import write_card

    def make(folder: Path, mcc: dict, split: str = "subject") -> Path:
        folder.mkdir()
        model = folder / "model.keras"
        shutil.copyfile(tiny_model, model)
        metric = {"value": 0.5, "low": 0.4, "high": 0.6}
        write_card(model, {
            "holdout": {"images": 40, "subjects": 4, "per_subject": [],
                        "metrics": {"accuracy": metric, "mcc": mcc}},
            "protocol": {"split": split, "folds": 3, "profile": "quick", "seed": 0},
            "calibration": {"method": "temperature", "temperature": 2.0}})
        return model

    return make


@pytest.fixture
def notifications(monkeypatch):
    """Record napari notifications (show_info/show_warning/show_error) as (level, text)."""
    import napari.utils.notifications as nn

    seen: list[tuple[str, str]] = []
    for level in ("info", "warning", "error"):
        name = f"show_{level}"
        original = getattr(nn, name)

        def record(message, *args, _level=level, _original=original, **kwargs):
            seen.append((_level, str(message)))
            return _original(message, *args, **kwargs)

        monkeypatch.setattr(nn, name, record)
    return seen


@pytest.fixture
def bccd_sample():
    """The real BCCD field shipped with the plugin, as a layer-data tuple."""
    from napari_allnet._sample_data import bccd_smear

    return bccd_smear()[0]
