"""The cross-validation trainer: config, splits, run folder, progress, cancel, resume, CLI.

Training tests use tiny synthetic data (32 px input, 16 dense units, 1-3 epochs)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from allnet_core.errors import CancelledError, ConfigError, DatasetError
from allnet_core.progress import CancelToken
from allnet_core.training import PROFILES, TrainConfig, check_dataset, make_splits

TINY = dict(input_size=32, dense_units=16, epochs=2, per_class=16, folds=2, batch_size=8,
            lr=1e-3, holdout=0.25, workers=1)


def _table(subjects_per_class=6, cells=5):
    rows = []
    for s in range(subjects_per_class):
        for label, prefix in (("ALL", ""), ("HEM", "h")):
            for c in range(cells):
                rows.append((f"/x/{prefix}{s}_{c}.bmp", label, f"{prefix}{s}"))
    return pd.DataFrame(rows, columns=["path", "label", "subject"])


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    from allnet_core.datasets import discover
    from allnet_core.synthetic import write_cnmc_dataset

    root = tmp_path_factory.mktemp("tiny_data")
    write_cnmc_dataset(root, subjects=8, cells_per_subject=6, seed=1, size=40)
    return root, discover(root)


@pytest.fixture(scope="module")
def tiny_run(tiny_data, tmp_path_factory):
    from allnet_core.training import cross_validate

    root, table = tiny_data
    out = tmp_path_factory.mktemp("tiny_run") / "run"
    events = []
    result = cross_validate(table, TrainConfig(**TINY), out, progress=events.append)
    return result, events, out


# --------------------------------------------------------------------------- config


def test_paper_defaults():
    c = TrainConfig()
    assert (c.optimizer, c.lr, c.batch_size, c.epochs, c.loss) == (
        "adam", 1e-5, 16, 65, "categorical_crossentropy")
    assert (c.holdout, c.folds, c.per_class, c.input_size, c.split) == (
        0.2, 5, 6000, 450, "subject")
    assert c.precision == "float32" and c.dense_units == 4096
    assert TrainConfig.from_profile("paper") == TrainConfig()


def test_quick_profile_and_overrides():
    q = TrainConfig.from_profile("quick", epochs=3, seed=None)
    assert q.profile == "quick" and q.epochs == 3
    assert q.input_size == PROFILES["quick"]["input_size"] < 100
    assert q.per_class < 1000 and q.dense_units < 4096
    with pytest.raises(ConfigError, match="profile"):
        TrainConfig.from_profile("fast")


def test_json_round_trip(tmp_path):
    c = TrainConfig(epochs=3, split="image", seed=7, precision="mixed")
    assert TrainConfig.from_json(c.to_json()) == c
    (tmp_path / "config.json").write_text(c.to_json())
    assert TrainConfig.from_json(tmp_path / "config.json") == c
    with pytest.raises(ConfigError, match="unknown"):
        TrainConfig.from_dict({**c.to_dict(), "learning_rate": 1})


@pytest.mark.parametrize("field, value", [
    ("lr", 0), ("epochs", 0), ("folds", 1), ("holdout", 1.0), ("split", "patient"),
    ("precision", "float16"), ("batch_size", 0), ("input_size", 4), ("per_class", 0),
])
def test_config_validation(field, value):
    with pytest.raises(ConfigError, match=field):
        TrainConfig(**{field: value})


# --------------------------------------------------------------------------- splits


def _check_partition(splits, table, folds):
    per_path = splits.groupby("path")["role"].apply(list)
    assert set(per_path.index) == set(table["path"])
    for roles in per_path:
        if roles == ["holdout"]:
            continue
        assert len(roles) == folds
        assert sum(r.endswith("_val") for r in roles) == 1


def test_subject_splits_are_disjoint_and_stratified():
    table = _table(subjects_per_class=10)
    cfg = TrainConfig(folds=3, seed=3)
    splits = make_splits(table, cfg)
    _check_partition(splits, table, 3)
    subjects = {r: set(g["subject"]) for r, g in splits.groupby("role")}
    hold = subjects["holdout"]
    for k in range(1, 4):
        tr, va = subjects[f"fold_{k}_train"], subjects[f"fold_{k}_val"]
        assert not (tr & va) and not (tr & hold) and not (va & hold)
    for role, g in splits.groupby("role"):
        assert set(g["label"]) == {"ALL", "HEM"}, role
    frac = (splits["role"] == "holdout").sum() / len(table)
    assert 0.1 <= frac <= 0.3
    pd.testing.assert_frame_equal(splits, make_splits(table, cfg))  # deterministic
    assert not make_splits(table, TrainConfig(folds=3, seed=4)).equals(splits)


def test_image_split_shares_subjects():
    table = _table(subjects_per_class=4, cells=10)
    splits = make_splits(table, TrainConfig(folds=3, split="image"))
    _check_partition(splits, table, 3)
    hold = set(splits.loc[splits["role"] == "holdout", "subject"])
    train = set(splits.loc[splits["role"] == "fold_1_train", "subject"])
    assert hold & train  # the paper's protocol: the same donors on both sides
    assert (splits["role"] == "holdout").sum() == round(0.2 * len(table))


@pytest.mark.realdata
def test_real_cnmc_subjects_never_cross_splits(cnmc_dir):
    from allnet_core.datasets import discover

    table = discover(cnmc_dir, verify=False)
    per_class = table.groupby("label")["subject"].nunique()
    folds = min(5, int(per_class.min()) - 1)
    assert folds >= 2, per_class
    splits = make_splits(table, TrainConfig(folds=folds, seed=0))
    _check_partition(splits, table, folds)
    hold = set(splits.loc[splits["role"] == "holdout", "subject"])
    assert hold
    for k in range(1, folds + 1):
        tr = set(splits.loc[splits["role"] == f"fold_{k}_train", "subject"])
        va = set(splits.loc[splits["role"] == f"fold_{k}_val", "subject"])
        assert not (tr & va) and not (tr & hold) and not (va & hold)
    # case-insensitive ids: 'H3' and 'h3' are one subject
    assert all(s == s.lower() for s in splits["subject"])


def test_too_few_subjects_suggests_folds():
    table = _table(subjects_per_class=4)
    with pytest.raises(DatasetError, match="--folds 3"):
        check_dataset(table, TrainConfig(folds=5))
    check_dataset(table, TrainConfig(folds=3))
    two = _table(subjects_per_class=2)
    with pytest.raises(DatasetError, match="--split image"):
        make_splits(two, TrainConfig(folds=5))


def test_one_class_and_empty():
    table = _table()
    with pytest.raises(DatasetError, match="only ALL"):
        make_splits(table[table["label"] == "ALL"], TrainConfig())
    with pytest.raises(DatasetError, match="empty"):
        make_splits(table.iloc[:0], TrainConfig())


def test_unreadable_file_fails_before_training(tiny_data, tmp_path):
    from allnet_core.training import cross_validate

    _, table = tiny_data
    bad = tmp_path / "UID_9_1_1_all.bmp"
    bad.write_bytes(b"BM not really a bitmap")
    broken = pd.concat([table, pd.DataFrame([{"path": str(bad), "label": "ALL",
                                              "subject": "1"}])], ignore_index=True)
    with pytest.raises(DatasetError, match="UID_9_1_1_all.bmp"):
        cross_validate(broken, TrainConfig(**TINY), tmp_path / "run")
    assert not (tmp_path / "run").exists()


# --------------------------------------------------------------------------- a tiny run


def test_run_folder_is_complete(tiny_run):
    result, _, out = tiny_run
    for name in ("config.json", "environment.json", "splits.csv", "report.md", "report.json",
                 "curves.png", "confusion.png", "holdout/metrics.json",
                 "holdout/predictions.csv", "holdout/per_subject.csv"):
        assert (out / name).is_file(), name
    for k in (1, 2):
        for name in ("history.csv", "metrics.json", "model.keras", "plan.csv"):
            assert (out / f"fold_{k}" / name).is_file(), (k, name)
        assert not list((out / f"fold_{k}").glob("ckpt_*"))  # checkpoints pruned
        assert not (out / f"fold_{k}" / "state.json").exists()
        history = pd.read_csv(out / f"fold_{k}" / "history.csv")
        assert list(history["epoch"]) == [1, 2]
        assert {"loss", "accuracy", "val_loss", "val_accuracy", "val_f1"} <= set(history)
    # no temporary files left; the run's lock file stays (its owner file goes)
    assert [p.name for p in out.rglob(".*")] == [".lock"]
    assert not list(out.rglob("*_cache.*"))  # each fold's image caches go with the fold
    assert TrainConfig.from_json(out / "config.json") == TrainConfig(**TINY)
    env = json.loads((out / "environment.json").read_text())
    assert env["device_used"] in ("CPU", "GPU") and env["keras_backend"]
    assert env["precision_policy"] == "float32"
    report = json.loads((out / "report.json").read_text())  # strict JSON (no NaN)
    assert report["best_fold"] == result.best_fold
    assert report["subjects_in_several_splits"] == 0
    assert Path(report["best_model"]) == result.best_model
    best_f1 = max(m["f1"] or -1 for m in report["folds"])
    assert (report["folds"][result.best_fold - 1]["f1"] or -1) == best_f1


def test_splits_csv_and_plan(tiny_run, tiny_data):
    """The run's own split and balancing (``splits.csv``, ``fold_<k>/plan.csv``): every
    balanced sample of a fold, plain or augmented, is one of that fold's training images,
    never a hold-out or validation image, and carries that image's label."""
    _, _, out = tiny_run
    splits = pd.read_csv(out / "splits.csv", dtype=str)
    assert list(splits.columns) == ["path", "subject", "label", "role"]
    assert set(splits["role"]) == {"holdout", "fold_1_train", "fold_1_val", "fold_2_train",
                                   "fold_2_val"}
    label_of = dict(zip(splits["path"], splits["label"], strict=False))
    for k in (1, 2):
        plan = pd.read_csv(out / f"fold_{k}" / "plan.csv")
        assert plan.groupby("label").size().to_dict() == {"ALL": 16, "HEM": 16}
        roles = set(splits.loc[splits["path"].isin(plan["path"]), "role"])
        assert f"fold_{k}_train" in roles
        assert "holdout" not in roles and f"fold_{k}_val" not in roles
        assert plan["augment"].any()  # the minority class was filled with augmented copies
        assert [label_of[p] for p in plan["path"]] == list(plan["label"])


