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


@pytest.mark.realdata
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


@pytest.mark.realdata
def test_prelim_folder_with_labels(tmp_path, cnmc_prelim_dir):
    folder = tmp_path / "C-NMC_test_prelim_phase_data"
    folder.mkdir()
    for name in ("1105.bmp", "1843.bmp"):
        shutil.copy(cnmc_prelim_dir / name, folder / name)
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


@pytest.mark.realdata
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


def _class_folders(root, counts: dict[str, int]) -> None:
    seed = 0
    for folder, n in counts.items():
        (root / folder).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            seed += 1
            iio.imwrite(root / folder / f"c{i:03d}.png", _img(seed))


def test_repeated_problems_are_grouped(tmp_path):
    """A folder of unknown class folders gives one line per folder, not one per file."""
    _class_folders(tmp_path, {"Lymphoblasts": 40, "Normozyten": 30})
    report = scan(tmp_path, duplicates=False)
    assert len(report.errors) == 70  # one per file ...
    text = report.summary()
    problem_lines = [line for line in text.splitlines() if "unknown class folder" in line]
    assert len(problem_lines) == 2
    blasts = next(line for line in problem_lines if "'Lymphoblasts'" in line)
    assert ": 40 files, e.g. Lymphoblasts/c000.png, Lymphoblasts/c001.png, " \
           "Lymphoblasts/c002.png" in blasts
    assert "--classes Lymphoblasts=ALL" in blasts  # says how to map it
    counts_only = report.summary(show=0)
    assert "40 files\n" in counts_only and "c000.png" not in counts_only
    assert report.summary(show=5).count("Normozyten/c0") == 5
    with pytest.raises(ValueError, match="show must be >= 0"):
        report.summary(show=-1)
    # the error raised before training is grouped the same way
    with pytest.raises(DatasetError) as info:
        discover(tmp_path, verify=False)
    assert str(info.value).count("unknown class folder") == 2
    assert "40 files" in str(info.value)
    # images without a subject: one line in the subject list, not one per image
    _class_folders(tmp_path / "more", {"all": 3, "hem": 4})
    table_text = scan(tmp_path / "more").summary()
    assert "7 image(s) without a subject, each its own (ALL 3, HEM 4)" in table_text
    assert "img:" not in table_text


def test_data_check_groups_problems_and_validates_show(tmp_path, capsys):
    from allnet_core.cli import main

    _class_folders(tmp_path, {"Lymphoblasts": 12})
    assert main(["data", "check", str(tmp_path), "--show", "1"]) == 1
    out = capsys.readouterr().out
    assert out.count("unknown class folder") == 1
    assert "12 files, e.g. Lymphoblasts/c000.png" in out and "c001.png" not in out
    with pytest.raises(SystemExit) as info:
        main(["data", "check", str(tmp_path), "--show", "-1"])
    assert info.value.code == 2
    assert "--show: must be 0 or more, got -1" in capsys.readouterr().err


def test_class_mapping_for_other_folder_names(tmp_path):
    from allnet_core.cli import main
    from allnet_core.datasets import parse_class_map
    from allnet_core.errors import ConfigError

    _class_folders(tmp_path, {"Lymphoblasts": 3, "Normozyten": 2})
    table = discover(tmp_path, classes="lymphoblasts=ALL, Normozyten=hem")
    assert sorted(table["label"]) == ["ALL", "ALL", "ALL", "HEM", "HEM"]
    assert table.equals(discover(tmp_path, classes={"LYMPHOBLASTS": "ALL",
                                                    "normozyten": "HEM"}))
    # a small mapping file: NAME=CLASS or NAME,CLASS per line, # comments
    mapping = tmp_path.parent / f"{tmp_path.name}_classes.txt"
    mapping.write_text("# Zheng et al. folder names\nLymphoblasts = ALL\nNormozyten,HEM\n\n")
    assert parse_class_map(mapping) == {"lymphoblasts": "ALL", "normozyten": "HEM"}
    assert scan(tmp_path, classes=str(mapping)).table.equals(table)
    # an explicit mapping wins over the built-in names
    assert class_of_folder("normal", {"normal": "ALL"}) == "ALL"
    assert class_of_folder("normal") == "HEM"
    for bad, expected in [("blast=AML", "blast=AML is not"), ("blast", "not NAME=CLASS"),
                          ("=ALL", "is not a folder name")]:
        with pytest.raises(ConfigError, match=expected):
            parse_class_map(bad)
    assert main(["data", "check", str(tmp_path), "--classes", str(mapping)]) == 0
    assert main(["data", "check", str(tmp_path), "--classes", "Lymphoblasts=AML"]) == 2


def test_subjects_csv_with_an_empty_cell_is_a_problem(tmp_path):
    _class_folders(tmp_path, {"all": 2, "hem": 2})
    pd.DataFrame({"file": ["all/c000.png", "all/c001.png", "hem/c000.png", "hem/c001.png"],
                  "subject": ["p1", None, "d1", "d1"]}).to_csv(tmp_path / "subjects.csv",
                                                               index=False)
    report = scan(tmp_path)
    errors = [p for p in report.errors if "subjects.csv" in p.message]
    assert len(errors) == 1 and errors[0].path == str(tmp_path / "subjects.csv")
    assert "empty 'file' or 'subject' cell: line 3 (all/c001.png)" in errors[0].message
    assert "nan" not in set(report.table["subject"])
    assert "Problems: none" not in report.summary()
    with pytest.raises(DatasetError, match="line 3"):
        discover(tmp_path)
