"""allnet_core.datasets: layouts, subjects, problems, listing comparison."""

from __future__ import annotations

import shutil

import imageio.v3 as iio
import numpy as np
import pandas as pd
import pytest

from allnet_core.datasets import (
    COLUMNS,
    class_of_folder,
    compare_with_listing,
    discover,
    parse_cnmc_name,
    scan,
)
from allnet_core.errors import DatasetError


def _img(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (8, 8, 3), dtype=np.uint8)


def test_real_cnmc_every_cell(cnmc_dir):
    files = sorted(cnmc_dir.rglob("*.bmp"))
    table = discover(cnmc_dir)
    assert list(table.columns) == list(COLUMNS)
    assert len(table) == len(files) == 53
    for path in files:
        row = table[table["path"] == str(path)].iloc[0]
        name = path.name
        parts = name[:-4].split("_")
        assert row["label"] == parts[-1].upper()
        assert row["label"] == path.parent.name.upper()
        assert row["subject"] == parts[1].lower()
        assert row["fold"] == path.parent.parent.name.split("_")[1]
        assert row["source"] == "cnmc"
    # Case-insensitive subject ids: the release spells one donor both h3 and H3.
    assert "h3" in set(table["subject"]) and "H3" not in set(table["subject"])
    healthy = table[table["subject"].str.startswith("h")]
    assert set(healthy["label"]) == {"HEM"}
    assert set(table.loc[~table.index.isin(healthy.index), "label"]) == {"ALL"}
    # Each subject lies in exactly one fold.
    assert (table.groupby("subject")["fold"].nunique() == 1).all()


def test_parse_cnmc_name():
    assert parse_cnmc_name("UID_h3_2_1_hem.bmp") == {
        "subject": "h3", "image": 2, "cell": 1, "label": "HEM"}
    assert parse_cnmc_name("UID_11_1_2_ALL.BMP")["label"] == "ALL"
    assert parse_cnmc_name("UID_H3_2_1_aug4_hem.bmp")["subject"] == "h3"  # allnet augment copy
    assert parse_cnmc_name("cell_1.bmp") is None


@pytest.mark.parametrize("name,label", [("ALL", "ALL"), ("blast", "ALL"), ("Leukemia", "ALL"),
                                        ("hem", "HEM"), ("Normal", "HEM"), ("HEALTHY", "HEM")])
def test_class_folder_names(name, label):
    assert class_of_folder(name) == label


def test_plain_layout_without_subjects_warns(tmp_path):
    for i, cls in enumerate(["Blast", "blast", "normal"]):
        (tmp_path / cls).mkdir(exist_ok=True)
        iio.imwrite(tmp_path / cls / f"c{i}.png", _img(i))
    report = scan(tmp_path)
    assert not report.errors
    assert sorted(report.table["label"]) == ["ALL", "ALL", "HEM"]
    assert len(set(report.table["subject"])) == len(report.table)
    assert any("own subject" in p.message for p in report.warnings)


def test_plain_layout_with_subjects_csv(tmp_path):
    for cls in ("all", "hem"):
        (tmp_path / cls).mkdir()
    iio.imwrite(tmp_path / "all" / "a.png", _img(1))
    iio.imwrite(tmp_path / "all" / "b.png", _img(2))
    iio.imwrite(tmp_path / "hem" / "c.png", _img(3))
    pd.DataFrame({"file": ["all/a.png", "b.png", "hem/c.png"],
                  "subject": ["P1", "p1", "D7"]}).to_csv(tmp_path / "subjects.csv", index=False)
    table = discover(tmp_path)
    assert dict(zip(table["path"].map(lambda p: p.split("/")[-1]), table["subject"],
                    strict=True)) == {"a.png": "p1", "b.png": "p1", "c.png": "d7"}
    assert set(table["source"]) == {"folders"}


