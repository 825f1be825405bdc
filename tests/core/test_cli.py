"""The ``allnet`` command line: start-up weight, help, version, data commands end to end."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from allnet_core import __version__
from allnet_core.cli import COMMAND_MODULES, build_parser, main

HEAVY = ("keras", "tensorflow", "jax", "torch", "napari", "qtpy", "PyQt5", "PyQt6", "PySide6")


def _modules_after(code: str) -> set[str]:
    out = subprocess.run(
        [sys.executable, "-c", code + "\nimport sys, json; print(json.dumps(sorted(sys.modules)))"],
        capture_output=True, text=True, check=True,
    ).stdout.strip().splitlines()[-1]
    return set(json.loads(out))


def test_import_allnet_core_is_light():
    mods = _modules_after("import allnet_core, allnet_core.io, allnet_core.datasets, "
                          "allnet_core.synthetic, allnet_core.cli, allnet_core.backend")
    assert not {m.split(".")[0] for m in mods} & set(HEAVY)


def test_help_is_light_and_lists_working_commands():
    code = ("import contextlib, io\nfrom allnet_core.cli import main\n"
            "buf = io.StringIO()\n"
            "with contextlib.redirect_stdout(buf), contextlib.suppress(SystemExit):\n"
            "    main(['--help'])\n")
    mods = _modules_after(code)
    assert not {m.split(".")[0] for m in mods} & set(HEAVY)
    for name in COMMAND_MODULES:  # every sub-command's help must build too
        for action in build_parser()._subparsers._group_actions:
            assert name in action.choices


def test_console_script_version_and_help():
    exe = [sys.executable, "-m", "allnet_core"]
    version = subprocess.run(exe + ["--version"], capture_output=True, text=True, check=True)
    assert version.stdout.strip() == f"allnet {__version__}"
    helptext = subprocess.run(exe + ["--help"], capture_output=True, text=True, check=True)
    assert "data" in helptext.stdout


def test_data_synth_then_check(tmp_path, capsys):
    out = tmp_path / "syn"
    assert main(["data", "synth", str(out), "--subjects", "4", "--cells-per-subject", "3",
                 "--size", "48", "--seed", "1"]) == 0
    assert "Wrote 12 synthetic cells" in capsys.readouterr().out
    assert main(["data", "check", str(out)]) == 0
    text = capsys.readouterr().out
    assert "Images: 12" in text and "Per class: ALL 6, HEM 6" in text
    assert "Problems: none" in text


def test_data_check_reports_errors_with_exit_code(tmp_path, capsys):
    (tmp_path / "all").mkdir()
    (tmp_path / "all" / "bad.png").write_text("not an image")
    assert main(["data", "check", str(tmp_path)]) == 1
    text = capsys.readouterr().out
    assert "bad.png" in text and "unreadable" in text and "only one class" not in text


def test_data_check_missing_folder_is_a_clear_error(tmp_path, capsys):
    assert main(["data", "check", str(tmp_path / "missing")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_data_synth_bad_value(tmp_path, capsys):
    assert main(["data", "synth", str(tmp_path), "--subjects", "1"]) == 2
    assert "subjects" in capsys.readouterr().err


@pytest.mark.realdata
def test_data_check_against_listing(cnmc_dir, capsys):
    fold1 = cnmc_dir / "C-NMC_Leukemia" / "training_data" / "fold_1"
    rc = main(["data", "check", str(fold1), "--against-listing",
               str(cnmc_dir / "kaggle_listing.tsv"), "--show", "2"])
    text = capsys.readouterr().out
    assert rc == 0
    n = len(list(fold1.rglob("*.bmp")))
    assert f"3581 official file(s) in scope, {n} match, 0 differ, {3581 - n} missing" in text


@pytest.mark.parametrize("argv", [["data"], ["nonsense"]])
def test_usage_errors_exit_2(argv):
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
