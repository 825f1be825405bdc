"""The training profiles (``paper``, ``quick``, ``cpu``), the estimator, stain jitter, the
resumable learning-rate schedule and early stopping, and the fine-scale cues of the
synthetic cells."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from allnet_core.errors import CancelledError, ConfigError
from allnet_core.progress import CancelToken
from allnet_core.training import PROFILES, TrainConfig

TINY = dict(input_size=32, dense_units=16, per_class=16, folds=2, batch_size=8, lr=1e-3,
            holdout=0.25, workers=1)


# --------------------------------------------------------------------------- profiles


def test_paper_profile_is_the_papers_protocol():
    paper = TrainConfig.from_profile("paper")
    assert paper == TrainConfig()
    assert (paper.optimizer, paper.lr, paper.batch_size, paper.epochs) == ("adam", 1e-5, 16, 65)
    assert (paper.early_stopping, paper.lr_schedule, paper.stain_jitter) == (0, "constant", 0.0)
    assert not paper.epoch_flips and paper.monitor == "val_f1"


def test_cpu_profile_is_for_real_cells_within_an_hour():
    from allnet_core.training.estimate import estimate_seconds

    cpu = TrainConfig.from_profile("cpu")
    assert cpu.input_size >= 128 and cpu.monitor == "val_loss"
    assert cpu.early_stopping > 0 and cpu.lr_schedule == "plateau" and cpu.stain_jitter > 0
    # its longest run (no early stop) fits an hour at the measured 2-core speed
    assert estimate_seconds(cpu.to_dict()) < 3600
    assert estimate_seconds(TrainConfig.from_profile("quick").to_dict()) < 600  # the demo's


def test_cpu_profile_builds_its_narrow_model_without_dense_dropout():
    """With half of 256 dense units dropped ALLNet learnt little of the synthetic fine cues
    in 10 epochs (docs/training.md); the cpu profile's model keeps its convolutional
    dropout and drops nothing after its dense layers, the paper's and the demo's keep both."""
    from allnet_core.training.runtime import _new_model

    assert TrainConfig.from_profile("cpu").dense_units == 256  # narrow: 4096 in the paper

    rates = {}
    for name in ("cpu", "quick", "paper"):
        cfg = TrainConfig.from_profile(name, input_size=32, dense_units=8)
        model = _new_model(cfg)
        rates[name] = {layer.name: layer.rate for layer in model.layers
                       if type(layer).__name__ == "Dropout"}
    assert rates["cpu"] == {"drop3": 0.25, "drop4": 0.25, "drop_fc1": 0.0, "drop_fc2": 0.0}
    assert rates["paper"] == rates["quick"] == {"drop3": 0.25, "drop4": 0.25,
                                                 "drop_fc1": 0.5, "drop_fc2": 0.5}


def test_profile_lines_say_use_input_epochs_and_time():
    from allnet_core.training.estimate import profile_line

    for name in PROFILES:
        c = TrainConfig.from_profile(name)
        line = profile_line(name)
        assert line.startswith(f"{name}: ") and f"{c.input_size} px" in line
        assert f"{c.epochs} epochs x {c.folds} folds" in line and "2 CPU cores" in line
    assert "up to 20 epochs" in profile_line("cpu") and "at most" in profile_line("cpu")
    assert "days" in profile_line("paper") and "GPU speed not measured" in profile_line(
        "paper", "GPU")


@pytest.mark.parametrize("field, value, match", [
    ("monitor", "val_auc", "monitor"), ("lr_schedule", "cosine", "lr_schedule"),
    ("early_stopping", -1, "early_stopping"), ("stain_jitter", 1.0, "stain_jitter"),
    ("lr_patience", 0, "lr_patience")])
def test_new_fields_are_checked(field, value, match):
    with pytest.raises(ConfigError, match=match):
        TrainConfig(**{field: value})


def test_train_flags_set_the_new_fields(tmp_path):
    from allnet_core._cli.train import _config_from_args
    from allnet_core.cli import build_parser

    args = build_parser().parse_args(
        ["train", str(tmp_path), "--out", str(tmp_path / "run"), "--profile", "cpu",
         "--early-stopping", "3", "--no-epoch-flips", "--stain-jitter", "0", "--monitor",
         "val_f1", "--lr-schedule", "constant", "--lr-patience", "4"])
    c = _config_from_args(args)
    assert (c.profile, c.input_size, c.early_stopping, c.epoch_flips) == ("cpu", 128, 3, False)
    assert (c.stain_jitter, c.monitor, c.lr_schedule, c.lr_patience) == (0, "val_f1",
                                                                          "constant", 4)


# --------------------------------------------------------------------------- stain jitter


def test_stain_jitter_keeps_black_and_the_cell_mask():
    from allnet_core.feed._batching import jitter_gains, stain_jitter

    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (4, 8, 8, 3), dtype=np.uint8)
    x[:, :2] = 0  # background
    x[:, 2, 2] = 1  # a dark cell pixel
    gains = jitter_gains(seed=1, epoch=0, index=0, size=4, strength=0.3)
    assert gains.shape == (4, 3) and (np.abs(gains - 1) <= 0.3).all()
    out = stain_jitter(x, gains)
    assert out.dtype == np.uint8 and (out[:, :2] == 0).all()
    assert ((out > 0) == (x > 0)).all()  # no cell channel becomes 0
    expected = np.clip(np.rint(x * gains[:, None, None, :]), 0, 255)
    big = x > 4  # away from the >= 1 floor
    np.testing.assert_array_equal(out[big], expected[big])
    np.testing.assert_array_equal(jitter_gains(1, 0, 0, 4, 0.3), gains)  # seeded
    assert not np.array_equal(jitter_gains(1, 1, 0, 4, 0.3), gains)  # anew every epoch
    floats = stain_jitter(x.astype(np.float32), gains)
    assert floats.dtype == np.float32 and floats.max() <= 255


def test_cached_feed_jitters_each_epoch(tmp_path):
    from allnet_core.feed import CachedFeedCore, build_cache
    from allnet_core.io import write_image
    from allnet_core.synthetic import synth_cell

    paths = []
    for i in range(4):
        paths.append(tmp_path / f"c{i}.bmp")
        write_image(paths[-1], synth_cell("ALL" if i % 2 else "HEM", i, size=32))
    info = build_cache(tmp_path / "c.npy", [str(p) for p in paths], ["{}"] * 4, 24)
    labels = ["HEM", "ALL"] * 2
    plain = CachedFeedCore(info.path, labels, batch_size=4, shuffle=False)[0][0]
    feed = CachedFeedCore(info.path, labels, batch_size=4, shuffle=False, jitter=0.2)
    first = feed[0][0]
    assert not np.array_equal(first, plain) and ((first > 0) == (plain > 0)).all()
    feed.set_epoch(1)
    assert not np.array_equal(feed[0][0], first)
    with pytest.raises(ConfigError, match="jitter"):
        CachedFeedCore(info.path, labels, jitter=1.5)


# --------------------------------------------------------------------------- schedule


def _history(losses):
    return [{"epoch": i + 1, "val_loss": v, "val_f1": 0.5} for i, v in enumerate(losses)]


@pytest.mark.backends
def test_schedule_and_early_stopping_resume_from_the_history():
    """What a resumed fold rebuilds from its committed history: the halved learning rate,
    the patience counters, and whether the fold had already stopped."""
    from allnet_core.training.runtime import _new_model
    from allnet_core.training.schedule import fold_schedule

    config = TrainConfig(**TINY, epochs=9, monitor="val_loss", lr_schedule="plateau",
                         lr_patience=2, early_stopping=4)
    model = _new_model(config)
    model.optimizer.learning_rate = 0.123  # what a checkpoint might hold: replaced
    callbacks, stopped = fold_schedule(model, config, _history([1.0, 0.9, 0.95, 0.96, 0.97]))
    plateau, stopper = callbacks
    assert not stopped and stopper.wait == 3 and stopper.best == 0.9
    for cb in callbacks:  # as fit does
        cb.set_model(model)
        cb.on_train_begin()
    lr = float(np.asarray(model.optimizer.learning_rate))
    assert lr == pytest.approx(config.lr / 2)  # halved once, after epochs 3 and 4
    assert plateau.wait == 1 and plateau.best == 0.9
    # one more epoch without improvement stops the fold: resuming it trains nothing
    _, stopped = fold_schedule(model, config, _history([1.0, 0.9, 0.95, 0.96, 0.97, 0.98]))
    assert stopped
    # F1 is a score to maximise
    f1 = TrainConfig(**TINY, epochs=9, early_stopping=1)
    history = [{"epoch": 1, "val_loss": 1.0, "val_f1": 0.6},
               {"epoch": 2, "val_loss": 0.5, "val_f1": 0.7}]
    assert not fold_schedule(model, f1, history)[1]


def _expected_lrs(losses, lr, patience, floor):
    """The plateau rule, written out: the rate each epoch trained with."""
    out, best, wait = [], np.inf, 0
    for v in losses:
        out.append(lr)
        if v < best:
            best, wait = v, 0
        else:
            wait += 1
            if wait >= patience and lr > floor:
                lr, wait = max(lr / 2, floor), 0
    return out


@pytest.mark.backends
def test_cancel_then_resume_keeps_schedule_and_early_stopping(tmp_path):
    from allnet_core.datasets import discover
    from allnet_core.synthetic import write_cnmc_dataset
    from allnet_core.training import cross_validate

    table = discover(write_cnmc_dataset(tmp_path / "data", subjects=8, cells_per_subject=5,
                                        seed=3, size=40))
    cfg = TrainConfig(**TINY, epochs=7, monitor="val_loss", lr_schedule="plateau",
                      lr_patience=1, early_stopping=2, stain_jitter=0.1, epoch_flips=True)
    token = CancelToken()

    def progress(event):  # cancel during fold 1, epoch 3 (epochs 1-2 committed)
        if event["kind"] == "batch_end" and event["fold"] == 1 and event["epoch"] == 3:
            token.cancel()

    with pytest.raises(CancelledError):
        cross_validate(table, cfg, tmp_path / "run", progress=progress, cancel=token)
    result = cross_validate(table, cfg, tmp_path / "run", resume=True)
    for fold in (1, 2):
        history = pd.read_csv(tmp_path / "run" / f"fold_{fold}" / "history.csv")
        losses = history["val_loss"].to_numpy()
        np.testing.assert_allclose(
            history["lr"], _expected_lrs(losses, cfg.lr, 1, cfg.lr / 32), rtol=1e-6)
        best = int(np.argmin(losses))  # the first lowest loss
        metrics = json.loads((tmp_path / "run" / f"fold_{fold}" / "metrics.json").read_text())
        assert metrics["best_epoch"] == best + 1 and metrics["epochs"] == len(history)
        # stopped when two epochs passed without improvement, or ran all epochs
        assert len(history) == min(cfg.epochs, best + 1 + cfg.early_stopping) or (
            len(history) == cfg.epochs)
    assert "early stopping after 2 epochs" in result.report.read_text()
    assert "Time: " in result.report.read_text()


# --------------------------------------------------------------------------- synthetic


def test_fine_chromatin_cues_average_away_at_64_px():
    """The clumped chromatin that tells healthy cells from blasts keeps more than half of
    its contrast at a 128 px input and less than a third at 64 px (450 px frame); blasts'
    finely dispersed chromatin is smooth, and the clumps do not change the mean shade."""
    from allnet_core.synthetic.cells import _chromatin

    rng = np.random.default_rng(0)

    def shade(f):
        return _chromatin((448, 448), {"mottle_amp": 0.0, "grain": f}, 1.0, rng)

    def contrast(s, block):
        n = 448 // block
        return s.reshape(n, block, n, block).mean(axis=(1, 3)).std()

    healthy, between, blast = shade(0.0), shade(0.5), shade(1.0)
    full = contrast(healthy, 1)
    assert contrast(healthy, 4) > 0.5 * full  # 128 px: 3.5 frame pixels per input pixel
    assert contrast(healthy, 7) < full / 3  # 64 px: 7
    assert full > 1.5 * contrast(between, 1) > 0 and contrast(blast, 1) == 0
    # zero-mean (the floor on the shade lifts the darkest clumps: about 1 %): no darker
    # nucleus for a 64 px input to see
    assert abs(healthy.mean() - 1.0) < 0.02
