"""Fault injection into training: SIGKILL at every phase, a full disk, a read-only output
folder, two writers at once. Nothing hangs, nothing completed is lost or changed, every
file under its real name is complete, every failure is one clear line.

Kills happen in a child process (:data:`CHILD`) that runs
:func:`allnet_core.training.cross_validate` with a progress callback: when the event named
by ``ALLNET_TEST_KILL_AT`` arrives (``kind`` or ``kind:key=value,...``) it sends itself
SIGKILL. ``replace:NAME`` instead kills the child just before a file named ``NAME`` is
renamed into place, i.e. in the middle of saving a checkpoint or writing the report (the
temporary file is complete, the real name not yet there). No hook is built into the
product: the child only wraps its own callback and :func:`os.replace`.

Inputs are tiny (24 px synthetic cells, 16 px model input, 4 dense units, 2 folds).
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pandas as pd
import pytest

CONFIG = {"input_size": 16, "dense_units": 4, "folds": 2, "per_class": 8, "batch_size": 8,
          "holdout": 0.25, "epochs": 2, "workers": 1, "lr": 1e-3}
FLAGS = ["--input-size", "16", "--dense-units", "4", "--folds", "2", "--per-class", "8",
         "--batch-size", "8", "--holdout", "0.25", "--epochs", "2", "--workers", "1",
         "--lr", "1e-3"]

CHILD = r"""
import json, os, signal, sys
from pathlib import Path

data, out, resume = sys.argv[1], sys.argv[2], sys.argv[3] == "resume"
spec = os.environ.get("ALLNET_TEST_KILL_AT", "")
pause = os.environ.get("ALLNET_TEST_PAUSE_AT", "")


def matches(event, spec):
    kind, _, rest = spec.partition(":")
    wanted = dict(kv.split("=") for kv in rest.split(",") if kv)
    return event["kind"] == kind and all(str(event.get(k)) == v for k, v in wanted.items())


def progress(event):
    print(json.dumps({k: v for k, v in event.items() if isinstance(v, (int, str))}),
          flush=True)
    if spec and not spec.startswith("replace:") and matches(event, spec):
        os.kill(os.getpid(), signal.SIGKILL)
    if pause and matches(event, pause):  # hold the run (and its lock) until told
        go = Path(out).parent / "go"
        while not go.exists():
            import time
            time.sleep(0.05)


if spec.startswith("replace:"):
    name, real_replace = spec.split(":", 1)[1], os.replace

    def replace(src, dst, **kw):
        if Path(dst).name == name:
            os.kill(os.getpid(), signal.SIGKILL)
        return real_replace(src, dst, **kw)
    os.replace = replace

from allnet_core.training import TrainConfig, cross_validate

config = TrainConfig(**json.loads(os.environ["ALLNET_TEST_CONFIG"]))
cross_validate(data, config, out, progress=progress, resume=resume)
print("finished", flush=True)
"""


def _env(**extra) -> dict[str, str]:
    return {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "ALLNET_TEST_CONFIG": json.dumps(CONFIG),
            **extra}


def _child(data: Path, out: Path, *, kill_at: str = "", resume: bool = True,
           **popen) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", CHILD, str(data), str(out), "resume" if resume else "new"],
        env=_env(ALLNET_TEST_KILL_AT=kill_at, **popen.pop("env", {})),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **popen)


def _events(stdout: str) -> list[dict]:
    return [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]


def _digest(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


def _committed(run: Path) -> dict[str, str]:
    """sha256 of every file a resume must leave alone: the run's config and splits, every
    fold's plan, and everything of a fold whose metrics.json (its commit) exists."""
    names = [run / "config.json", run / "splits.csv", *run.glob("fold_*/plan.csv")]
    for metrics in run.glob("fold_*/metrics.json"):
        names += [metrics, metrics.parent / "model.keras", metrics.parent / "history.csv"]
    return {str(p.relative_to(run)): _digest(p) for p in names if p.is_file()}


def _check_parseable(run: Path) -> None:
    """Every file under its real name is complete: JSON and CSV parse, models are whole
    zip archives."""
    for p in run.rglob("*"):
        if not p.is_file() or p.name.startswith("."):
            continue
        if p.suffix == ".json":
            json.loads(p.read_text(encoding="utf-8"))
        elif p.suffix == ".csv":
            pd.read_csv(p)
        elif p.suffix == ".keras":
            with zipfile.ZipFile(p) as zf:
                assert zf.testzip() is None, p
                assert "config.json" in zf.namelist(), p


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory) -> Path:
    from allnet_core.synthetic import write_cnmc_dataset

    root = tmp_path_factory.mktemp("fault_data")
    write_cnmc_dataset(root, subjects=8, cells_per_subject=3, seed=2, size=24)
    return root


#: Kill points in the order a run reaches them. After each kill the next child resumes
#: the same run folder until it is killed at the next point.
KILL_POINTS = [
    ("fold_start:fold=1", "a fold's start, before its first epoch"),
    ("batch_end:fold=1,epoch=2", "in the middle of an epoch"),
    ("replace:ckpt_e002.keras", "saving a checkpoint"),
    ("fold_end:fold=1", "just after a fold's commit"),
    ("epoch_end:fold=2,epoch=1", "just after an epoch's commit"),
    ("holdout_start", "hold-out scoring"),
    ("replace:report.json", "writing the report"),
]


