"""Fixtures shared by the tests that do not open a napari viewer."""

from __future__ import annotations

import os
from pathlib import Path

import pytest


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


@pytest.fixture(scope="session")
def cnmc_dir(data_dir) -> Path:
    path = data_dir / "cnmc"
    if not path.is_dir():
        pytest.skip(f"{path} missing: real C-NMC test skipped")
    return path


@pytest.fixture(scope="session")
def bccd_dir(data_dir) -> Path:
    path = data_dir / "bccd"
    if not path.is_dir():
        pytest.skip(f"{path} missing: real BCCD test skipped")
    return path
