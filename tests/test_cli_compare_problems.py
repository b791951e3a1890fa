"""`jopt compare` on classical test-problem runs: a table plus the paths overlaid on one contour."""

from __future__ import annotations

import os

from jopt.cli import main as cli

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ROSENBROCK = os.path.join(ROOT, "configs", "rosenbrock.yaml")


def test_compare_overlays_problem_paths(tmp_path, capsys):
    runs = tmp_path / "runs"
    common = ["train.steps=50", f"output.runs_dir={runs}", "output.progress=false"]
    assert cli(["run", ROSENBROCK, *common, "name=adam"]) == 0
    assert (
        cli(
            [
                "run",
                ROSENBROCK,
                *common,
                "name=gd",
                "optimizer.name=sgd",
                "optimizer.learning_rate=1e-3",
            ]
        )
        == 0
    )
    dirs = sorted(str(runs / d) for d in os.listdir(runs))
    assert len(dirs) == 2
    out = tmp_path / "cmp"
    capsys.readouterr()
    assert cli(["compare", *dirs, "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "adam-" in printed and "gd-" in printed
    for png in ("paths.png", "gaps.png"):
        assert (out / png).stat().st_size > 10_000, png
    table = (out / "compare.csv").read_text()
    assert "train_loss" in table and len(table.strip().splitlines()) == 3