@pytest.mark.slow
def test_sigkill_at_every_phase_then_resume(tiny_data, tmp_path):
    run = tmp_path / "run"
    for spec, where in KILL_POINTS:
        before = _committed(run) if run.exists() else {}
        proc = _child(tiny_data, run, kill_at=spec)
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == -signal.SIGKILL, f"not killed at {where}: {err[-2000:]}"
        assert "finished" not in out
        _check_parseable(run)
        after = _committed(run)
        changed = [k for k in before if after.get(k) != before[k]]
        assert not changed, f"killed at {where}: completed files changed: {changed}"
        start = [e for e in _events(out) if e["kind"] == "fold_start"]
        if before and start:  # a resume continues from the last committed epoch
            state = run / f"fold_{start[0]['fold']}" / "state.json"
            assert start[0]["start_epoch"] >= 1
            assert not state.exists() or json.loads(state.read_text())["checkpoint_epoch"] \
                >= start[0]["start_epoch"] - 1

    before = _committed(run)
    done = subprocess.run([sys.executable, "-m", "allnet_core", "train", str(tiny_data),
                           "--out", str(run), *FLAGS, "--resume"],
                          capture_output=True, text=True, env=_env(), timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    after = _committed(run)
    assert {k: after[k] for k in before} == before  # nothing completed was redone
    _check_parseable(run)
    for name in ("report.md", "report.json", "curves.png", "confusion.png",
                 "holdout/predictions.csv", "fold_1/model.keras", "fold_2/model.keras"):
        assert (run / name).is_file(), name
    assert sorted(p.name for p in run.rglob(".*")) == [".lock"]  # no temporaries left
    history = pd.read_csv(run / "fold_1" / "history.csv")
    assert list(history["epoch"]) == [1, 2]
    from allnet_core.model import load_model

    assert load_model(run).input_size == (16, 16)


@pytest.mark.slow
def test_disk_full_is_one_line_and_resumes_after_space_is_freed(tiny_data, small_disk):
    run = small_disk / "run"
    failed = subprocess.run([sys.executable, "-m", "allnet_core", "train", str(tiny_data),
                             "--out", str(run), *FLAGS], capture_output=True, text=True,
                            env=_env(), timeout=300)
    assert failed.returncode == 2
    last = failed.stderr.strip().splitlines()[-1]
    assert last.startswith("allnet: error: ") and "No space left" in last
    assert ".keras" in last and "free some space" in last  # names the file, says what to do
    assert "Traceback" not in failed.stderr
    _check_parseable(run)
    assert sorted(p.name for p in run.rglob(".*")) == [".lock"]  # no temporaries left
    before = _committed(run)

    subprocess.run(["mount", "-o", "remount,size=600m", str(small_disk)], check=True)
    done = subprocess.run([sys.executable, "-m", "allnet_core", "train", str(tiny_data),
                           "--out", str(run), *FLAGS, "--resume"], capture_output=True,
                          text=True, env=_env(), timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    after = _committed(run)
    assert {k: after[k] for k in before} == before
    assert (run / "report.md").is_file()


def test_read_only_run_folder_refused_before_work(tiny_data, readonly_dir):
    proc = subprocess.run([sys.executable, "-m", "allnet_core", "train", str(tiny_data),
                           "--out", str(readonly_dir / "run"), *FLAGS], capture_output=True,
                          text=True, env=_env(), timeout=120)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert str(readonly_dir) in proc.stderr and "cannot write" in proc.stderr
    assert not (readonly_dir / "run").exists()


@pytest.mark.slow
def test_two_writers(tiny_data, tmp_path, capsys):
    """While one process trains in a run folder, a second `allnet train` (plain or
    --resume) is refused, naming the first; the first finishes untouched."""
    from allnet_core.cli import main

    run = tmp_path / "run"
    first = _child(tiny_data, run, resume=False,
                   env={"ALLNET_TEST_PAUSE_AT": "epoch_end:fold=1,epoch=1"})
    state = run / "fold_1" / "state.json"
    deadline = time.monotonic() + 240
    while not state.exists() and first.poll() is None and time.monotonic() < deadline:
        time.sleep(0.1)
    assert first.poll() is None, first.communicate()[1][-2000:]
    before = _committed(run)
    try:
        for extra in ([], ["--resume"]):
            capsys.readouterr()
            assert main(["train", str(tiny_data), "--out", str(run), *FLAGS, *extra]) == 2
            err = capsys.readouterr().err
            assert "in use" in err and f"process {first.pid}" in err, err
            assert err.count("\n") == 1
            if not extra:
                assert "--resume" not in err.split("command:")[0]  # no bad advice
    finally:
        (tmp_path / "go").touch()
    out, err = first.communicate(timeout=300)
    assert first.returncode == 0, err[-3000:]
    assert _committed(run)["config.json"] == before["config.json"]
    summary = json.loads((run / "report.json").read_text())
    fold_ends = [e for e in _events(out) if e["kind"] == "fold_end"]
    assert len(fold_ends) == 2
    for e in fold_ends:  # what the first process reported is what is on disk
        on_disk = json.loads((run / f"fold_{e['fold']}" / "metrics.json").read_text())
        assert on_disk["best_epoch"] == e["best_epoch"]
    assert summary["best_fold"] in (1, 2)
    assert not (run / ".lock.owner").exists()
    # the lock is free again: a resume of the finished run retrains nothing
    assert main(["train", str(tiny_data), "--out", str(run), *FLAGS, "--resume"]) == 0
