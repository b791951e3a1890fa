"""``jopt lr-find``: a configured model run and a test-problem run, end to end."""

import json

import numpy as np
import pytest

from jopt.cli import main


def _write(path, text):
    path.write_text(text)
    return str(path)


def _only_run_dir(runs):
    dirs = [p for p in runs.iterdir() if p.is_dir()]
    assert len(dirs) == 1
    return dirs[0]


def test_lr_find_on_a_configured_mlp(tmp_path, capsys):
    cfg = _write(
        tmp_path / "digits.yaml",
        (
            "name: lrf-digits\nseed: 0\n"
            "data: {name: digits, val_fraction: 0.0, test_fraction: 0.2, preprocess: standardize}\n"
            "model: {name: mlp, hidden: [16], activation: relu}\n"
            "optimizer: {name: sgd, learning_rate: 0.1, momentum: 0.9}\n"
            "batching: {strategy: minibatch, batch_size: 64}\n"
        ),
    )
    runs = tmp_path / "runs"
    code = main(
        [
            "lr-find",
            cfg,
            "--runs-dir",
            str(runs),
            "--min-lr",
            "1e-4",
            "--max-lr",
            "10",
            "--steps",
            "60",
        ]
    )
    assert code == 0
    run_dir = _only_run_dir(runs)
    assert run_dir.name.startswith("lrf-digits-lr-find-")
    rec = json.loads((run_dir / "lr_find.json").read_text())
    assert (run_dir / "plots" / "lr_find.png").stat().st_size > 5000
    assert (run_dir / "config.yaml").exists()
    losses = np.array(rec["losses"])
    # The sweep trains: the loss falls well below log(10) ≈ 2.3 before SGD+momentum blows up.
    assert losses.min() < 0.6 * losses[0]
    assert rec["diverged_at"] is not None
    assert 1e-4 < rec["suggestion"] <= rec["min_loss_lr"] < 10
    assert f"{rec['suggestion']:.3g}" in capsys.readouterr().out


def test_lr_find_on_a_test_problem(tmp_path):
    cfg = _write(
        tmp_path / "rosen.yaml",
        (
            "name: lrf-rosen\nproblem: {name: rosenbrock}\n"
            "optimizer: {name: sgd, learning_rate: 0.001}\n"
        ),
    )
    runs = tmp_path / "runs"
    assert (
        main(
            [
                "lr-find",
                cfg,
                "--runs-dir",
                str(runs),
                "--min-lr",
                "1e-6",
                "--max-lr",
                "0.1",
                "--steps",
                "80",
            ]
        )
        == 0
    )
    rec = json.loads((_only_run_dir(runs) / "lr_find.json").read_text())
    # GD on Rosenbrock is unstable above 2/λ_max; along the start's curvature that is
    # a few 1e-3 at most (the runs in experiments/optimizer_paths diverge at lr >= 3e-3).
    assert rec["diverged_at"] is not None
    assert 1e-5 < rec["suggestion"] < 3e-3


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--min-lr", "1", "--max-lr", "0.1"], "min_lr"),
        (["--steps", "2"], "num_steps"),
        (["--diverge", "0.5"], "--diverge"),
    ],
)
def test_lr_find_bad_input(tmp_path, capsys, extra, message):
    cfg = _write(
        tmp_path / "b.yaml",
        "name: b\nproblem: {name: booth}\noptimizer: {name: sgd, learning_rate: 0.01}\n",
    )
    assert main(["lr-find", cfg, "--runs-dir", str(tmp_path / "r"), *extra]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
