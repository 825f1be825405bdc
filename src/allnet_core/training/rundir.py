"""The run folder on disk: lock it, create or reopen it, check that a resume continues the
same run, clean up what a killed process left, and write ``environment.json`` and
``plan.csv``.

Every file is written atomically (:func:`allnet_core.io.atomic_write`): a crash never
leaves a half-written file under its real name. ``config.json`` is the run's commit point.
While a process trains in a run folder it holds the folder's lock (:func:`run_dir_lock`).
"""

from __future__ import annotations

import contextlib
import datetime
import json
import logging
import os
import socket
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from allnet_core.errors import ConfigError, DatasetError, RunInUseError
from allnet_core.io import write_csv, write_json
from allnet_core.progress import ProgressCallback, emit
from allnet_core.training.config import TrainConfig, check_same_computation
from allnet_core.training.runtime import _precision_policy_name, device_distribution

__all__ = ["LOCK_NAME", "OWNER_NAME", "check_not_in_use", "run_dir_lock"]

log = logging.getLogger("allnet_core.training")

#: The run folder's lock file: an OS-level lock (``flock``) on it is held while a process
#: trains in the folder; the operating system releases it on any exit, SIGKILL included.
LOCK_NAME = ".lock"
#: Who holds the lock: process id, host, start time and command, for the refusal message.
OWNER_NAME = ".lock.owner"


@contextlib.contextmanager
def run_dir_lock(run_dir: str | os.PathLike) -> Iterator[Path]:
    """Hold the lock of ``run_dir`` (created if needed) for the duration of the block.

    The lock is :class:`filelock.FileLock` on ``run_dir/.lock``, taken without waiting;
    ``run_dir/.lock.owner`` says who holds it.

    Raises
    ------
    RunInUseError
        Another process (or another job of this one) holds the lock: the message names it.
    """
    from filelock import FileLock, Timeout

    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    lock = FileLock(run_dir / LOCK_NAME)
    try:
        lock.acquire(blocking=False)
    except Timeout:
        raise RunInUseError(
            f"{run_dir} is in use: {_lock_owner(run_dir)} is training in it. Wait for it to "
            "finish or stop it, or choose another --out") from None
    owner = run_dir / OWNER_NAME
    try:
        write_json(owner, {
            "pid": os.getpid(), "host": socket.gethostname(),
            "started": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
            "command": " ".join(sys.argv)})
        yield run_dir
    finally:
        owner.unlink(missing_ok=True)
        lock.release()


def check_not_in_use(run_dir: str | os.PathLike) -> None:
    """Refuse early (before hours of checks) if another process trains in ``run_dir``.

    Creates nothing: a folder without a lock file has never been trained in.

    Raises
    ------
    RunInUseError
        As :func:`run_dir_lock`.
    """
    if (Path(run_dir) / LOCK_NAME).is_file():
        with run_dir_lock(run_dir):
            pass


def _lock_owner(run_dir: Path) -> str:
    """Who holds ``run_dir``'s lock, in words, from its ``.lock.owner`` file."""
    try:
        info = json.loads((run_dir / OWNER_NAME).read_text(encoding="utf-8"))
        return (f"process {info['pid']} on host {info['host']} (started {info['started']}, "
                f"command: {info.get('command') or '?'})")
    except (OSError, ValueError, KeyError, TypeError):
        return "another process (it has not written its details yet)"


def _check_resume_config(run_dir: Path, config: TrainConfig) -> None:
    """Refuse to resume the run in ``run_dir`` with a config that computes something else."""
    check_same_computation(run_dir, TrainConfig.from_json(run_dir / "config.json"), config)


def _prepare_run_dir(run_dir: Path, config: TrainConfig, splits: pd.DataFrame,
                     resume: bool) -> bool:
    """Create or reopen the run folder; return True when resuming an existing run."""
    existing = (run_dir / "config.json").is_file()
    if existing and not resume:
        raise ConfigError(
            f"{run_dir} already holds a training run; continue it with --resume or choose "
            "another --out")
    if existing:
        _remove_stale_temporaries(run_dir)
        _check_resume_config(run_dir, config)
        saved = pd.read_csv(run_dir / "splits.csv", dtype=str, keep_default_na=False)
        same = (len(saved) == len(splits) and
                (saved[["path", "role"]].to_numpy() == splits[["path", "role"]]
                 .astype(str).to_numpy()).all())
        if not same:
            raise DatasetError(
                f"{run_dir}: the dataset changed since this run started (its splits.csv "
                "differs); start a new run with another --out")
        return True
    # A folder holding only what a killed start left (splits.csv, temporaries) is reused.
    if run_dir.exists() and any(p for p in run_dir.iterdir()
                                if not p.name.startswith(".") and p.name != "splits.csv"):
        raise ConfigError(f"{run_dir} exists and is not empty; choose another --out")
    run_dir.mkdir(parents=True, exist_ok=True)
    _remove_stale_temporaries(run_dir)
    write_csv(run_dir / "splits.csv", splits)
    write_json(run_dir / "config.json", config.to_dict())  # the run's commit point
    return False


def _remove_stale_temporaries(run_dir: Path) -> None:
    """Delete temporary files that a killed process left behind (``.name.XXXX.ext`` from
    :func:`allnet_core.io.atomic_write`); files under real names are always complete.
    The lock file and its owner file stay."""
    for p in list(run_dir.glob(".*")) + list(run_dir.glob("*/.*")):
        if p.is_file() and p.parent == run_dir and p.name in (LOCK_NAME, OWNER_NAME):
            continue
        if p.is_file():
            p.unlink(missing_ok=True)


def _plan_for_csv(plan: pd.DataFrame, train: pd.DataFrame) -> pd.DataFrame:
    out = plan.copy()
    if "index" in out.columns:
        out.insert(1, "path", train["path"].to_numpy()[out["index"].to_numpy(int)])
    for col in out.columns:
        if out[col].map(lambda v: isinstance(v, dict | list)).any():
            out[col] = out[col].map(lambda v: json.dumps(v, default=_jsonable))
    return out


def _jsonable(o):
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    return str(o)


def _log_environment(run_dir: Path, config: TrainConfig,
                     progress: ProgressCallback | None) -> dict[str, Any]:
    """Write ``environment.json`` (packages, devices, precision policy, distribution) and
    send the ``device`` event."""
    from allnet_core.backend import describe_environment

    env = describe_environment()
    env["precision_policy"] = _precision_policy_name(config.precision)
    env["distribution"] = device_distribution()
    name = env["devices"][0]["name"] if env["devices"] else "cpu"
    log.info("training on %s (%s), Keras backend %s, precision %s",
             env["device_used"], name, env["keras_backend"], env["precision_policy"])
    emit(progress, "device", device=env["device_used"], name=name,
         backend=env["keras_backend"], precision=env["precision_policy"],
         replicas=env["distribution"]["replicas"])
    write_json(run_dir / "environment.json", env)
    return env
