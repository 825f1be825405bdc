"""Large (dask-backed, multiscale) image layers: segmented and classified in tiles, read
region by region, with lazy labels (issue 13)."""

from __future__ import annotations

import numpy as np
import pytest

da = pytest.importorskip("dask.array")
pytest.importorskip("zarr")

TIMEOUT = 300_000  # ms: the first classification pays the worker's framework start-up


class _Counting:
    """A numpy image that records the size of every region read from it."""

    def __init__(self, array: np.ndarray):
        self.array = array
        self.shape, self.dtype, self.ndim = array.shape, array.dtype, array.ndim
        self.reads: list[int] = []

    def __getitem__(self, key):
        part = self.array[key]
        self.reads.append(part.size // 3)
        return part


@pytest.fixture(scope="module")
def mosaic() -> np.ndarray:
    """2 x 5 synthetic smear fields: 960 x 3200 pixels, two cores of 2048 across."""
    from allnet_core.synthetic import synth_smear

    rows = [np.concatenate([synth_smear(seed=5 * i + j, n_wbc=4, border_cell=False)[0]
                            for j in range(5)], axis=1) for i in range(2)]
    return np.concatenate(rows, axis=0)


def _dask_layer(viewer, mosaic):
    source = _Counting(mosaic)
    image = viewer.add_image(da.from_array(source, chunks=(512, 512, 3), asarray=False),
                             rgb=True, name="slide")
    source.reads.clear()  # what napari read to show it does not count
    return image, source


def test_segment_a_dask_layer_in_tiles(make_napari_viewer, qtbot, mosaic, notifications):
    from allnet_core.segmentation import label_cells

    viewer = make_napari_viewer()
    image, source = _dask_layer(viewer, mosaic)
    _, widget = viewer.window.add_plugin_dock_widget("napari-allnet", "Segment cells")
    widget.image.value = image
    widget.add_segmented.value = True
    widget.run_button.native.click()
    qtbot.waitUntil(lambda: not widget.busy, timeout=120_000)
    assert not [n for n in notifications if n[0] == "error"], notifications
    layer = viewer.layers["slide WBC"]
    assert isinstance(layer.data, da.Array)  # lazy labels, over a zarr folder
    labels = np.asarray(layer.data)
    assert labels.max() == len(layer.features) == label_cells(mosaic).max()
    assert (labels > 0).sum() == (label_cells(mosaic) > 0).sum()
    segmented = viewer.layers["slide segmented"].data  # lazy too: the cells on black
    assert isinstance(segmented, da.Array) and segmented.shape == mosaic.shape
    # never read whole: the largest region read is a padded tile
    assert source.reads and max(source.reads) < 0.8 * mosaic.shape[0] * mosaic.shape[1]


def test_lazy_layer_rgb_and_pyramid(make_napari_viewer, mosaic, tmp_path, monkeypatch):
    import zarr

    from napari_allnet import _large
    from napari_allnet._common import lazy_layer_rgb

    viewer = make_napari_viewer()
    small = viewer.add_image(mosaic[:100, :100], rgb=True)
    assert lazy_layer_rgb(small, "Segment cells") is None  # in memory: as before
    multi = viewer.add_image([mosaic, mosaic[::2, ::2]], rgb=True, multiscale=True)
    lazy = lazy_layer_rgb(multi, "Segment cells")
    assert isinstance(lazy, da.Array) and lazy.shape == mosaic.shape
    z = zarr.create_array(store=str(tmp_path / "l.zarr"), shape=(960, 3200), chunks=(256, 256),
                          dtype=np.int32)
    monkeypatch.setattr(_large, "PYRAMID_SIDE", 1000)
    levels = _large.lazy_labels(tmp_path / "l.zarr")
    assert [lv.shape for lv in levels] == [(960, 3200), (480, 1600), (240, 800)]
    assert z.shape == levels[0].shape


def test_classify_a_dask_layer_in_tiles(make_napari_viewer, qtbot, mosaic, tiny_model,
                                        notifications):
    from napari_allnet._classify_widget import MODEL_FILE

    viewer = make_napari_viewer()
    image, source = _dask_layer(viewer, mosaic)
    _, widget = viewer.window.add_plugin_dock_widget("napari-allnet", "Classify cells")
    widget.image.value = image
    widget.model_source.value = MODEL_FILE
    widget.model_file.value = tiny_model
    widget.run_button.native.click()
    qtbot.waitUntil(lambda: not widget.busy, timeout=TIMEOUT)
    assert not [n for n in notifications if n[0] == "error"], notifications
    layer = viewer.layers["slide classes"]
    assert isinstance(layer.data, da.Array)
    table = layer.features
    assert sorted(table["label"]) == sorted(set(np.unique(np.asarray(layer.data))) - {0})
    assert len(table) >= 10 and set(table["class"]) <= {"ALL", "HEM"}
    assert max(source.reads) < 0.8 * mosaic.shape[0] * mosaic.shape[1]