@pytest.mark.parametrize("f1s, best", [
    ([0.70, 0.90, 0.80], 2),  # the last fold is not the best
    ([0.95, 0.60], 1),
    ([0.80, 0.80, 0.70], 1),  # the first of equals
    ([None, 0.10], 2),  # an undefined F1 ranks below any defined one
])
def test_best_fold_is_the_one_with_the_highest_validation_f1(f1s, best):
    from allnet_core.training.loop import _best_fold

    folds = [{"f1": f1, "loss": 0.5, "fold": k + 1} for k, f1 in enumerate(f1s)]
    assert _best_fold(folds) == best


def test_report_is_table3_style(tiny_run):
    _, _, out = tiny_run
    text = (out / "report.md").read_text()
    assert "| | Accuracy | Specificity | Recall | F1 | Precision | MCC |" in text
    assert "| Fold 1 (validation) |" in text and "| Fold 2 (validation) |" in text
    assert "Mean ± std over folds" in text and "**Hold-out**" in text
    assert "grouped by subject" in text
    holdout = json.loads((out / "holdout" / "metrics.json").read_text())
    assert f"{100 * holdout['accuracy']:.2f}" in text


def test_holdout_predictions_match_metrics(tiny_run):
    from allnet_core.metrics import binary_metrics

    result, _, out = tiny_run
    pred = pd.read_csv(out / "holdout" / "predictions.csv")
    m = binary_metrics(pred["true_class"], pred["p_all"])
    assert m["accuracy"] == pytest.approx(result.holdout["accuracy"])
    splits = pd.read_csv(out / "splits.csv")
    assert set(pred["source"]) == set(splits.loc[splits["role"] == "holdout", "path"])


