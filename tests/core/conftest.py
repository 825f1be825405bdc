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
