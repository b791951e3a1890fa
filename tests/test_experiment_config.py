"""Config schema, loading, overrides and the one-line errors of ``jopt validate``/``run``."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from jopt import JoptError
from jopt.cli import main as cli
from jopt.experiment import Config, dump_config, load_config, replace_dotted, to_dict

BASE = """\
name: t
data: {name: digits}
model: {name: mlp, hidden: [16]}
optimizer: {name: adam, learning_rate: 1.0e-3}
"""


@pytest.fixture
def cfg_file(tmp_path):
    def write(text: str = BASE, name: str = "cfg.yaml") -> str:
        path = tmp_path / name
        path.write_text(text)
        return str(path)

    return write


def test_defaults_live_in_the_dataclasses():
    c = Config()
    assert c.optimizer.name == "adam" and c.batching.batch_size == 32
    assert c.train.epochs == 20 and c.output.runs_dir == "runs"


def test_load_overrides_are_yaml_typed(cfg_file):
    c = load_config(
        cfg_file(),
        [
            "optimizer.learning_rate=3e-3",
            "batching.strategy=full",
            "model.hidden=[8, 4]",
            "optimizer.b1=0.8",
            "output.plots=false",
        ],
    )
    assert c.optimizer.learning_rate == 3e-3
    assert c.batching.strategy == "full"
    assert c.model.hidden == [8, 4]
    assert c.optimizer.kwargs == {"b1": 0.8}
    assert c.output.plots is False


def test_dump_and_reload_round_trip(cfg_file, tmp_path):
    c = load_config(cfg_file(), ["optimizer.b2=0.99"])
    path = tmp_path / "resolved.yaml"
    path.write_text(dump_config(c))
    again = load_config(str(path))
    assert to_dict(again) == to_dict(c)


def test_replace_dotted_validates():
    c = replace_dotted(Config(), {"optimizer.learning_rate": 0.5, "seed": 3})
    assert c.optimizer.learning_rate == 0.5 and c.seed == 3
    with pytest.raises(JoptError, match="learning_rate"):
        replace_dotted(Config(), {"optimizer.learning_rate": -1.0})


# Each kind of bad input: (file text or None for the base, overrides, expected message part).
BAD = {
    "unknown_key": (
        BASE + "optimzer: {}\n",
        [],
        r"unknown key 'optimzer'; did you mean 'optimizer'",
    ),
    "unknown_nested_key": (None, ["train.epoch=3"], r"'train.epoch'; did you mean 'epochs'"),
    "unknown_optimizer_kwarg": (None, ["optimizer.beta1=0.9"], r"optimizer.beta1"),
    "wrong_type": (None, ["batching.batch_size=abc"], r"batching.batch_size: expected an integer"),
    "wrong_type_list": (None, ["model.hidden=3"], r"model.hidden: expected a list"),
    "unknown_optimizer": (None, ["optimizer.name=adamm"], r"unknown optimizer 'adamm'.*adam"),
    "unknown_dataset": (None, ["data.name=mnist2d"], r"unknown dataset 'mnist2d'.*digits"),
    "unknown_model": (None, ["model.name=resnet"], r"unknown model 'resnet'.*mlp"),
    "unknown_activation": (None, ["model.activation=relux"], r"unknown activation.*relu"),
    "negative_lr": (None, ["optimizer.learning_rate=-0.1"], r"learning_rate must be a number >= 0"),
    "negative_batch": (None, ["batching.batch_size=-4"], r"batch_size must be an integer in \[1, "),
    "malformed_yaml": ("name: t\ndata: {name: digits\nmodel: x\n", [], r"malformed YAML.*line \d"),
    "empty_file": ("", [], r"config file is empty"),
    "not_a_mapping": ("- a\n- b\n", [], r"must hold a mapping"),
    "sweep_bad_key": (
        BASE + "sweep: {grid: {optimizer.lr: [0.1]}}\n",
        [],
        r"sweep.grid: unknown key 'optimizer.lr'",
    ),
    "sweep_bad_section": (
        BASE + "sweep: {grid: {modle.hidden: [[4]]}}\n",
        [],
        r"sweep.grid: unknown key 'modle.hidden'.*did you mean 'model'",
    ),
    "sweep_bad_value": (
        BASE + "sweep: {grid: {batching.batch_size: [8, x]}}\n",
        [],
        r"sweep.grid.batching.batch_size",
    ),
    "bad_override_syntax": (None, ["optimizer.learning_rate"], r"expected KEY=VALUE"),
    "bad_schedule": (None, ["schedule.name=cosin"], r"unknown schedule 'cosin'.*cosine"),
    "bad_fraction": (None, ["data.val_fraction=1.5"], r"val_fraction must be a number in \[0, 1\)"),
    "group_without_pattern": (None, ["optimizer.groups=[{lr_mult: 0.1}]"], r"needs a 'pattern'"),
    "unknown_chain_transform": (
        None,
        ["optimizer.chain=[{name: clip_by_globl_norm}]"],
        r"unknown transform 'clip_by_globl_norm'",
    ),
    "bad_group_override": (
        None,
        ['optimizer.groups=[{pattern: "head/**", lr_mul: 0.1}]'],
        r"unknown key 'optimizer.groups.0..lr_mul'; did you mean 'lr_mult'",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_config_is_one_line_exit_2(case, cfg_file, tmp_path, capsys):
    text, overrides, pattern = BAD[case]
    path = cfg_file(BASE if text is None else text)
    with pytest.raises(JoptError, match=pattern) as info:
        load_config(path, overrides)
    assert "\n" not in str(info.value)
    # the CLI: exit code 2, one line on stderr, no traceback, nothing written
    runs = tmp_path / "runs"
    code = cli(["run", path, *overrides, f"output.runs_dir={runs}"])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("jopt run: error:") and err.count("\n") == 1
    assert "Traceback" not in err
    assert not runs.exists()


def test_missing_file(capsys):
    assert cli(["validate", "/nonexistent/cfg.yaml"]) == 2
    assert "config file not found: /nonexistent/cfg.yaml" in capsys.readouterr().err


def test_validate_ok_and_list(cfg_file, capsys):
    assert cli(["validate", cfg_file(), "optimizer.learning_rate=0.01"]) == 0
    assert "ok" in capsys.readouterr().out
    assert cli(["list"]) == 0
    out = capsys.readouterr().out
    for word in (
        "optimizers:",
        "adam",
        "datasets:",
        "digits",
        "models:",
        "mlp",
        "activations:",
        "gelu",
        "schedules:",
        "warmup_cosine",
    ):
        assert word in out
    assert cli(["list", "nothing"]) == 2


def test_usage_errors_exit_2_without_traceback():
    # argparse exits with SystemExit(2) after printing usage; in a process that is exit code 2
    with pytest.raises(SystemExit) as info:
        cli(["run", "--no-such-flag"])
    assert info.value.code == 2
    proc = subprocess.run(
        [sys.executable, "-m", "jopt.cli", "sweep"],
        capture_output=True,
        text=True,
        cwd=os.path.dirname(os.path.dirname(__file__)),
    )
    assert proc.returncode == 2
    assert proc.stderr.startswith("jopt sweep: error:") and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_mutually_exclusive_weight_decay(cfg_file):
    with pytest.raises(JoptError, match="not both"):
        load_config(
            cfg_file(),
            [
                "optimizer.name=adamw",
                "optimizer.weight_decay=0.1",
                "regularization.weight_decay=0.1",
            ],
        )


def test_eval_batch_size_is_evaluations_chunk_size(cfg_file, monkeypatch):
    """batching.eval_batch_size reaches make_eval_fn (decisions: used, not removed)."""
    import jopt.train
    from jopt.experiment import setup
    from jopt.experiment._program import build_program

    seen = []
    real = jopt.train.make_eval_fn

    def spy(model, spec, *, chunk_size=4096):
        seen.append(chunk_size)
        return real(model, spec, chunk_size=chunk_size)

    monkeypatch.setattr(jopt.train, "make_eval_fn", spy)
    config = load_config(cfg_file(), ["batching.eval_batch_size=37"])
    build_program(config, setup(config))
    assert seen == [37]
