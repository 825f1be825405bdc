"""The CLI's top level: bare ``allnet``, OS errors as one line with exit 2, closed pipes."""

from __future__ import annotations

import argparse
import errno
import subprocess
import sys

import pytest

from allnet_core import cli


def test_bare_allnet_lists_the_commands(capsys):
    assert cli.main([]) == 0
    out = capsys.readouterr().out
    for name in cli.COMMAND_MODULES:
        assert name in out


@pytest.mark.parametrize("exc, words", [
    (PermissionError(errno.EACCES, "Permission denied", "/runs/r1/report.md"),
     ["/runs/r1/report.md", "Permission denied", "folder you can write to"]),
    (OSError(errno.ENOSPC, "No space left on device", "/small/run/model.keras"),
     ["/small/run/model.keras", "No space left", "free some space"]),
    (NotADirectoryError(errno.ENOTDIR, "Not a directory", "notes.txt"),
     ["notes.txt", "Not a directory"]),
])
def test_os_errors_are_one_line_with_exit_code_2(monkeypatch, capsys, exc, words):
    def boom(args):
        raise exc

    parser = cli.build_parser()
    monkeypatch.setattr(cli, "build_parser", lambda: parser)
    monkeypatch.setattr(parser, "parse_args", lambda argv: argparse.Namespace(func=boom))
    assert cli.main(["data", "check", "anywhere"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    for w in words:
        assert w in err


def test_closed_pipe_ends_quietly(tmp_path):
    for i in range(3):
        (tmp_path / "hem").mkdir(exist_ok=True)
        (tmp_path / "hem" / f"bad{i}.png").write_bytes(b"not a png")
    code = (
        "import sys; from allnet_core.cli import main; sys.stdout.close = lambda: None;"
        "sys.exit(main(['data', 'check', sys.argv[1]]))"
    )
    proc = subprocess.Popen([sys.executable, "-c", code, str(tmp_path)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.close()  # the reader went away, like `| head -0`
    err = proc.stderr.read().decode()
    proc.wait(timeout=60)
    assert "Traceback" not in err and "BrokenPipeError" not in err