def test_problems_are_collected(tmp_path):
    (tmp_path / "all").mkdir()
    (tmp_path / "hem").mkdir()
    (tmp_path / "monocytes").mkdir()
    iio.imwrite(tmp_path / "all" / "a.png", _img(1))
    iio.imwrite(tmp_path / "all" / "copy.png", _img(1))  # same bytes
    iio.imwrite(tmp_path / "hem" / "h.png", _img(2))
    (tmp_path / "hem" / "broken.png").write_bytes(b"\x89PNG garbage")
    iio.imwrite(tmp_path / "monocytes" / "m.png", _img(3))
    iio.imwrite(tmp_path / "loose.png", _img(4))
    report = scan(tmp_path)
    text = "\n".join(str(p) for p in report.errors)
    assert "broken.png" in text and "unreadable" in text
    assert "copy.png" in text and "duplicate" in text
    assert "unknown class folder 'monocytes'" in text
    assert "loose.png" in text and "no label" in text
    with pytest.raises(DatasetError) as info:
        discover(tmp_path)
    assert "4 error(s)" in str(info.value)


def test_empty_root(tmp_path):
    with pytest.raises(DatasetError, match="no image files"):
        discover(tmp_path)


def test_missing_root(tmp_path):
    with pytest.raises(DatasetError, match="does not exist"):
        discover(tmp_path / "nope")


def test_single_class(tmp_path):
    (tmp_path / "all").mkdir()
    iio.imwrite(tmp_path / "all" / "a.png", _img(1))
    with pytest.raises(DatasetError, match="only one class"):
        discover(tmp_path)


def test_cnmc_name_against_folder(tmp_path):
    d = tmp_path / "fold_0" / "hem"
    d.mkdir(parents=True)
    iio.imwrite(d / "UID_1_1_1_all.bmp", _img(1))
    report = scan(tmp_path)
    assert any("file name says ALL" in p.message for p in report.errors)


def test_prelim_folder_with_labels(tmp_path, data_dir):
    folder = tmp_path / "C-NMC_test_prelim_phase_data"
    folder.mkdir()
    for name in ("1105.bmp", "1843.bmp"):
        shutil.copy(data_dir / "cnmc_prelim" / name, folder / name)
    no_labels = scan(tmp_path)
    assert len(no_labels.table) == 0
    assert sum("no label" in p.message for p in no_labels.warnings) == 2
    pd.DataFrame({"Patient_ID": ["UID_57_29_1_all.bmp", "UID_H24_8_1_hem.bmp"],
                  "new_names": ["1105.bmp", "1843.bmp"], "labels": [1, 0]}).to_csv(
        tmp_path / "C-NMC_test_prelim_phase_data_labels.csv", index=False)
    table = discover(tmp_path)
    assert list(table["label"]) == ["ALL", "HEM"]
    assert list(table["subject"]) == ["57", "h24"]
    assert set(table["source"]) == {"cnmc_prelim"}


def test_listing_comparison(cnmc_dir, tmp_path):
    listing = cnmc_dir / "kaggle_listing.tsv"
    fold0 = cnmc_dir / "C-NMC_Leukemia" / "training_data" / "fold_0"
    result = compare_with_listing(fold0, listing)
    n_local = len(list(fold0.rglob("*.bmp")))
    assert len(result["matching"]) == n_local
    assert result["differing"] == [] and result["extra"] == []
    assert result["expected"] == 3527  # official fold_0 size, from the listing
    assert len(result["missing"]) == 3527 - n_local

    copy = tmp_path / "C-NMC_Leukemia" / "training_data" / "fold_0"
    shutil.copytree(fold0, copy)
    victim = sorted(copy.rglob("*.bmp"))[0]
    victim.chmod(0o644)
    data = bytearray(victim.read_bytes())
    data[-1] ^= 0xFF
    victim.write_bytes(bytes(data))
    result = compare_with_listing(copy, listing)
    assert len(result["differing"]) == 1 and result["differing"][0].endswith(victim.name)
