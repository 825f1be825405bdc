"""``allnet segment`` over folders: one file finder with classify, --skip-bad, --quiet."""

from __future__ import annotations

import imageio.v3 as iio
import numpy as np
import pandas as pd
import pytest

from allnet_core.cli import main
from allnet_core.synthetic import synth_smear


@pytest.fixture
def smears(tmp_path):
    """A folder with two smear fields (one in a subfolder) and a grayscale file."""
    src = tmp_path / "smears"
    (src / "more").mkdir(parents=True)
    for i, path in enumerate((src / "a.png", src / "more" / "b.png")):
        rgb, _, _ = synth_smear(seed=i, shape=(200, 240), n_wbc=1, touching_pair=False,
                                border_cell=False)
        iio.imwrite(path, rgb)
    iio.imwrite(src / "gray.png", np.zeros((16, 16), np.uint8))
    return src


def test_segment_takes_a_folder_and_skips_bad_files(smears, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["segment", str(smears), "--out", str(out), "--size", "48", "--skip-bad",
                 "--quiet"]) == 0
    captured = capsys.readouterr()
    assert sorted(p.name for p in out.glob("*_cells.csv")) == ["a_cells.csv", "b_cells.csv"]
    table = pd.read_csv(out / "b_cells.csv")
    assert len(table) >= 1 and table["image"].str.endswith("b.png").all()
    assert "gray.png" in captured.err and "skipped" in captured.err
    last = captured.out.strip().splitlines()
    assert len(last) == 1  # --quiet: the summary line only, no line per image
    assert "from 2 images" in last[0] and "1 unreadable file(s) skipped" in last[0]


def test_segment_stops_at_a_bad_file_without_skip_bad(smears, tmp_path, capsys):
    assert main(["segment", str(smears), "--out", str(tmp_path / "o"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "gray.png" in err and "--skip-bad" in err


def test_segment_folder_without_images_is_a_clear_error(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert main(["segment", str(tmp_path / "empty"), "--out", str(tmp_path / "o")]) == 2
    assert "holds no image files" in capsys.readouterr().err
