"""Every command's help ends in examples; ``train --help`` lists the training profiles."""

from __future__ import annotations

import pytest

from allnet_core.cli import main

COMMANDS = (["train"], ["evaluate"], ["demo"], ["classify"], ["segment"], ["augment"],
            ["data"], ["data", "check"], ["data", "synth"])


def _help(argv, capsys) -> str:
    with pytest.raises(SystemExit) as done:
        main([*argv, "--help"])
    assert done.value.code == 0
    return capsys.readouterr().out


@pytest.mark.parametrize("argv", COMMANDS, ids=" ".join)
def test_every_command_has_examples(argv, capsys):
    text = _help(argv, capsys)
    examples = text.split("\nexamples:\n", 1)[1].splitlines()
    assert examples and all(line.startswith(f"  allnet {argv[0]}") for line in examples if line)


def test_train_help_describes_every_profile(capsys):
    from allnet_core.training.config import PROFILES, TrainConfig

    text = _help(["train"], capsys)
    profiles = text.split("\nprofiles", 1)[1].split("\nexamples:", 1)[0]
    for name in PROFILES:
        c = TrainConfig.from_profile(name)
        assert f"\n  {name}: " in profiles
        assert f"input {c.input_size} px, {c.epochs} epochs x {c.folds} folds" in profiles
    assert "--classes" in text