def test_progress_events(tiny_run):
    _, events, _ = tiny_run
    kinds = [e["kind"] for e in events]
    assert kinds[-1] == "done"
    assert set(kinds[: kinds.index("start")]) <= {"check"}  # files are decoded first
    assert kinds.count("fold_start") == 2 and kinds.count("fold_end") == 2
    assert kinds.count("epoch_end") == 4
    batch = next(e for e in events if e["kind"] == "batch_end")
    assert {"fold", "epoch", "batch", "batches", "loss", "accuracy"} <= set(batch)
    epoch = next(e for e in events if e["kind"] == "epoch_end")
    assert {"fold", "epoch", "epochs", "loss", "val_loss", "val_accuracy", "val_f1"} <= set(epoch)
    json.dumps(events)  # plain JSON values, ready for the worker's pipe


def test_existing_run_needs_resume(tiny_run, tiny_data):
    from allnet_core.training import cross_validate

    _, _, out = tiny_run
    _, table = tiny_data
    with pytest.raises(ConfigError, match="--resume"):
        cross_validate(table, TrainConfig(**TINY), out)
    with pytest.raises(ConfigError, match="epochs"):
        cross_validate(table, TrainConfig(**{**TINY, "epochs": 5}), out, resume=True)


def test_evaluate_run_on_holdout(tiny_run, tmp_path):
    from allnet_core.evaluation import evaluate

    result, _, out = tiny_run
    splits = pd.read_csv(out / "splits.csv", dtype=str)
    hold = splits[splits["role"] == "holdout"]
    ev = evaluate(out, hold, tmp_path / "ev")
    assert ev.model == result.best_model
    assert ev.metrics["accuracy"] == pytest.approx(result.holdout["accuracy"])
    for name in ("metrics.json", "predictions.csv", "per_subject.csv", "confusion.png",
                 "report.md"):
        assert (tmp_path / "ev" / name).is_file()
    assert len(ev.per_subject) == hold["subject"].nunique()


