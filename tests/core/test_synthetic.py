"""allnet_core.synthetic: determinism, C-NMC look, class differences, smear ground truth."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from allnet_core.datasets import discover
from allnet_core.synthetic import (
    make_subject_style,
    synth_cell,
    synth_cells,
    synth_smear,
    write_cnmc_dataset,
)


def _digest(path):
    return {p.relative_to(path).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(path.rglob("*.bmp"))}


def test_same_seed_same_bytes(tmp_path):
    a = write_cnmc_dataset(tmp_path / "a", subjects=4, cells_per_subject=2, seed=7, size=64)
    b = write_cnmc_dataset(tmp_path / "b", subjects=4, cells_per_subject=2, seed=7, size=64)
    c = write_cnmc_dataset(tmp_path / "c", subjects=4, cells_per_subject=2, seed=8, size=64)
    assert _digest(a) == _digest(b)
    assert _digest(a) != _digest(c)
    np.testing.assert_array_equal(synth_smear(3)[0], synth_smear(3)[0])
    np.testing.assert_array_equal(synth_cells(2, seed=1, size=48)[0],
                                  synth_cells(2, seed=1, size=48)[0])


def test_cell_looks_like_cnmc():
    img = synth_cell("ALL", rng=0)
    assert img.shape == (450, 450, 3) and img.dtype == np.uint8
    black = (img == 0).all(axis=-1)
    assert black[0, 0] and black[-1, -1]
    assert 0.70 < black.mean() < 0.95  # real C-NMC cells: 75-91 % exactly black
    fg = img[~black]
    assert fg[:, 2].mean() > fg[:, 1].mean()  # stained purple: blue above green


def _nucleus_fraction(img):
    cell = img.any(axis=-1)
    nucleus = cell & (img[..., 1] < 100)  # the nucleus is the dark purple part
    return cell.sum(), nucleus.sum() / max(cell.sum(), 1)


def test_blasts_differ_from_healthy_but_overlap():
    rng = np.random.default_rng(0)
    stats = {lab: np.array([_nucleus_fraction(synth_cell(lab, rng, size=160))
                            for _ in range(40)]) for lab in ("ALL", "HEM")}
    area_all, nc_all = stats["ALL"].T
    area_hem, nc_hem = stats["HEM"].T
    assert area_all.mean() > 1.2 * area_hem.mean()  # blasts are larger
    assert nc_all.mean() > nc_hem.mean() + 0.1  # and have a higher N:C ratio
    # ... but the classes overlap: some HEM cells are larger than some ALL cells.
    assert area_hem.max() > area_all.min()


def test_subject_styles_differ():
    rng = np.random.default_rng(0)
    a, b = make_subject_style(rng), make_subject_style(rng)
    assert a != b
    neutral = make_subject_style(rng, strength=0)
    assert neutral.tint == (1.0, 1.0, 1.0) and neutral.scale == 1.0


def test_written_dataset_is_discoverable(tmp_path):
    root = write_cnmc_dataset(tmp_path, subjects=5, cells_per_subject=4, seed=0, size=48)
    table = discover(root)
    assert len(table) == 20
    assert table.groupby("subject")["label"].nunique().max() == 1
    assert set(table.loc[table["subject"].str.startswith("h"), "label"]) == {"HEM"}
    assert (table["label"] == "ALL").sum() == 12  # 3 patients x 4 cells
    assert table.groupby("subject")["fold"].nunique().max() == 1


def test_smear_ground_truth():
    rgb, labels, classes = synth_smear(seed=1, n_wbc=4)
    assert rgb.shape == (480, 640, 3) and labels.dtype == np.int32
    assert sorted(classes) == list(range(1, labels.max() + 1))
    assert set(classes.values()) <= {"ALL", "HEM"}
    # The last WBC is cut by the border, the first two touch each other.
    border = np.unique(np.concatenate([labels[:, 0], labels[:, -1], labels[0], labels[-1]]))
    assert (border > 0).any()
    from scipy import ndimage as ndi

    grown = ndi.binary_dilation(labels == 1, iterations=2)
    assert (labels[grown] == 2).any()
    # WBC pixels are purple, the background pale.
    assert rgb[labels > 0][:, 1].mean() < rgb[labels == 0][:, 1].mean()


@pytest.mark.parametrize("bad", [{"subjects": 1}, {"cells_per_subject": 0}, {"folds": 0}])
def test_bad_arguments(tmp_path, bad):
    with pytest.raises(ValueError):
        write_cnmc_dataset(tmp_path, **{"subjects": 2, "cells_per_subject": 1, **bad})
    with pytest.raises(ValueError):
        synth_cell("monocyte")
