"""The CSV writer: a Labels layer's per-cell features round-trip through CSV."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from napari_allnet._writer import NoCellTableWarning, write_cells_csv


def _labels_with_features():
    data = np.zeros((20, 20), np.int32)
    data[2:6, 2:6], data[10:15, 10:15] = 1, 2
    features = pd.DataFrame({
        "index": [1, 2], "label": [1, 2], "class": ["ALL", "HEM"], "p_all": [0.91, 0.125],
        "area": [16, 25], "touches_border": [False, True],
    })
    return data, features


def test_writer_round_trips_through_the_viewer(make_napari_viewer, tmp_path):
    viewer = make_napari_viewer()
    data, features = _labels_with_features()
    layer = viewer.add_labels(data, features=features, name="cells")
    saved = layer.save(str(tmp_path / "cells.csv"), plugin="napari-allnet")
    assert saved == [str(tmp_path / "cells.csv")]
    back = pd.read_csv(saved[0])
    expected = features.drop(columns="index")
    pd.testing.assert_frame_equal(back, expected, check_dtype=False)
    # and back into a layer: the table drives hovering again
    again = viewer.add_labels(data, features=back.assign(index=back["label"]))
    assert again.get_status((3, 3))["coordinates"].count("class: ALL") == 1


def test_writer_refuses_a_layer_without_table(tmp_path):
    with pytest.warns(NoCellTableWarning, match="no per-cell table"):
        written = write_cells_csv(str(tmp_path / "x.csv"), np.zeros((4, 4), int),
                                  {"features": pd.DataFrame(), "name": "empty"})
    assert written == []
    assert not (tmp_path / "x.csv").exists()


def test_saving_a_layer_without_table_explains_why(make_napari_viewer, tmp_path, monkeypatch):
    """File > Save Selected Layers as "ALLNet cell table": napari's failure message carries
    the writer's reason (an exception would end as "not a valid writer")."""
    import napari._qt.qt_viewer as qt_viewer
    from napari.plugins import _npe2

    viewer = make_napari_viewer()
    layer = viewer.add_labels(np.zeros((8, 8), np.int32), name="hand-drawn")
    viewer.layers.selection = {layer}
    filters, _ = _npe2.file_extensions_string_for_layers([layer])
    ours = next(f for f in filters.split(";;") if "cell table" in f)
    target = tmp_path / "cells.csv"
    monkeypatch.setattr(qt_viewer.QFileDialog, "getSaveFileName",
                        lambda *args, **kwargs: (str(target), ours))
    with pytest.raises(OSError, match="save failed") as info:
        viewer.window._qt_viewer._save_layers_dialog(selected=True)
    assert "'hand-drawn' has no per-cell table" in str(info.value)
    assert "Classify cells" in str(info.value)
    assert not target.exists()


def test_csv_names_the_image(tmp_path):
    data, features = _labels_with_features()
    meta = {"features": features, "name": "field classes",
            "metadata": {"allnet_image": "BloodImage_00000.jpg"}}
    saved = write_cells_csv(str(tmp_path / "cells.csv"), data, meta)
    back = pd.read_csv(saved[0])
    assert list(back.columns[:2]) == ["image", "label"]
    assert set(back["image"]) == {"BloodImage_00000.jpg"}
