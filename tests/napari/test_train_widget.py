"""The "Train ALLNet" widget: fields from TrainConfig, dataset checks, cancel, resume."""

from __future__ import annotations

import dataclasses
import json

import pytest

from napari_allnet import _session as session
from napari_allnet._train_widget import METRICS, TRAIN_FIELDS

TIMEOUT = 300_000


@pytest.fixture
def train_widget(make_napari_viewer):
    viewer = make_napari_viewer()
    _, widget = viewer.window.add_plugin_dock_widget("napari-allnet", "Train ALLNet")
    return viewer, widget


def test_fields_map_onto_trainconfig(train_widget):
    from allnet_core.training import PROFILES, TrainConfig

    _, widget = train_widget
    names = {f.name for f in dataclasses.fields(TrainConfig)}
    assert set(widget.fields) == set(TRAIN_FIELDS) and set(TRAIN_FIELDS) <= names
    assert widget.profile.choices == tuple(sorted(PROFILES))
    # before the device is known the form assumes a CPU: the cpu profile
    assert widget.profile.value == "cpu"
    assert all(w.value == getattr(TrainConfig.from_profile("cpu"), n)
               for n, w in widget.fields.items())
    quick = TrainConfig.from_profile("quick")
    widget.profile.value = "paper"
    for name, field_widget in widget.fields.items():
        assert field_widget.name == name
        assert field_widget.value == getattr(TrainConfig(), name)  # paper defaults
    widget.profile.value = "quick"
    assert all(w.value == getattr(quick, n) for n, w in widget.fields.items())
    widget.fields["epochs"].value = 3
    widget.fields["split"].value = "image"
    cfg = TrainConfig.from_dict(widget.config())
    assert cfg.epochs == 3 and cfg.split == "image" and cfg.profile == "quick"
    assert cfg.dense_units == quick.dense_units  # not in the form: from the profile


@pytest.mark.parametrize("layout, expected", [
    ({}, "no image files found"),
    ({"all": 3}, "only one class"),
])
def test_dataset_problem_shown_before_training(train_widget, qtbot, tmp_path, notifications,
                                                layout, expected):
    from allnet_core.io import write_image
    from allnet_core.synthetic import synth_cell

    _, widget = train_widget
    data = tmp_path / "data"
    data.mkdir()
    for folder, n in layout.items():
        for i in range(n):
            write_image(data / folder / f"c{i}.png", synth_cell("ALL", i, size=32))
    widget.data.value = data
    widget.out.value = tmp_path / "run"
    widget.start()
    qtbot.waitUntil(lambda: not widget.busy, timeout=60_000)
    errors = [t for level, t in notifications if level == "error"]
    assert len(errors) == 1 and expected in errors[0]
    assert not (tmp_path / "run").exists()


def test_too_few_subjects_for_folds(train_widget, qtbot, tmp_path, tiny_dataset, notifications):
    _, widget = train_widget
    widget.data.value = tiny_dataset
    widget.out.value = tmp_path / "run"
    widget.fields["folds"].value = 9
    widget.start()
    qtbot.waitUntil(lambda: not widget.busy, timeout=60_000)
    errors = [t for level, t in notifications if level == "error"]
    # in the widget's words: the field to change, not the command-line flag
    assert len(errors) == 1 and "subjects" in errors[0] and "set 'folds' to" in errors[0]
    assert "--" not in errors[0]
    assert widget.status.value.startswith("Stopped: ")  # the reason shows in the widget too
    assert "set 'folds' to" in widget.status.value and "subjects" in widget.status.value
    assert not (tmp_path / "run").exists()