# --------------------------------------------------------------------------- cancel, resume


def test_cancel_then_resume(tiny_data, tmp_path):
    from allnet_core.training import cross_validate

    _, table = tiny_data
    cfg = TrainConfig(**{**TINY, "epochs": 3})
    out = tmp_path / "run"
    token = CancelToken()
    seen = []

    def progress(event):
        seen.append(event)
        # cancel in the middle of fold 1, epoch 2 (after epoch 1 was committed)
        if event["kind"] == "batch_end" and event["fold"] == 1 and event["epoch"] == 2:
            token.cancel()

    with pytest.raises(CancelledError, match="--resume"):
        cross_validate(table, cfg, out, progress=progress, cancel=token)
    assert seen[-1]["kind"] == "cancelled"
    state = json.loads((out / "fold_1" / "state.json").read_text())
    assert state["epoch"] == state["checkpoint_epoch"] == 1
    assert (out / "fold_1" / state["checkpoint"]).is_file()
    from allnet_core.training import load_model

    ckpt = load_model(out / "fold_1" / state["checkpoint"], compile=True)
    batches = next(e for e in seen if e["kind"] == "fold_start")["batches"]
    assert int(ckpt.optimizer.iterations) == batches  # the optimizer state is saved too
    assert not (out / "fold_1" / "metrics.json").exists()
    assert not (out / "report.md").exists()

    events = []
    result = cross_validate(table, cfg, out, progress=events.append, resume=True)
    start = next(e for e in events if e["kind"] == "fold_start")
    assert start["fold"] == 1 and start["start_epoch"] == 2
    epochs = [(e["fold"], e["epoch"]) for e in events if e["kind"] == "epoch_end"]
    assert epochs == [(1, 2), (1, 3), (2, 1), (2, 2), (2, 3)]
    history = pd.read_csv(out / "fold_1" / "history.csv")
    assert list(history["epoch"]) == [1, 2, 3]
    assert result.report.is_file()

    # resuming a finished run retrains nothing
    again = []
    cross_validate(table, cfg, out, progress=again.append, resume=True)
    assert [e["kind"] for e in again].count("fold_skipped") == 2
    assert not [e for e in again if e["kind"] == "epoch_end"]


