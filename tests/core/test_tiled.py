"""Gigapixel images: lazy reading, tiled segmentation with one owner per cell (issue 13)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from allnet_core.errors import ImageReadError

pytest.importorskip("dask")
pytest.importorskip("zarr")


@pytest.fixture(scope="module")
def mosaic() -> np.ndarray:
    """3 x 4 synthetic smear fields side by side: 1440 x 2560 pixels, ~60 white cells."""
    from allnet_core.synthetic import synth_smear

    rows = [np.concatenate([synth_smear(seed=10 * i + j, n_wbc=5, border_cell=False)[0]
                            for j in range(4)], axis=1) for i in range(3)]
    return np.concatenate(rows, axis=0)


def _best_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``best_iou`` of ``benchmarks/_labels.py`` (the benchmark's own rule)."""
    import importlib.util

    path = Path(__file__).resolve().parents[2] / "benchmarks" / "_labels.py"
    spec = importlib.util.spec_from_file_location("_allnet_bench_labels", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.best_iou(a, b)


def test_tiled_agrees_with_untiled_and_no_cell_is_split(mosaic):
    from allnet_core.segmentation import label_cells
    from allnet_core.segmentation.tiled import label_cells_tiled

    whole = label_cells(mosaic)
    tiled = label_cells_tiled(mosaic, tile=512, num_workers=2)
    lab = np.asarray(tiled.labels[:])
    assert tiled.labels.chunks == (512, 512) and lab.dtype == np.int32
    assert whole.max() >= 50 and tiled.cut == 0
    assert (_best_iou(whole, lab) >= 0.9).mean() >= 0.99  # untiled cells found tiled
    assert (_best_iou(lab, whole) >= 0.9).mean() >= 0.99  # and no extra ones
    # untiled cells across a seam: each is one tiled cell, not two halves
    from allnet_core.segmentation import cell_table

    w = cell_table(whole)
    across = w[((w["bbox_min_row"] // 512) != ((w["bbox_max_row"] - 1) // 512))
               | ((w["bbox_min_col"] // 512) != ((w["bbox_max_col"] - 1) // 512))]
    assert len(across) >= 5
    for row in across.itertuples():
        ids, counts = np.unique(lab[whole == row.label], return_counts=True)
        parts = ids[(ids > 0) & (counts > 0.1 * row.area)]
        assert len(parts) == 1, f"cell {row.label} split by a seam into {parts}"
    # the table is that of the labels
    direct, t = cell_table(lab), tiled.table
    pd.testing.assert_frame_equal(direct[["label", "bbox_min_row", "bbox_max_col"]],
                                  t[["label", "bbox_min_row", "bbox_max_col"]])
    assert (direct["area"] - t["area"]).abs().max() <= 0.01 * t["area"].min()


def test_lazy_sources_give_the_same_labels(mosaic, tmp_path):
    import tifffile
    import zarr

    from allnet_core.segmentation.tiled import label_cells_tiled

    part = mosaic[:960, :1280]
    ref = label_cells_tiled(part, tile=512, overlap=200)
    tif = tmp_path / "tiled.tif"
    tifffile.imwrite(tif, part, tile=(256, 256), photometric="rgb", compression="zlib")
    z = zarr.create_array(store=str(tmp_path / "img.zarr"), shape=part.shape,
                          chunks=(300, 300, 3), dtype=np.uint8)
    z[:] = part
    out = tmp_path / "labels.zarr"
    for source in (tif, tmp_path / "img.zarr", z):
        res = label_cells_tiled(source, tile=512, overlap=200, out=out)
        np.testing.assert_array_equal(np.asarray(res.labels[:]), np.asarray(ref.labels[:]))
        assert out.is_dir() and not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_open_rgb_lazy_rules(tmp_path):
    import dask.array as da

    from allnet_core.io_lazy import image_shape, is_large_image, open_rgb_lazy

    sixteen = np.full((3, 40, 50), 65535, np.uint16)  # channel-first, 16 bits
    d = open_rgb_lazy(sixteen)
    assert isinstance(d, da.Array) and d.shape == (40, 50, 3) and d.dtype == np.uint8
    assert int(d.max().compute()) == 255
    rgba = da.zeros((30, 20, 4), dtype=np.uint8, chunks=10)
    assert open_rgb_lazy(rgba).shape == (30, 20, 3)
    for bad, text in [(np.zeros((30, 20)), "RGB"), (np.zeros((5, 30, 20, 3)), "RGB"),
                      (np.zeros((30, 20, 3), np.float32), "integer")]:
        with pytest.raises(ImageReadError, match=text):
            open_rgb_lazy(bad)
    with pytest.raises(ImageReadError, match="no such file"):
        open_rgb_lazy(tmp_path / "missing.tif")
    from allnet_core.io import write_image

    png = write_image(tmp_path / "small.png", np.zeros((30, 20, 3), np.uint8))
    assert image_shape(png) == (30, 20) and not is_large_image(png)
    assert is_large_image(png, limit=100)


def test_cli_segment_in_tiles(mosaic, tmp_path, capsys):
    import tifffile
    import zarr

    from allnet_core.cli import main
    from allnet_core.segmentation import label_cells

    tif = tmp_path / "slide.tif"
    part = mosaic[:480, :1280]
    tifffile.imwrite(tif, part, tile=(256, 256), photometric="rgb")
    assert main(["segment", str(tif), "--out", str(tmp_path / "out"), "--tile", "256",
                 "--size", "96", "--quiet"]) == 0
    labels = zarr.open_array(str(tmp_path / "out" / "slide_labels.zarr"), mode="r")
    table = pd.read_csv(tmp_path / "out" / "slide_cells.csv")
    assert labels.shape == part.shape[:2] and labels.chunks == (256, 256)
    assert len(table) == np.asarray(labels[:]).max() == label_cells(part).max()
    crops = sorted((tmp_path / "out" / "slide_cells").iterdir())
    assert [f"slide_cells/{p.name}" for p in crops] == sorted(table["crop"])
    assert "in tiles" in capsys.readouterr().out


def test_classify_a_large_image_like_a_small_one(mosaic, tmp_path, monkeypatch):
    """A large TIFF is segmented in tiles and classified as the same image in memory."""
    import tifffile
    import zarr

    import allnet_core.io_lazy as io_lazy
    from allnet_core.backend import get_keras
    from allnet_core.inference import classify_images
    from allnet_core.io import write_image
    from allnet_core.model import build_allnet
    from allnet_core.segmentation import label_cells

    get_keras().utils.set_random_seed(1)
    model = tmp_path / "tiny.keras"
    build_allnet(input_shape=(32, 32, 3), dense_units=8).save(model)
    part = mosaic[:960, :1280]
    tifffile.imwrite(tmp_path / "slide.tif", part, tile=(256, 256), photometric="rgb")
    write_image(tmp_path / "field.png", part)
    small = classify_images(model, [tmp_path / "field.png"])
    monkeypatch.setattr(io_lazy, "LARGE_PIXELS", 500 * 500)
    store = tmp_path / "cells.parquet"
    large = classify_images(model, [tmp_path / "slide.tif"], out=store)
    a, b = small.cells.drop(columns="source"), large.cells.drop(columns="source")
    pd.testing.assert_frame_equal(a.drop(columns="p_all"), b.drop(columns="p_all"),
                                  check_dtype=False)
    np.testing.assert_allclose(a["p_all"], b["p_all"], atol=1e-5)
    (labels,) = (store / "_labels").iterdir()
    assert labels.suffix == ".zarr"
    np.testing.assert_array_equal(zarr.open_array(str(labels), mode="r")[:] > 0,
                                  label_cells(part) > 0)
