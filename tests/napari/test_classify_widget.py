"""The "Classify cells" widget: worker process, results as a class-coloured Labels layer."""

from __future__ import annotations

import os
import signal

import numpy as np
import pandas as pd
import pytest
from napari.utils.colormaps.standardize_color import transform_color

from napari_allnet import _session as session
from napari_allnet._classify_widget import CLASS_OPACITY, MODEL_FILE, SESSION_MODEL
from napari_allnet._colors import ALL_COLOR, HEM_COLOR, UNCERTAIN_COLOR

TIMEOUT = 300_000  # ms: the first job pays the worker's framework start-up


@pytest.fixture
def viewer_with_bccd(make_napari_viewer, bccd_sample):
    viewer = make_napari_viewer()
    data, kwargs, _ = bccd_sample
    image = viewer.add_image(data, **kwargs)
    _, widget = viewer.window.add_plugin_dock_widget("napari-allnet", "Classify cells")
    widget.image.value = image
    return viewer, image, widget


def _wait(qtbot, widget):
    qtbot.waitUntil(lambda: not widget.busy, timeout=TIMEOUT)


def test_classify_bccd_field(viewer_with_bccd, qtbot, tiny_model, tmp_path, notifications):
    viewer, image, widget = viewer_with_bccd
    widget.model_source.value = MODEL_FILE
    widget.model_file.value = tiny_model
    widget.gradcam.value = True
    widget.run_button.native.click()
    assert widget.busy and widget.cancel_button.enabled
    _wait(qtbot, widget)
    assert not [n for n in notifications if n[0] == "error"], notifications

    layer = viewer.layers[f"{image.name} classes"]
    table = layer.features
    ids = sorted(set(np.unique(layer.data)) - {0})
    assert len(ids) >= 1 and sorted(table["label"]) == ids  # one row per cell
    assert {"label", "class", "p_all", "area", "centroid_row", "touches_border", "call",
            "p_all_raw", "oos_score"} <= set(table)
    assert set(table["class"]) <= {"ALL", "HEM"}
    assert set(table["call"]) <= {"ALL", "HEM", "uncertain"}  # no card: no scope reference
    assert ((table["p_all"] >= 0) & (table["p_all"] <= 1)).all()
    assert (table["class"] == np.where(table["p_all"] >= 0.5, "ALL", "HEM")).all()

    # coloured by call: ALL, HEM, uncertain in their documented colours, background
    # transparent
    colors = {"ALL": ALL_COLOR, "HEM": HEM_COLOR, "uncertain": UNCERTAIN_COLOR}
    for label, call in zip(table["label"], table["call"], strict=True):
        expected = transform_color(colors[call])[0]
        np.testing.assert_allclose(layer.colormap.map(np.array([label]))[0], expected,
                                   atol=1e-6)
    assert layer.colormap.map(np.array([0]))[0][3] == 0
    assert layer.opacity == CLASS_OPACITY <= 0.4  # the nuclei show through the fill

    # hovering a cell shows its class, call and probability
    row = table.iloc[0]
    rr, cc = np.nonzero(layer.data == row["label"])
    status = layer.get_status((rr[len(rr) // 2], cc[len(cc) // 2]))["coordinates"]
    assert f"class: {row['class']}" in status and "p_all:" in status
    assert f"call: {row['call']}" in status

    n_all = int((table["call"] == "ALL").sum())
    assert widget.summary.value.startswith(f"{len(table)} cell")
    assert f"{n_all} ALL" in widget.summary.value and "ALL fraction" in widget.summary.value
    assert "uncertain" in widget.summary.value and "out of scope" in widget.summary.value
    # the model card's verdict, the legend and the research-use line, in the widget itself
    assert "untested model: no card" in widget.card_info.value
    for name in ("ALL", "HEM", "uncertain", "out of scope"):
        assert name in widget.legend.value
    assert "#" not in widget.status.value  # colours are named in the legend, not as hex
    assert "Research use only, not for diagnosis" in widget.research.value

    # Grad-CAM: an image-sized heatmap placed exactly over the image
    heat = viewer.layers[f"{image.name} Grad-CAM"]
    assert heat.data.shape == image.data.shape[:2] and np.isfinite(heat.data).all()
    np.testing.assert_array_equal(heat.translate, image.translate)
    np.testing.assert_array_equal(heat.scale, image.scale)

    # Export CSV round-trips the table
    saved = widget.export_csv(tmp_path / "cells.csv")
    back = pd.read_csv(saved)
    assert set(back["image"]) == {image.name}  # no file behind the sample: its layer name
    assert list(back["label"]) == list(table["label"])
    assert list(back["class"]) == list(table["class"])
    np.testing.assert_allclose(back["p_all"], table["p_all"], rtol=1e-6)


def test_second_run_reuses_worker_and_session_model(viewer_with_bccd, qtbot, tiny_model):
    viewer, image, widget = viewer_with_bccd
    session.register_model(tiny_model)  # as "Train ALLNet" does at the end of a run
    assert widget.model_source.value == SESSION_MODEL
    assert widget.session_model.value == str(tiny_model)
    widget.run()
    _wait(qtbot, widget)
    pid = widget.client.pid
    assert pid is not None
    first = viewer.layers[f"{image.name} classes"]
    n_layers = len(viewer.layers)

    # second run: the chosen labels instead of segmenting, TTA on; same worker, same layer
    segmented = viewer.add_labels(first.data.copy(), name="my cells")
    widget.labels.value = segmented
    widget.tta.value = True
    widget.run()
    _wait(qtbot, widget)
    assert widget.client.pid == pid
    assert viewer.layers[f"{image.name} classes"] is first
    assert len(viewer.layers) == n_layers + 1  # only "my cells" was added
    np.testing.assert_array_equal(first.data, segmented.data)


def test_cancel_classification(viewer_with_bccd, qtbot, tiny_model, notifications):
    viewer, image, widget = viewer_with_bccd
    widget.model_source.value = MODEL_FILE
    widget.model_file.value = tiny_model
    n_layers = len(viewer.layers)
    widget.client.close()  # a cold worker: Cancel comes during its start-up
    widget.run()
    widget.cancel_button.native.click()
    assert widget.status.value == "Cancelling..."
    _wait(qtbot, widget)  # within the client's start_grace, not its 20 s cancel_grace
    assert widget.status.value == "Cancelled"
    infos = [text for level, text in notifications if level == "info"]
    assert infos and "cancelled" in infos[-1]
    assert len(viewer.layers) == n_layers
    assert not [n for n in notifications if n[0] == "error"]


def test_killed_worker_is_reported_and_layers_unchanged(viewer_with_bccd, qtbot, tiny_model,
                                                        notifications):
    viewer, image, widget = viewer_with_bccd
    mine = viewer.add_labels(np.zeros(image.data.shape[:2], np.int32), name="my work")
    mine.data[10:20, 10:20] = 5
    before = {layer.name: np.array(layer.data, copy=True) for layer in viewer.layers}
    widget.model_source.value = MODEL_FILE
    widget.model_file.value = tiny_model
    widget.client.close()  # a cold worker: the job is certainly running when it is killed
    widget.run()
    qtbot.waitUntil(lambda: widget.client.busy and widget.client.pid is not None,
                    timeout=30_000)
    os.kill(widget.client.pid, signal.SIGKILL)
    _wait(qtbot, widget)

    errors = [text for level, text in notifications if level == "error"]
    assert len(errors) == 1, notifications
    assert "the worker process was killed (signal 9, SIGKILL)" in errors[0]
    assert "cuInit" not in errors[0] and "cuda drivers" not in errors[0]  # no framework noise
    assert "failed" in widget.status.value and "SIGKILL" in widget.status.value
    assert [layer.name for layer in viewer.layers] == list(before)
    for layer in viewer.layers:
        np.testing.assert_array_equal(layer.data, before[layer.name])
    # the viewer still works, and the next classification starts a fresh worker
    viewer.add_points([[5, 5]])
    widget.run()
    _wait(qtbot, widget)
    assert f"{image.name} classes" in viewer.layers


def test_missing_model_gives_a_notification(viewer_with_bccd, notifications, tmp_path):
    viewer, image, widget = viewer_with_bccd
    widget.model_source.value = MODEL_FILE
    widget.model_file.value = tmp_path / "nope.keras"
    widget.run()
    assert not widget.busy
    assert notifications[-1][0] == "warning" and "model file" in notifications[-1][1]


def test_empty_labels_layer_asks_to_segment_first(viewer_with_bccd, notifications):
    viewer, image, widget = viewer_with_bccd
    empty = viewer.add_labels(np.zeros(image.data.shape[:2], np.int32), name="not yet")
    widget.labels.value = empty
    widget.run()
    assert not widget.busy
    expected = ("the labels layer 'not yet' is empty: segment first (or choose no labels "
                "layer to segment automatically)")
    assert expected in widget.status.value and widget.status.value.startswith("Cannot classify")
    assert notifications[-1][0] == "warning" and expected in notifications[-1][1]
    assert "0 cells" not in widget.summary.value


def test_image_name_is_the_source_file(make_napari_viewer, tmp_path):
    from allnet_core.io import write_image
    from napari_allnet._classify_widget import image_name

    viewer = make_napari_viewer()
    path = tmp_path / "field_07.png"
    write_image(path, np.zeros((8, 8, 3), np.uint8))
    opened = viewer.open(str(path), plugin="napari")[0]
    assert image_name(opened) == "field_07.png"
    assert image_name(viewer.add_image(np.zeros((8, 8, 3), np.uint8), name="pasted")) == "pasted"


def test_chance_level_warning_in_the_widget(viewer_with_bccd, qtbot, tiny_model, tmp_path,
                                            notifications, carded_model):
    viewer, image, widget = viewer_with_bccd
    widget.model_source.value = MODEL_FILE
    widget.model_file.value = tiny_model
    assert "untested model: no card" in widget.card_info.value  # shown on choosing the file

    chance = carded_model(tmp_path / "chance", {"value": -0.36, "low": -0.7,
                                                           "high": 0.1})
    widget.model_file.value = chance
    text = widget.card_info.value
    assert "Hold-out: accuracy 50.0 %" in text and "MCC -0.36" in text
    assert "not better than chance on its hold-out: its calls are not meaningful" in text

    widget.run()
    _wait(qtbot, widget)
    assert not [n for n in notifications if n[0] == "error"], notifications
    text = widget.card_info.value  # now the worker's verdict, checked against the model file
    assert "not better than chance on its hold-out: its calls are not meaningful" in text
    table = viewer.layers[f"{image.name} classes"].features
    # the card's calibration (T = 2) is applied: P(ALL) moves towards 0.5, calls follow it
    raw, cal = table["p_all_raw"].to_numpy(), table["p_all"].to_numpy()
    logit = np.log(raw / (1 - raw)) / 2.0
    np.testing.assert_allclose(cal, 1 / (1 + np.exp(-logit)), atol=1e-5)
    inside = (cal > 0.35) & (cal < 0.65)
    assert (table["call"].to_numpy()[inside] == "uncertain").all()

    good = carded_model(tmp_path / "good", {"value": 0.8, "low": 0.6, "high": 0.9})
    widget.model_file.value = good
    assert "not better than chance" not in widget.card_info.value
    assert "MCC 0.80 (95 % CI 0.60 to 0.90)" in widget.card_info.value
    leaky = carded_model(tmp_path / "leaky", {"value": 0.8, "low": 0.6, "high": 0.9},
                       split="image")
    widget.model_file.value = leaky
    assert "per-image split (leaky)" in widget.card_info.value


def test_out_of_scope_cells_are_outlined(viewer_with_bccd, qtbot, tmp_path, carded_model,
                                         notifications):
    """A card whose reference no real cell resembles: every cell is out of scope, left
    unfilled in the classes layer and outlined on a layer of its own."""
    from napari.utils.colormaps.standardize_color import transform_color

    from allnet_core.model.card import read_card, write_card
    from allnet_core.model.scope import Mahalanobis, ScopeReference
    from napari_allnet._colors import OUT_OF_SCOPE_COLOR

    viewer, image, widget = viewer_with_bccd
    model = carded_model(tmp_path / "narrow", {"value": 0.8, "low": 0.6, "high": 0.9})
    data = read_card(model).data
    tight = Mahalanobis(np.zeros(32, np.float32), np.eye(32, dtype=np.float32) * 1e6)
    look = Mahalanobis(np.zeros(7, np.float32), np.eye(7, dtype=np.float32))
    scope = ScopeReference({"features": tight, "appearance": look}, 32, 1.0)
    write_card(model, {k: v for k, v in data.items()
                       if k not in ("format", "model_file", "model_sha256")}, scope)
    widget.model_source.value = MODEL_FILE
    widget.model_file.value = model
    widget.run()
    _wait(qtbot, widget)
    assert not [n for n in notifications if n[0] == "error"], notifications
    layer = viewer.layers[f"{image.name} classes"]
    table = layer.features
    assert len(table) and (table["call"] == "out_of_scope").all()
    assert (table["oos_score"] > 1).all()
    for label in table["label"]:  # not filled
        assert layer.colormap.map(np.array([label]))[0][3] == 0
    outline = viewer.layers[f"{image.name} out of scope"]
    assert outline.contour == 2
    np.testing.assert_array_equal(outline.data > 0, layer.data > 0)
    np.testing.assert_allclose(outline.colormap.map(np.array([table["label"].iloc[0]]))[0],
                               transform_color(OUT_OF_SCOPE_COLOR)[0], atol=1e-6)
    assert f"{len(table)} out of scope" in widget.summary.value
    assert "no confident in-scope cell" in widget.summary.value
