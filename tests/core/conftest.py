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