def test_train_cancel_resume_and_hand_model_to_classify(train_widget, qtbot, tmp_path,
                                                        tiny_dataset, notifications,
                                                        monkeypatch):
    viewer, widget = train_widget
    run = tmp_path / "run"
    widget.data.value = tiny_dataset
    widget.out.value = run
    widget.profile.value = "quick"
    for name, value in {"epochs": 3, "folds": 2, "batch_size": 4, "per_class": 24,
                        "input_size": 32, "lr": 1e-3}.items():
        widget.fields[name].value = value
    widget.start_button.native.click()
    assert widget.busy and widget.cancel_button.enabled
    # live progress arrives while the viewer keeps working
    qtbot.waitUntil(lambda: widget.last_epoch is not None, timeout=TIMEOUT)
    assert "fold 1/2" in widget.live.value and "loss" in widget.live.value
    assert widget.device.value.startswith("Keras ")
    widget.cancel_button.native.click()
    qtbot.waitUntil(lambda: not widget.busy, timeout=TIMEOUT)
    assert widget.status.value.startswith("Cancelled"), widget.status.value
    assert widget.resume.value  # ticked for the next Start
    assert not [t for level, t in notifications if level == "error"], notifications

    # the run folder holds the completed epochs, resumable
    fold, epoch = widget.last_epoch
    state = json.loads((run / f"fold_{fold}" / "state.json").read_text())
    assert state["checkpoint_epoch"] >= 1
    assert (run / f"fold_{fold}" / state["checkpoint"]).is_file()
    assert len(state["history"]) >= state["checkpoint_epoch"]
    assert (run / "config.json").is_file() and not (run / "report.md").exists()
    # the viewer still responds
    viewer.add_points([[1, 1]], name="still here")
    qtbot.wait(50)
    assert "still here" in viewer.layers

    # resume to the end: summary table, report folder, model handed to Classify cells
    registered = []
    session.model_registered.connect(registered.append)
    widget.start()
    qtbot.waitUntil(lambda: not widget.busy, timeout=TIMEOUT)
    session.model_registered.disconnect(registered.append)
    assert widget.status.value.startswith("Done"), widget.status.value
    assert (run / "report.md").is_file()
    summary = widget.summary.to_dataframe()
    assert list(summary.columns) == list(METRICS)
    assert list(summary.index)[:3] == ["fold 1", "fold 2", "mean ± std"]
    assert summary.index[-1].startswith("hold-out")
    best = widget.result["best_model"]
    from allnet_core.model.card import assess, read_card

    verdict = assess(read_card(best))
    assert verdict.headline in widget.status.value  # how good it is, before offering it
    if verdict.at_chance:  # a tiny run's hold-out: not offered without saying so
        assert registered == [] and "NOT selected" in widget.status.value
        assert "not better than chance" in widget.status.value
    else:
        assert registered == [best] and session.last_model() == best

    opened = []
    monkeypatch.setattr("qtpy.QtGui.QDesktopServices.openUrl",
                        lambda url: opened.append(url.toLocalFile()) or True)
    assert widget.open_button.enabled
    widget.open_button.native.click()
    assert opened == [str(run.resolve())]


def test_summary_mean_std_is_the_reports(train_widget):
    """The widget's "mean ± std" row holds report.md's numbers: the sample std (ddof=1)."""
    from allnet_core.report import mean_std
    from napari_allnet._train_widget import metrics_table

    folds = [dict(zip(METRICS, values, strict=True), fold=i) for i, values in enumerate([
        (0.9, 0.85, 0.95, 0.9, 0.88, 0.8),
        (0.8, 0.75, 0.85, 0.8, 0.78, 0.6),
        (0.7, 0.65, 0.75, 0.7, 0.68, 0.4)], 1)]
    holdout = dict(zip(METRICS, (0.85, 0.8, 0.9, 0.85, 0.83, 0.7), strict=True), fold=1)
    _, widget = train_widget
    widget._finished({"folds": folds, "holdout": holdout, "best_fold": 1, "run_dir": "run"})
    summary = widget.summary.to_dataframe()
    assert list(summary.index) == ["fold 1", "fold 2", "fold 3", "mean ± std",
                                   "hold-out (fold 1)"]
    stats = mean_std(folds)
    row = summary.loc["mean ± std"]
    for key in METRICS:
        assert row[key] == f"{100 * stats[key]['mean']:.1f} ± {100 * stats[key]['std']:.1f}"
    assert row["accuracy"] == "80.0 ± 10.0"  # ddof=0 would give 8.2
    assert row["mcc"] == "60.0 ± 20.0"
    # one fold: the sample std is undefined, so only the mean is shown (as in report.md)
    one = metrics_table(folds[:1], None)
    assert one["index"] == ["fold 1", "mean ± std"]
    assert one["data"][1] == [f"{100 * folds[0][k]:.1f}" for k in METRICS]


def test_estimate_follows_profile_fields_and_device(train_widget):
    _, widget = train_widget
    assert widget.estimate.value.startswith("Estimated length on a CPU: at most about")
    assert widget.profile_about.value.startswith("cpu: real cells on a CPU")
    assert "128 px, up to 20 epochs x 3 folds" in widget.profile_about.value
    widget.profile.value = "quick"
    quick = widget.estimate.value
    assert quick.startswith("Estimated length on a CPU: about 6 min")  # the demo's 6.2 min
    assert widget.profile_about.value.startswith("quick: a CPU demo")
    widget.profile.value = "paper"
    paper = widget.estimate.value
    assert paper != quick and "days" in paper and "5 folds x 65 epochs" in paper
    widget.fields["epochs"].value = 13  # a field changes the estimate too
    assert "5 folds x 13 epochs" in widget.estimate.value
    assert widget.estimate.value != paper


