"""Every shipped config validates, and every one trains for one tiny epoch.

``augmentation`` runs through the ``jopt run`` command (progress bar and summary); every other
config runs through the Python API. Problem configs (``rosenbrock``) run a few steps instead.

Every config also runs per leaf and its final metrics must equal the packed run's, except the
configs in ``STEP_CHECKED``: each of those goes through the same runner path (batching strategy,
schedule, precision, early stopping, data and model kind) as a config that is compared here, and
its own packed optimizer step is compared with its per-leaf step (5 steps, 1e-6) in
``tests/test_fused_runner.py``, which runs every shipped config. A new config is compared here
until it is added to ``STEP_CHECKED`` with the config whose runner path it shares.
"""

from __future__ import annotations

import glob
import os
from pathlib import Path

import pytest

from jopt.cli import main as cli
from jopt.experiment import load_config
from jopt.experiment._artifacts import read_json
from jopt.experiment._runner import run

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIGS = sorted(glob.glob(os.path.join(ROOT, "configs", "*.yaml")))
TINY = [
    "train.epochs=1",
    "train.steps=null",
    "output.plots=false",
    "output.checkpoints=false",
    "output.progress=false",
]
NAMES = [os.path.basename(p)[:-5] for p in CONFIGS]
RUN = [n for n in NAMES if n not in ("augmentation", "rosenbrock")]
# config -> the compared config whose runner path it takes (only the optimizer, its
# hyperparameters, a loss penalty or the layer sizes differ; see the module docstring).
STEP_CHECKED = {
    "adam": "quickstart",
    "batching_minibatch": "quickstart",
    "dropout": "quickstart",
    "l1": "quickstart",
    "l2": "quickstart",
    "momentum": "quickstart",
    "rmsprop": "quickstart",
    "sgd": "quickstart",
    "weight_decay": "quickstart",
    "mnist1d_logreg": "mnist1d_cnn",
    "mnist1d_mlp": "mnist1d_cnn",
}


def test_configs_exist():
    names = {os.path.basename(p)[:-5] for p in CONFIGS}
    required = {
        "quickstart",
        "batching_full",
        "batching_minibatch",
        "batching_stochastic",
        "batching_accumulate",
        "sgd",
        "momentum",
        "rmsprop",
        "adam",
        "l1",
        "l2",
        "weight_decay",
        "dropout",
        "early_stopping",
        "augmentation",
        "mnist1d_logreg",
        "mnist1d_mlp",
        "mnist1d_cnn",
    }
    assert required <= names


def test_every_config_validates(capsys):
    assert cli(["validate", "--quiet", *CONFIGS]) == 0
    for path in CONFIGS:
        load_config(path)  # also through the Python API


def _runner_path(name: str) -> tuple:
    """What picks the runner's code path: data, batching strategy, precision, a metric-driven
    schedule, early stopping."""
    c = load_config(os.path.join(ROOT, "configs", f"{name}.yaml"))
    stopping = c.regularization.early_stopping.patience > 0
    return (c.data.name, c.batching.strategy, c.train.precision, c.schedule.name, stopping)


def test_step_checked_configs_share_a_compared_runner_path():
    compared = set(RUN) - set(STEP_CHECKED)
    assert set(STEP_CHECKED) <= set(RUN) and set(STEP_CHECKED.values()) <= compared
    fused_runner = (Path(__file__).parent / "test_fused_runner.py").read_text()
    assert 'glob.glob(os.path.join(ROOT, "configs", "*.yaml"))' in fused_runner  # every config
    step_indexed = {"constant", "cosine"}  # schedules that are a function of the step alone
    for name, like in STEP_CHECKED.items():
        a, b = _runner_path(name), _runner_path(like)
        if a[3] in step_indexed and b[3] in step_indexed:
            a, b = a[:3] + a[4:], b[:3] + b[4:]
        assert a == b, (name, like, a, b)


@pytest.mark.parametrize("name", RUN)
def test_config_runs_one_tiny_epoch(name, tmp_path):
    """The default (packed) run, and (unless step-checked) the same run per leaf: equal
    metrics (<= 1e-5)."""
    path = os.path.join(ROOT, "configs", f"{name}.yaml")
    d = run(load_config(path, [*TINY, f"output.runs_dir={tmp_path}"]))
    summary = read_json(os.path.join(d, "summary.json"))
    assert summary["status"] == "completed" and summary["epochs_run"] == 1
    assert summary["final"]["train_loss"] is not None
    assert summary["execution"] == "packed"
    if name in STEP_CHECKED:
        return
    leafy = ["optimizer.execution=per_leaf", f"output.runs_dir={tmp_path / 'per_leaf'}"]
    d = run(load_config(path, [*TINY, *leafy]))
    per_leaf = read_json(os.path.join(d, "summary.json"))
    assert per_leaf["execution"] == "per_leaf"
    for k, v in summary["final"].items():
        if isinstance(v, float) and k not in ("epoch_time", "time"):
            assert abs(per_leaf["final"][k] - v) <= 1e-5, (k, v, per_leaf["final"][k])


def test_jopt_run_command_prints_a_summary(tmp_path, capsys):
    path = os.path.join(ROOT, "configs", "augmentation.yaml")
    overrides = [o for o in TINY if not o.startswith("output.progress")]
    code = cli(["run", path, *overrides, f"output.runs_dir={tmp_path}"])
    captured = capsys.readouterr()
    assert code == 0
    assert "run augmentation: completed after 1 epochs" in captured.out
    assert "test_accuracy" in captured.out and "results in" in captured.out
    assert "epoch" in captured.err  # the tqdm progress bar
    (run_dir,) = os.listdir(tmp_path)
    assert read_json(os.path.join(tmp_path, run_dir, "summary.json"))["status"] == "completed"


def test_problem_config_runs_a_few_steps(tmp_path):
    path = os.path.join(ROOT, "configs", "rosenbrock.yaml")
    d = run(
        load_config(
            path,
            [
                "train.steps=20",
                "output.plots=false",
                "output.progress=false",
                f"output.runs_dir={tmp_path}",
            ],
        )
    )
    summary = read_json(os.path.join(d, "summary.json"))
    assert summary["status"] == "completed" and summary["steps"] == 20
    assert summary["final"]["train_loss"] < 24.2  # f(-1.2, 1) = 24.2: it moved downhill
