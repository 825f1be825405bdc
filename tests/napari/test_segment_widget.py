"""The "Segment cells" widget on a real viewer."""

from __future__ import annotations

import inspect

import numpy as np
import pytest


def _segment_widget(viewer):
    _, widget = viewer.window.add_plugin_dock_widget("napari-allnet", "Segment cells")
    return widget


@pytest.fixture
def bccd_in_viewer(make_napari_viewer, bccd_sample):
    """A viewer showing the BCCD field, and the "Segment cells" widget set to it."""
    viewer = make_napari_viewer()
    data, kwargs, _ = bccd_sample
    image = viewer.add_image(data, **kwargs)
    widget = _segment_widget(viewer)
    widget.image.value = image
    return viewer, data, image, widget


def test_segment_real_bccd_field(bccd_in_viewer, qtbot):
    viewer, data, image, widget = bccd_in_viewer
    widget.add_segmented.value = True
    widget.run_button.native.click()
    assert widget.busy  # runs in a thread: the call returns at once
    qtbot.waitUntil(lambda: not widget.busy, timeout=60_000)

    labels = viewer.layers[f"{image.name} WBC"]
    n = len(np.unique(labels.data)) - 1
    assert n >= 1
    # the WBC of BloodImage_00000 lies in the box (260, 177)-(491, 376)
    rows, cols = np.nonzero(labels.data)
    assert 177 <= np.median(rows) <= 376 and 260 <= np.median(cols) <= 491
    assert len(labels.features) == n and {"label", "area"} <= set(labels.features.columns)
    # the segmented image follows the method: the found cells on black
    segmented = viewer.layers[f"{image.name} segmented"].data
    assert segmented.shape == data.shape
    inside = labels.data > 0
    np.testing.assert_array_equal(segmented[inside], data[inside])
    assert not segmented[~inside].any()
    assert "white cell" in widget.status.value

    # run again: the same layer is updated in place, no new layer appears
    n_layers = len(viewer.layers)
    widget.method.value = "otsu"
    widget.run()
    qtbot.waitUntil(lambda: not widget.busy, timeout=60_000)
    assert len(viewer.layers) == n_layers
    assert viewer.layers[f"{image.name} WBC"] is labels


def test_grayscale_layer_gives_a_notification(make_napari_viewer, qtbot, notifications):
    viewer = make_napari_viewer()
    gray = viewer.add_image(np.random.default_rng(0).random((64, 64)), name="gray")
    widget = _segment_widget(viewer)
    widget.image.value = gray
    widget.run()
    assert not widget.busy
    assert len(viewer.layers) == 1
    (level, text), = notifications
    assert level == "warning" and "RGB colour image" in text and "grayscale" in text


def test_no_image_gives_a_notification(make_napari_viewer, notifications):
    viewer = make_napari_viewer()
    widget = _segment_widget(viewer)
    widget.run()
    assert notifications and notifications[0][0] == "warning"
    assert "no image layer" in notifications[0][1]


def test_paper_method_with_segmented_image(bccd_in_viewer, qtbot):
    from allnet_core.segmentation import label_cells, segment_paper

    viewer, data, image, widget = bccd_in_viewer
    widget.method.value = "paper"
    widget.low.value = 60
    widget.add_segmented.value = True
    widget.run_button.native.click()
    qtbot.waitUntil(lambda: not widget.busy, timeout=60_000)
    mask, expected = segment_paper(data, low=60)
    np.testing.assert_array_equal(viewer.layers[f"{image.name} segmented"].data, expected)
    labels = viewer.layers[f"{image.name} WBC"].data
    assert labels.shape == data.shape[:2]
    if "low" in inspect.signature(label_cells).parameters:
        assert "Note" not in widget.status.value
    else:  # the user is told that the labels could not use the thresholds
        assert "default thresholds" in widget.status.value


def _hidden(widget) -> bool:
    """True when the field and its label are hidden (not merely in an unshown window)."""
    return widget.native.isHidden() and widget._labeled_widget().native.isHidden()


def test_paper_fields_only_for_the_paper_method(bccd_in_viewer):
    *_, widget = bccd_in_viewer
    paper_fields = (widget.low, widget.high, widget.space)
    assert widget.method.value == "auto"
    assert all(_hidden(w) for w in paper_fields)
    widget.method.value = "paper"
    assert not any(_hidden(w) for w in paper_fields)
    widget.method.value = "otsu"
    assert all(_hidden(w) for w in paper_fields)
    assert not _hidden(widget.min_area)


def test_paper_rule_selecting_nothing_says_what_to_try(bccd_in_viewer, qtbot):
    """On the BCCD field the paper's 180-255 selects nothing: the status says so, with the
    saturation range found in this image, and no all-black layer covers the canvas."""
    from allnet_core.segmentation import saturation

    viewer, data, image, widget = bccd_in_viewer
    widget.method.value = "paper"
    widget.add_segmented.value = True
    n_layers = len(viewer.layers)
    widget.run()
    qtbot.waitUntil(lambda: not widget.busy, timeout=60_000)
    status = widget.status.value
    assert status.startswith("0 white cells")
    p1, p95, p99 = np.percentile(255 * saturation(data, "hsi"), [1, 95, 99])
    assert "HSI saturation 180-255" in status and "selected 0.00 %" in status
    assert f"runs from {p1:.0f} to {p99:.0f}" in status
    assert "auto method" in status and f"95th percentile, {int(p95)}" in status
    assert "No segmented image added" in status
    assert f"{image.name} segmented" not in viewer.layers
    assert len(viewer.layers) == n_layers + 1  # the (empty) WBC labels only

    # the suggested range does find the white cell, and then no hint is given
    widget.low.value = int(p95)
    widget.run()
    qtbot.waitUntil(lambda: not widget.busy, timeout=60_000)
    assert not widget.status.value.startswith("0 white cells"), widget.status.value
    assert "Try the auto method" not in widget.status.value
    assert f"{image.name} segmented" in viewer.layers
