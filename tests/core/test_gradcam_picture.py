"""The Grad-CAM picture: inferno blended by value (no wash), cell outlines, captions with
the call and P(ALL), a colour bar. No model needed."""

from __future__ import annotations

import imageio.v3 as iio
import numpy as np
import pandas as pd
from matplotlib import colormaps

from allnet_core.inference import gradcam_figure, outline_cells, overlay_heatmap, write_gradcam_png
from allnet_core.inference.gradcam import HEATMAP_CMAP, OUTLINE_COLOUR


def _scene():
    rgb = np.full((60, 80, 3), 180, np.uint8)
    labels = np.zeros((60, 80), np.int32)
    labels[20:40, 30:55] = 1
    heatmap = np.zeros((60, 80), np.float32)
    heatmap[25:35, 35:50] = np.linspace(0.0, 1.0, 15, dtype=np.float32)
    table = pd.DataFrame({"label": [1], "class": ["ALL"], "p_all": [0.83],
                          "bbox_min_row": [20], "bbox_min_col": [30], "bbox_max_row": [40],
                          "bbox_max_col": [55]})
    return rgb, labels, heatmap, table


def test_overlay_blends_inferno_by_value_and_leaves_the_rest_alone():
    rgb, _, heatmap, _ = _scene()
    heatmap[0, 0] = 0.03  # below the threshold: near-zero evidence is not drawn
    out = overlay_heatmap(rgb, heatmap, alpha=0.7)
    untouched = heatmap <= 0.05
    np.testing.assert_array_equal(out[untouched], rgb[untouched])
    assert HEATMAP_CMAP == "inferno"
    top = np.array(colormaps["inferno"](1.0)[:3]) * 255
    np.testing.assert_allclose(out[25, 49], 0.3 * 180 + 0.7 * top, atol=1)
    # opacity grows with the value: a weak pixel moves less than a strong one
    weak, strong = (np.abs(out[25, c].astype(float) - 180).sum() for c in (37, 49))
    assert 0 < weak < strong


def test_outline_marks_the_cell_boundary_only():
    rgb, labels, _, _ = _scene()
    out = outline_cells(rgb, labels)
    assert (out[20, 30:55] == OUTLINE_COLOUR).all() and (out[39, 40] == OUTLINE_COLOUR).all()
    assert (out[30, 40] == 180).all() and (out[5, 5] == 180).all()


def test_picture_has_captions_and_a_colour_bar(tmp_path):
    rgb, labels, heatmap, table = _scene()
    fig = gradcam_figure(rgb, heatmap, labels, table)
    image_ax, bar_ax = fig.axes
    assert [t.get_text() for t in image_ax.texts] == ["ALL, P(ALL) = 0.83"]
    assert "Grad-CAM" in bar_ax.get_ylabel()
    shown = image_ax.get_images()[0].get_array()
    assert (np.asarray(shown)[20, 30:55] == OUTLINE_COLOUR).all()
    png = iio.imread(write_gradcam_png(tmp_path / "cam.png", rgb, heatmap, labels, table))
    assert png.ndim == 3 and png.shape[1] > png.shape[0]  # the colour bar beside the image
    assert not list(tmp_path.glob(".*"))
