"""The ``jopt`` subcommands end to end, in-process: sweep --protocol and compare."""

from __future__ import annotations

import os

from jopt.cli import main as cli
from jopt.experiment._artifacts import read_json

CONFIG = """\
name: proto
seed: 1
data: {name: iris, val_fraction: 0.3, test_fraction: 0.2}
model: {name: mlp, hidden: [8]}
optimizer: {name: adam, learning_rate: 1.0e-2}
batching: {batch_size: 16}
train: {epochs: 3}
output: {progress: false, checkpoints: false}
sweep:
  grid: {optimizer.learning_rate: [1.0e-3, 3.0e-2]}
  protocol: {metric: val_loss, seeds: 3}
"""


def test_protocol_then_compare(tmp_path, capsys):
    cfg = tmp_path / "proto.yaml"
    cfg.write_text(CONFIG)
    runs = tmp_path / "runs"
    assert cli(["sweep", str(cfg), "--protocol", f"output.runs_dir={runs}"]) == 0
    out = capsys.readouterr().out
    assert "tuning protocol" in out and "mean ± std" in out
    (proto,) = os.listdir(runs)
    proto = os.path.join(runs, proto)
    result = read_json(os.path.join(proto, "protocol.json"))
    tuning = {r["optimizer.learning_rate"]: r["val_loss"] for r in result["tuning"]}
    assert len(tuning) == 2
    # the best point is the one with the lowest validation loss, re-run with 3 seeds
    assert result["best_point"]["optimizer.learning_rate"] == min(tuning, key=tuning.get)
    assert result["final"]["seeds"] == 3 and result["final"]["test_accuracy_std"] is not None
    final = os.path.join(proto, "2-final")
    info = read_json(os.path.join(final, "sweep.json"))
    assert [m["seed"] for m in info["members"]] == [1, 2, 3]
    assert info["num_compiled_groups"] == 1

    out_dir = tmp_path / "cmp"
    tune = os.path.join(proto, "1-tune")
    member = os.path.join(final, info["members"][0]["dir"])
    assert cli(["compare", tune, member, "--out", str(out_dir)]) == 0
    table = capsys.readouterr().out
    assert "learning_rate=0.001" in table and info["members"][0]["dir"] in table
    for name in (
        "compare.md",
        "compare.csv",
        "val_loss_vs_epoch.png",
        "lr_sensitivity_val_loss.png",
    ):
        assert os.path.isfile(out_dir / name), name
    assert cli(["compare", str(tmp_path / "missing")]) == 2
