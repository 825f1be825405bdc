"""Guard: keras tests and napari-viewer tests never share one pytest process.

TensorFlow and a Qt OpenGL context cannot live in one process on Linux with Mesa graphics
(Xvfb included): importing TensorFlow after a QApplication exists segfaults, importing it
before makes the process abort at exit (tensorflow issue 109933). So ``tests/core`` (which
loads keras) and ``tests/napari`` (which opens viewers) run as separate pytest processes;
tox runs both. Collecting both in one run is refused here.
"""

from __future__ import annotations

from pathlib import Path

import pytest

_HERE = Path(__file__).parent


def pytest_collection_modifyitems(session, config, items):
    groups = set()
    for item in items:
        try:
            rel = Path(str(item.path)).resolve().relative_to(_HERE.resolve())
        except ValueError:
            continue
        groups.add(rel.parts[0])
    if {"core", "napari"} <= groups:
        raise pytest.UsageError(
            "tests/core (keras) and tests/napari (napari viewer) must run in separate pytest "
            "processes: TensorFlow and a Qt OpenGL context crash when they share one "
            "(tensorflow issue 109933). Run `pytest tests/core` and `pytest tests/napari`, "
            "or simply `tox`."
        )