def test_profile_follows_the_device_unless_chosen(train_widget):
    _, widget = train_widget
    gpu = {"keras_backend": "tensorflow", "device_used": "GPU",
           "devices": [{"type": "GPU", "name": "H100"}, {"type": "CPU", "name": "cpu"}]}
    widget._show_device({**gpu, "device_used": "CPU", "devices": [{"type": "CPU"}]})
    assert widget.profile.value == "cpu"
    assert widget.estimate.value.startswith("Estimated length on the CPU")
    widget._show_device(gpu)
    assert widget.profile.value == "paper" and widget.fields["epochs"].value == 65
    assert "no GPU speed has been measured" in widget.estimate.value
    assert "GPU speed not measured" in widget.profile_about.value
    assert widget.device.value == "Keras tensorflow backend on GPU (H100)"
    # a profile the user picked stays
    widget.profile.value = "quick"
    widget._show_device(gpu)
    assert widget.profile.value == "quick"


def test_progress_bar_fills(train_widget, qtbot):
    """The activity dock's bar moves: napari's progress emits its value from update()."""
    import threading

    viewer, widget = train_widget
    release = threading.Event()
    seen = []

    def job():
        yield {"kind": "fold_start", "fold": 1, "folds": 2}
        yield {"kind": "epoch_end", "fold": 1, "folds": 2, "epoch": 1, "epochs": 3}
        yield {"kind": "epoch_end", "fold": 1, "folds": 2, "epoch": 2, "epochs": 3}
        release.wait(30)

    widget._epochs = 3
    widget._launch(job, yielded=widget._on_event, returned=lambda _: None, progress=6)
    pbar = widget._pbar
    pbar.events.value.connect(lambda event: seen.append(event.value))
    bar = viewer.window._qt_window._activity_dialog.get_pbar_from_prog(pbar)
    qtbot.waitUntil(lambda: pbar.n == 2, timeout=10_000)
    assert seen == [1, 2]  # one value event per epoch
    assert bar._get_value() == 2 and bar.qt_progress_bar.maximum() == 6
    release.set()
    qtbot.waitUntil(lambda: not widget.busy, timeout=10_000)


def test_summary_table_keeps_the_dock_narrow(train_widget):
    _, widget = train_widget
    folds = [dict(zip(METRICS, (0.9, 0.85, 0.95, 0.9, 0.88, 0.8), strict=True), fold=i)
             for i in range(1, 6)]
    widget._finished({"folds": folds, "holdout": folds[0], "best_fold": 1, "run_dir": "run"})
    assert not widget.summary.native.isHidden()  # shown (the test viewer is off-screen)
    assert widget.native.minimumSizeHint().width() <= 400
    table = widget.summary.native
    assert table.height() >= sum(table.rowHeight(r) for r in range(table.rowCount()))


@pytest.mark.parametrize("core, widget_words", [
    ("only 2 ALL subjects, but a hold-out plus 9 folds needs at least 10 subjects of each "
     "class; use --folds 3", "set 'folds' to 3"),
    ("add data or use --split image (not subject-disjoint)", "set 'split by' to image"),
    ("training cancelled during fold 1 (epochs 1-2 of it are saved); continue with "
     "`allnet train ... --out /tmp/run --resume`", "continue: tick 'resume' and press Start"),
    ("/tmp/run already holds a training run; continue it with --resume or choose another "
     "--out", "continue it with 'resume' ticked or choose another 'run folder'"),
    ("/tmp/run was started with profile 'paper', not 'quick'; resume it without --profile",
     "resume it with the run's own 'profile'"),
])
def test_core_messages_in_the_widgets_words(core, widget_words):
    from napari_allnet._train_widget import flag_labels
    from napari_allnet._wording import in_field_words

    text = in_field_words(core, flag_labels(), ticks=("resume",))
    assert widget_words in text and "--" not in text and "allnet train" not in text


def test_model_at_chance_is_not_selected(train_widget, tmp_path, carded_model):
    """The widget says how good the best model is and offers it to 'Classify cells' only
    when its hold-out is better than chance."""
    _, widget = train_widget
    registered = []
    session.model_registered.connect(registered.append)
    try:
        chance = carded_model(tmp_path / "chance", {"value": -0.36, "low": -0.7, "high": 0.1})
        widget._finished({"best_model": str(chance), "best_fold": 2, "folds": [],
                                "holdout": {"accuracy": 0.45}, "run_dir": str(tmp_path)})
        text = widget.status.value
        assert "Hold-out: accuracy 50.0 %" in text and "MCC -0.36" in text
        assert "not better than chance on its hold-out" in text and "NOT selected" in text
        assert str(chance) in text and registered == []

        good = carded_model(tmp_path / "good", {"value": 0.8, "low": 0.6, "high": 0.9})
        widget._finished({"best_model": str(good), "best_fold": 1, "folds": [],
                                "holdout": {"accuracy": 0.9}, "run_dir": str(tmp_path)})
        assert "MCC 0.80 (95 % CI 0.60 to 0.90)" in widget.status.value
        assert "selected in 'Classify cells'" in widget.status.value
        assert registered == [str(good)] and session.last_model() == str(good)
    finally:
        session.model_registered.disconnect(registered.append)