#: No dropout: a resumed fold draws its dropout masks from a generator reseeded at the resume
#: (Keras does not save the masks' generator state with a model), so only a run without
#: dropout can continue bit for bit (docs/training.md, "Reproducibility").
NO_DROPOUT = {**TINY, "conv_dropout": 0.0, "dense_dropout": 0.0}


def _fold_1_only(table, cfg, out, cancel_in_fold_1_epoch=None, resume=False):
    """Train fold 1 of ``cfg`` into ``out`` and stop at fold 2's first batch; with
    ``cancel_in_fold_1_epoch`` stop in that epoch of fold 1 instead."""
    from allnet_core.training import cross_validate

    token = CancelToken()

    def progress(event):
        if event["kind"] != "batch_end":
            return
        if event["fold"] == 2 or event["epoch"] == cancel_in_fold_1_epoch:
            token.cancel()

    with pytest.raises(CancelledError):
        cross_validate(table, cfg, out, progress=progress, cancel=token, resume=resume)


def test_resumed_fold_matches_an_uninterrupted_one(tiny_data, tmp_path):
    """Cancelled in epoch 2 and resumed, fold 1 ends as if never stopped: the same history
    and weights (to float32 rounding; observed bit-identical on CPU) as a run of the same
    seed trained straight through. This needs the checkpoint (weights and optimizer state)
    and the feed resumed at its epoch (its shuffling order)."""
    from allnet_core.training import load_model

    _, table = tiny_data
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    _fold_1_only(table, TrainConfig(**NO_DROPOUT), straight)
    _fold_1_only(table, TrainConfig(**NO_DROPOUT), resumed, cancel_in_fold_1_epoch=2)
    assert json.loads((resumed / "fold_1" / "state.json").read_text())["epoch"] == 1
    _fold_1_only(table, TrainConfig(**NO_DROPOUT), resumed, resume=True)

    a, b = (pd.read_csv(run / "fold_1" / "history.csv") for run in (straight, resumed))
    assert list(b["epoch"]) == [1, 2]
    columns = ["loss", "accuracy", "val_loss", "val_accuracy"]
    pd.testing.assert_frame_equal(a[columns], b[columns], rtol=0, atol=1e-6)
    wa, wb = (load_model(run / "fold_1" / "model.keras").get_weights()
              for run in (straight, resumed))
    for x, y in zip(wa, wb, strict=True):
        np.testing.assert_allclose(x, y, rtol=0, atol=1e-6)


