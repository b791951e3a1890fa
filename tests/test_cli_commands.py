"""The commands layer: every command is reachable from ``jopt``, and the ones that used to be
``python -m`` modules (``jopt reproduce``, ``jopt bench distributed``) work end to end."""

from __future__ import annotations

import importlib
import json

import pytest

from jopt.cli import COMMANDS, main
from jopt.train import RECIPES


def test_usage_lists_every_command(capsys):
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    assert all(f"  {name} " in out for name in COMMANDS)
    assert main([]) == 2
    assert main(["nope"]) == 2
    assert "unknown command 'nope'" in capsys.readouterr().err


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_every_command_has_help_and_lives_in_jopt_cli(name, capsys):
    module = COMMANDS[name][0]
    assert module.startswith("jopt.cli.")
    assert callable(importlib.import_module(module).main)
    with pytest.raises(SystemExit) as e:
        main([name, "--help"])
    assert e.value.code == 0
    assert f"usage: jopt {name}" in capsys.readouterr().out


def test_reproduce_runs_a_recipe(monkeypatch, capsys):
    monkeypatch.setitem(RECIPES["digits"], "epochs", 1)
    assert main(["reproduce", "digits", "--seeds", "0"]) == 0
    out = capsys.readouterr().out
    assert "digits   seed 0: test acc" in out and "test accuracy: mean" in out
    with pytest.raises(SystemExit) as e:
        main(["reproduce", "imagenet"])
    assert e.value.code == 2


def test_bench_distributed_on_one_device(tmp_path, capsys):
    path = tmp_path / "dp.json"
    argv = ["bench", "distributed", "--devices", "1", "--repeats", "1", "--hidden", "8"]
    assert main([*argv, "--json", str(path)]) == 0
    report = json.loads(path.read_text())
    assert [r["devices"] for r in report["results"]] == [1]
    assert report["results"][0]["steps_per_s"] > 0
    assert report["execution"] == "packed"  # what jopt run trains with
    assert "steps/s" in capsys.readouterr().out
    assert main([*argv, "--execution", "per_leaf", "--json", str(path)]) == 0
    assert json.loads(path.read_text())["execution"] == "per_leaf"
    assert "per_leaf" in capsys.readouterr().out
    assert main(["bench", "distributed", "--devices", "64"]) == 2
    assert "64 devices" in capsys.readouterr().err