@pytest.mark.slow
def test_sigkill_then_resume_from_cli(tiny_data, tmp_path):
    """Kill a real `allnet train` process with SIGKILL after its first checkpoint; resume."""
    root, _ = tiny_data
    out = tmp_path / "run"
    args = [sys.executable, "-m", "allnet_core", "train", str(root), "--out", str(out),
            "--epochs", "3", "--input-size", "32", "--dense-units", "16", "--folds", "2",
            "--per-class", "16", "--batch-size", "8", "--lr", "1e-3", "--holdout", "0.25",
            "--workers", "1"]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    state = out / "fold_1" / "state.json"
    deadline = time.monotonic() + 240
    while not state.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert proc.poll() is None, proc.communicate()[1].decode()[-2000:]
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    # every file under its real name is complete
    for p in out.rglob("*.json"):
        if not p.name.startswith("."):
            json.loads(p.read_text())
    committed = json.loads(state.read_text())
    assert committed["epoch"] >= 1
    assert (state.parent / committed["checkpoint"]).is_file()

    resumed = subprocess.run(args + ["--resume"], capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "report:" in resumed.stdout
    history = pd.read_csv(out / "fold_1" / "history.csv")
    assert list(history["epoch"]) == [1, 2, 3]
    assert (out / "report.md").is_file()
    # stale temporaries cleaned up on resume; the lock file stays, its owner file goes
    assert [p.name for p in out.rglob(".*")] == [".lock"]


@pytest.mark.slow
def test_cli_train_evaluate_and_errors(tiny_data, tmp_path, capsys):
    from allnet_core.cli import main

    root, _ = tiny_data
    out = tmp_path / "run"
    code = main(["train", str(root), "--out", str(out), "--epochs", "1", "--input-size", "32",
                 "--dense-units", "16", "--folds", "2", "--per-class", "8", "--batch-size", "8",
                 "--holdout", "0.25", "--split", "image", "--workers", "1"])
    assert code == 0
    text = (out / "report.md").read_text()
    assert "Subjects are shared between" in text
    cfg = TrainConfig.from_json(out / "config.json")
    assert (cfg.split, cfg.epochs, cfg.input_size) == ("image", 1, 32)
    assert main(["evaluate", str(out), str(root), "--out", str(tmp_path / "ev")]) == 0
    assert (tmp_path / "ev" / "report.md").is_file()
    capsys.readouterr()
    assert main(["train", str(root), "--out", str(tmp_path / "r2"), "--folds", "9"]) == 2
    assert "--folds 3" in capsys.readouterr().err


def test_mixed_precision_run(tiny_data, tmp_path):
    """``precision="mixed"``: bfloat16 on a CPU (float16 + loss scaling on a GPU); the
    softmax output and the saved probabilities stay float32."""
    from allnet_core.training import cross_validate, load_model

    _, table = tiny_data
    cfg = TrainConfig(**{**TINY, "epochs": 1, "precision": "mixed"})
    result = cross_validate(table, cfg, tmp_path / "run")
    env = json.loads((tmp_path / "run" / "environment.json").read_text())
    expected = "mixed_float16" if env["device_used"] == "GPU" else "mixed_bfloat16"
    assert env["precision_policy"] == expected
    model = load_model(result.best_model)
    assert model.get_layer("conv1").dtype_policy.name == expected
    assert model.get_layer("probabilities").dtype_policy.compute_dtype == "float32"
    pred = pd.read_csv(tmp_path / "run" / "holdout" / "predictions.csv")
    assert pred["p_all"].between(0, 1).all()
    import keras

    assert keras.config.dtype_policy().name == "float32"  # the global policy is restored


def test_resume_config(tmp_path):
    from allnet_core.training import resume_config

    assert resume_config(tmp_path, "quick", epochs=3) == TrainConfig.from_profile("quick",
                                                                                  epochs=3)
    saved = TrainConfig.from_profile("quick", epochs=4, seed=2)
    (tmp_path / "config.json").write_text(saved.to_json())
    assert resume_config(tmp_path) == saved
    assert resume_config(tmp_path, workers=1, epochs=None).workers == 1
    with pytest.raises(ConfigError, match="profile"):
        resume_config(tmp_path, "paper")


def _widget_request(profile: str) -> dict:
    """What the napari "Train ALLNet" widget sends the worker: every TrainConfig field, the
    chosen profile's values where the form was left alone (``TrainWidget.config()``)."""
    return TrainConfig.from_profile(profile).to_dict()


@pytest.mark.parametrize("profile", ["paper", "quick"])
def test_napari_resumes_a_cli_run_with_non_default_fields(tmp_path, profile):
    """A run started with ``allnet train --dense-units 512 --epochs 3`` resumes from the
    widget's request (a profile and its default values) with the run's own values."""
    from allnet_core.training import config_from_request
    from allnet_core.training.rundir import _prepare_run_dir

    table = _table(subjects_per_class=10)
    cli = config_from_request({"dense_units": 512, "epochs": 3, "workers": 1}, profile)
    assert (cli.dense_units, cli.epochs, cli.profile) == (512, 3, profile)
    run = tmp_path / "run"
    assert _prepare_run_dir(run, cli, make_splits(table, cli), resume=False) is False

    request = _widget_request(profile)  # the worker gets it as request["config"]
    resumed = config_from_request(request, request.pop("profile"), resume_dir=run)
    assert resumed.dense_units == 512 and resumed.epochs == 3
    assert resumed.workers == request["workers"]  # runtime fields follow the request
    assert {**resumed.to_dict(), "workers": 1} == cli.to_dict()
    # the run folder accepts it: no "cannot resume with a different configuration"
    assert _prepare_run_dir(run, resumed, make_splits(table, resumed), resume=True) is True


def test_config_from_request(tmp_path):
    from allnet_core.training import config_from_request

    assert config_from_request({}) == TrainConfig()
    assert config_from_request({"epochs": 3, "seed": None}, "quick") == \
        TrainConfig.from_profile("quick", epochs=3)
    assert config_from_request({"profile": "quick"}).profile == "quick"
    with pytest.raises(ConfigError, match="learning_rate"):
        config_from_request({"learning_rate": 1e-3})
    with pytest.raises(ConfigError, match="profile"):
        config_from_request({}, "fast")
    # resume_dir without a run yet: a new run
    assert config_from_request({"epochs": 2}, "quick", tmp_path) == \
        TrainConfig.from_profile("quick", epochs=2)
    saved = TrainConfig.from_profile("quick", epochs=4, dense_units=32)
    (tmp_path / "config.json").write_text(saved.to_json())
    assert config_from_request({}, None, tmp_path) == saved
    assert config_from_request({"workers": 5}, None, tmp_path).workers == 5
    assert config_from_request({"epochs": 4}, "quick", tmp_path) == saved
    # an explicit change of what the run computes is refused, naming the field
    with pytest.raises(ConfigError, match="epochs: run has 4, asked 7"):
        config_from_request({"epochs": 7}, None, tmp_path)
    with pytest.raises(ConfigError, match="profile 'quick', not 'paper'"):
        config_from_request(_widget_request("paper"), "paper", tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize("profile", ["quick", "cpu"])
def test_demo_command_end_to_end(tmp_path, capsys, monkeypatch, profile):
    """`allnet demo` (shrunk: few cells, one epoch) synthesizes, trains, evaluates, reports,
    with the quick profile at 64 px or the cpu profile at 128 px (in its own folder)."""
    from allnet_core.cli import main

    if profile == "quick":  # the default profile, an explicit folder
        out = tmp_path / "demo"
        flags = ["--out", str(out)]
    else:  # the default folder, in the working directory
        monkeypatch.chdir(tmp_path)
        out = Path("allnet-demo-cpu")
        flags = ["--profile", profile]
    code = main(["demo", "--subjects", "10", "--cells-per-subject", "4", "--epochs", "1",
                 "--per-class", "16", *flags])
    assert code == 0
    printed = capsys.readouterr().out
    assert f"report: {out / 'run' / 'report.md'}" in printed
    assert (out / "run" / "report.md").is_file()
    assert (out / "evaluation" / "report.md").is_file()
    cfg = TrainConfig.from_json(out / "run" / "config.json")
    assert cfg.profile == profile and cfg.split == "subject"
    assert cfg.input_size == {"quick": 64, "cpu": 128}[profile]
